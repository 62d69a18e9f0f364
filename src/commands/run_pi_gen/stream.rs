//! Runs pi-gen (or a container around it) and streams its output: one collapsible group
//! per stage, the stage timeline written as stages end, an overall `--timeout`, and a
//! stall watchdog (`--stall-timeout`) for builds that stop printing and stop working.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use crate::gha::Gha;
use crate::model::to_canonical_json;
use crate::process::{CmdSpec, Event};

/// How long to wait after SIGTERM (pi-gen's EXIT trap unmounts) before SIGKILL.
const GRACE: Duration = Duration::from_secs(30);

/// What to watch for while pi-gen runs.
pub struct Watch<'a> {
    /// What runs, for messages ("pi-gen (native build.sh)").
    pub what: &'a str,
    /// The pi-gen root as pi-gen logs it: `Begin <root>/<stage>` lines open groups.
    pub base: &'a str,
    /// Where the stage timeline goes (rewritten as stages end, and at the end).
    pub timeline: Option<&'a Path>,
    pub timeout: Option<Duration>,
    /// A build that prints nothing for this long, and whose processes use no CPU in that
    /// time, is stalled.
    pub stall: Option<Duration>,
}

/// How the process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Exit code 0.
    Success,
    /// A non-zero exit code, or a signal.
    Failed(String),
    TimedOut(Duration),
    /// Silent and idle for the stall timeout; the step that was running, if known.
    Stalled {
        after: Duration,
        step: Option<String>,
    },
}

/// The outcome of one streamed run.
#[derive(Debug, Clone)]
pub struct Streamed {
    pub ended: Ended,
    /// Every timestamped pi-gen log line this run printed (`[HH:MM:SS] …`), in order.
    pub log: String,
}

static LOG_LINE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"^\[\d{1,2}:\d{2}:\d{2}\] ").expect("valid regex")
});
static STAGE_LINE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"^\[\d{2}:\d{2}:\d{2}\] (Begin|End) (.+)$").expect("valid regex")
});

/// Runs `cmd` in its own process group and streams its stdout and stderr.
/// `Err` only when it could not start or the user interrupted (the tree is stopped).
pub fn stream(gha: &Gha, cmd: CmdSpec, watch: &Watch<'_>) -> anyhow::Result<Streamed> {
    tracing::info!("running {}: {}", watch.what, cmd.display());
    let mut out = cmd.own_group().stream()?;
    let tree = Tree::new(out.child.id());
    let started = Instant::now();
    let mut last_output = Instant::now();
    let mut cpu_at_last_output = tree.cpu_ticks();
    let mut cpu_stale = false;
    // pi-gen's output is the build's, not ours (package names, mirror answers, scripts
    // from the checkout): the runner executes nothing in it while it streams.
    let fence = gha.fence();
    let mut group = None;
    let mut log = String::new();
    let mut stopped: Option<Ended> = None;
    loop {
        if let Err(e) = crate::atomic::check_interrupted() {
            drop(group.take());
            tree.stop(&mut out.child);
            return Err(e);
        }
        if let Some(limit) = watch.timeout
            && started.elapsed() > limit
        {
            stopped = Some(Ended::TimedOut(limit));
            break;
        }
        if let Some(stall) = watch.stall
            && last_output.elapsed() > stall
        {
            // Silent, but maybe busy (xz, zip and zerofree print nothing for minutes).
            let cpu = tree.cpu_ticks();
            if cpu.saturating_sub(cpu_at_last_output) < Tree::BUSY_TICKS {
                stopped = Some(Ended::Stalled {
                    after: stall,
                    step: current_step(&log),
                });
                break;
            }
            last_output = Instant::now();
            cpu_at_last_output = cpu;
        }
        let line = match out.next(Duration::from_millis(200)) {
            // Lossy: a build log is text, but one stray byte must not end the stream.
            Event::Line(_, l) => String::from_utf8_lossy(&l)
                .trim_end_matches('\r')
                .to_owned(),
            // Output without a newline yet (a progress bar) is still output.
            Event::Partial(_) => {
                last_output = Instant::now();
                cpu_stale = true;
                continue;
            }
            Event::Idle => {
                // The CPU baseline of a silence is taken once, when it starts: reading
                // /proc for every line of apt's output would cost more than the build's
                // own logging.
                if cpu_stale && watch.stall.is_some() {
                    cpu_at_last_output = tree.cpu_ticks();
                    cpu_stale = false;
                }
                continue;
            }
            Event::Closed => break,
        };
        last_output = Instant::now();
        cpu_stale = true;
        if LOG_LINE.is_match(&line) {
            log.push_str(&line);
            log.push('\n');
        }
        let Some(c) = STAGE_LINE.captures(&line) else {
            fence.line(&line);
            continue;
        };
        let path = c[2].trim_end_matches('/');
        let is_stage = Path::new(path).parent().map(|p| p.display().to_string())
            == Some(watch.base.to_owned());
        if !is_stage {
            fence.line(&line);
            continue;
        }
        let name = path.rsplit('/').next().unwrap_or(path).to_owned();
        if &c[1] == "Begin" {
            drop(group.take());
            fence.line(&line);
            group = Some(gha.group(&format!("pi-gen {name}")));
            continue;
        }
        fence.line(&line);
        drop(group.take());
        write_timeline(watch.timeline, &log);
        let t = crate::buildlog::parse(&log);
        if let Some(s) = t.stages().into_iter().rev().find(|s| s.name == name) {
            tracing::info!(
                "pi-gen {name} finished in {}",
                crate::units::human_duration(s.duration_seconds)
            );
        }
    }
    drop(group);
    drop(fence);
    let ended = if let Some(why) = stopped {
        tree.stop(&mut out.child);
        why
    } else {
        let status = out.child.wait().context("cannot wait for pi-gen")?;
        if status.success() {
            Ended::Success
        } else {
            Ended::Failed(
                status
                    .code()
                    .map_or_else(|| "a signal".to_owned(), |c| format!("exit code {c}")),
            )
        }
    };
    write_timeline(watch.timeline, &log);
    Ok(Streamed { ended, log })
}

/// The timeline of this run so far: closed stage spans, what is still open, the result.
fn write_timeline(path: Option<&Path>, log: &str) {
    let Some(path) = path else { return };
    let t = crate::buildlog::parse(log);
    let stages: Vec<_> = t.stages().into_iter().cloned().collect();
    let build = t
        .spans
        .iter()
        .find(|s| s.name == crate::buildlog::WHOLE_BUILD)
        .cloned();
    let doc = json!({
        "stages": stages,
        "build": build,
        "incomplete": t.incomplete,
        "result": t.result,
    });
    if let Ok(text) = to_canonical_json(&doc)
        && let Err(e) = crate::atomic::write(path, text.as_bytes())
    {
        tracing::warn!("cannot write the stage timeline {}: {e:#}", path.display());
    }
}

/// The innermost step that began and has not ended (`stage2/90-pi-image/00-packages`).
pub fn current_step(log: &str) -> Option<String> {
    let t = crate::buildlog::parse(log);
    t.incomplete
        .iter()
        .filter(|i| i.name != crate::buildlog::WHOLE_BUILD)
        .max_by_key(|i| (i.start_offset_seconds, i.name.split('/').count()))
        .map(|i| i.name.clone())
}

/// The child and everything it started (by parent links in /proc, so processes that left
/// the process group, as `sudo` with a pty makes them, are still found).
struct Tree {
    root: u32,
    pgid: Option<rustix::process::Pid>,
}

impl Tree {
    /// CPU time (clock ticks, usually 1/100 s) that counts as "still working" during a
    /// stall window: half a second.
    const BUSY_TICKS: u64 = 50;

    fn new(root: u32) -> Self {
        Self {
            root,
            pgid: i32::try_from(root)
                .ok()
                .and_then(rustix::process::Pid::from_raw),
        }
    }

    /// (pid, ppid, utime + stime + children's) of every process.
    fn processes() -> Vec<(u32, u32, u64)> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                // The command name may hold spaces and parentheses: fields start after
                // the last `)`. Then: state ppid pgrp ... (utime is field 14 overall).
                let rest = &stat[stat.rfind(')')? + 2..];
                let f: Vec<&str> = rest.split_whitespace().collect();
                let ppid = f.get(1)?.parse().ok()?;
                let ticks: u64 = [11, 12, 13, 14]
                    .iter()
                    .filter_map(|&i| f.get(i)?.parse::<u64>().ok())
                    .sum();
                Some((pid, ppid, ticks))
            })
            .collect()
    }

    fn members(&self) -> Vec<(u32, u64)> {
        let all = Self::processes();
        let mut inside = vec![self.root];
        let mut grew = true;
        while grew {
            grew = false;
            for (pid, ppid, _) in &all {
                if inside.contains(ppid) && !inside.contains(pid) {
                    inside.push(*pid);
                    grew = true;
                }
            }
        }
        all.into_iter()
            .filter(|(pid, _, _)| inside.contains(pid))
            .map(|(pid, _, t)| (pid, t))
            .collect()
    }

    fn cpu_ticks(&self) -> u64 {
        self.members().iter().map(|(_, t)| t).sum()
    }

    fn signal(&self, sig: rustix::process::Signal) {
        if let Some(p) = self.pgid {
            let _ = rustix::process::kill_process_group(p, sig);
        }
        for (pid, _) in self.members() {
            if let Some(p) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(p, sig);
            }
        }
    }

    /// SIGTERM to the whole tree (pi-gen's trap unmounts), SIGKILL after the grace time.
    fn stop(&self, child: &mut std::process::Child) {
        self.signal(rustix::process::Signal::TERM);
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) && self.members().len() <= 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.signal(rustix::process::Signal::KILL);
        let _ = child.wait();
    }
}

/// Mount points at or under `dir` (deepest first), from /proc/self/mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// mountinfo writes space, tab, newline and backslash as `\040`-style octal escapes.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_open_step_is_named() {
        let log = "[10:00:00] Begin /p\n[10:00:01] Begin /p/stage2\n[10:00:02] Begin /p/stage2/90-pi-image\n[10:00:03] Begin /p/stage2/90-pi-image/00-packages\n";
        assert_eq!(
            current_step(log).as_deref(),
            Some("stage2/90-pi-image/00-packages")
        );
        let done = format!("{log}[10:00:09] End /p/stage2/90-pi-image/00-packages\n");
        assert_eq!(current_step(&done).as_deref(), Some("stage2/90-pi-image"));
        assert_eq!(current_step(""), None);
    }

    #[test]
    fn mountinfo_octal_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/a\040b\011c"), "/a b\tc");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/end\04"), r"/end\04");
    }
}
