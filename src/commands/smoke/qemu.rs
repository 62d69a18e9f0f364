//! QEMU: one boot (its command line is planned in [`super::plan`]), watched on the serial
//! console until a success marker, a failure marker, a guest reboot, QEMU's exit or
//! the deadline. QEMU is always stopped (SIGTERM, then SIGKILL) and reaped.

use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use regex::Regex;

use crate::atomic::check_interrupted;
use crate::gha::Gha;
use crate::process::{CmdSpec, Event, Pipe, Streaming};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    Raspi3b,
    Raspi2b,
    Virt,
}

/// The image's userspace: `kernel8.img` (arm64) or `kernel7*.img` (armhf).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Arm64,
    Armhf,
}

impl Machine {
    pub fn name(self) -> &'static str {
        match self {
            Machine::Raspi3b => "raspi3b",
            Machine::Raspi2b => "raspi2b",
            Machine::Virt => "virt",
        }
    }

    /// The root partition's device node on this machine.
    pub fn root_device(self) -> &'static str {
        match self {
            Machine::Raspi3b | Machine::Raspi2b => "/dev/mmcblk0p2",
            Machine::Virt => "/dev/vda2",
        }
    }
}

/// How one QEMU run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// A success marker was seen.
    Pass,
    /// A failure marker was seen.
    Failure {
        marker: String,
        line: String,
    },
    /// The guest asked to reboot (QEMU runs with `-no-reboot`, so it exited).
    Rebooted,
    /// QEMU exited on its own without a marker.
    Exited {
        status: String,
        stderr: String,
    },
    TimedOut,
}

/// A marker seen on the console, and when.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Seen {
    pub marker: String,
    pub line: String,
    pub seconds: f64,
}

pub struct Watch<'a> {
    pub success: &'a [Regex],
    pub failure: &'a [Regex],
    /// Time zero for the reported marker times (the first QEMU start).
    pub epoch: Instant,
    pub deadline: Instant,
    /// After a success marker, how long the guest may take to shut down cleanly.
    pub grace: Duration,
}

/// Kills and reaps QEMU however the boot ends (error, panic, interruption).
struct Reaper(Streaming);

impl Reaper {
    fn stop(&mut self) {
        let child = &mut self.0.child;
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if let Some(pid) = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kernel messages that end a boot without a marker.
const REBOOTING: &str = "reboot: Restarting system";
const HALTED: [&str; 2] = ["reboot: System halted", "reboot: Power down"];

/// Boots once, appending the console to `serial` and streaming it to the log.
pub fn boot(
    gha: &Gha,
    program: &str,
    args: &[String],
    serial: &mut File,
    watch: &Watch<'_>,
    seen: &mut Vec<Seen>,
) -> anyhow::Result<Ending> {
    tracing::info!("starting {program} {}", shell_words(args));
    let mut reaper = Reaper(
        CmdSpec::new(
            program,
            "boot the image (QEMU: apt-get install qemu-system-arm)",
        )
        .args(args)
        .stream()?,
    );
    // serial.log gets the console byte for byte, whatever the loop below makes of it.
    let sink = serial.try_clone().context("cannot write serial.log")?;
    reaper.0.tee(Pipe::Stdout, sink);
    // The console is the guest's to write: fenced, so the runner executes nothing a
    // (possibly malicious) image prints.
    let fence = gha.fence();
    let mut stderr = String::new();
    let mut passed_at: Option<Instant> = None;
    let mut rebooting = false;
    let ending = loop {
        check_interrupted()?;
        let now = Instant::now();
        if let Some(t) = passed_at
            && now >= t + watch.grace
        {
            break Ending::Pass;
        }
        if passed_at.is_none() && now >= watch.deadline {
            break Ending::TimedOut;
        }
        match reaper.0.next(Duration::from_millis(100)) {
            Event::Idle | Event::Partial(Pipe::Stderr) => {}
            Event::Line(Pipe::Stderr, l) => {
                stderr.push_str(&String::from_utf8_lossy(&l));
                stderr.push('\n');
            }
            Event::Line(Pipe::Stdout, l) => {
                let text = clean(&l);
                fence.line(&format!("[guest] {text}"));
                if let Some(v) = judge(&text, watch, seen, &mut passed_at, &mut rebooting) {
                    break v;
                }
            }
            Event::Partial(Pipe::Stdout) => {
                // Prompts such as `raspberrypi login: ` never end their line.
                let text = clean(reaper.0.pending(Pipe::Stdout));
                if passed_at.is_none()
                    && let Some(m) = watch.success.iter().find(|r| r.is_match(&text))
                {
                    record(seen, m, &text, watch.epoch);
                    passed_at = Some(Instant::now());
                }
            }
            Event::Closed => {
                let status = reaper
                    .0
                    .child
                    .wait()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                if passed_at.is_some() {
                    break Ending::Pass;
                }
                if rebooting {
                    break Ending::Rebooted;
                }
                break Ending::Exited {
                    status,
                    stderr: stderr.trim().to_owned(),
                };
            }
        }
    };
    reaper.stop();
    let rest = reaper.0.pending(Pipe::Stdout).to_vec();
    if !rest.is_empty() {
        fence.line(&format!("[guest] {}", clean(&rest)));
    }
    if let Some(e) = reaper.0.take_tee_error() {
        return Err(e).context("cannot write serial.log");
    }
    let _ = serial.flush();
    drop(fence);
    Ok(ending)
}

fn record(seen: &mut Vec<Seen>, marker: &Regex, line: &str, epoch: Instant) {
    seen.push(Seen {
        marker: marker.as_str().to_owned(),
        line: line.to_owned(),
        seconds: (epoch.elapsed().as_millis() as f64 / 1000.0),
    });
}

/// Decides what a complete console line means.
fn judge(
    text: &str,
    watch: &Watch<'_>,
    seen: &mut Vec<Seen>,
    passed_at: &mut Option<Instant>,
    rebooting: &mut bool,
) -> Option<Ending> {
    if passed_at.is_some() {
        // Already passed: only wait for the guest to finish shutting down.
        return HALTED
            .iter()
            .any(|h| text.contains(h))
            .then_some(Ending::Pass);
    }
    if let Some(m) = watch.failure.iter().find(|r| r.is_match(text)) {
        return Some(Ending::Failure {
            marker: m.as_str().to_owned(),
            line: text.to_owned(),
        });
    }
    if let Some(m) = watch.success.iter().find(|r| r.is_match(text)) {
        record(seen, m, text, watch.epoch);
        *passed_at = Some(Instant::now());
        return None;
    }
    if text.contains(REBOOTING) {
        *rebooting = true;
    }
    None
}

/// Console bytes as a printable line: no CR, no escape sequences or other controls.
fn clean(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip a CSI sequence: ESC [ params final-byte.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out
}

/// The command as a copy-pasteable line for logs.
pub fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| crate::shell::quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_lose_escape_sequences_and_controls() {
        assert_eq!(
            clean(b"\x1b[0;32m  OK  \x1b[0m Started x.\r"),
            "  OK   Started x."
        );
    }

    #[test]
    fn console_lines_decide_pass_failure_and_reboot() {
        let success = vec![Regex::new(r"\[first-boot\] ok").unwrap()];
        let failure = vec![Regex::new("Kernel panic").unwrap()];
        let w = Watch {
            success: &success,
            failure: &failure,
            epoch: Instant::now(),
            deadline: Instant::now(),
            grace: Duration::ZERO,
        };
        let (mut seen, mut passed, mut reboot) = (Vec::new(), None, false);
        assert_eq!(
            judge(
                "[    2.1] reboot: Restarting system",
                &w,
                &mut seen,
                &mut passed,
                &mut reboot
            ),
            None
        );
        assert!(reboot);
        assert!(matches!(
            judge(
                "Kernel panic - not syncing",
                &w,
                &mut seen,
                &mut passed,
                &mut reboot
            ),
            Some(Ending::Failure { .. })
        ));
        assert_eq!(
            judge("[first-boot] ok", &w, &mut seen, &mut passed, &mut reboot),
            None
        );
        assert!(passed.is_some() && seen.len() == 1);
        assert_eq!(
            judge(
                "reboot: System halted",
                &w,
                &mut seen,
                &mut passed,
                &mut reboot
            ),
            Some(Ending::Pass)
        );
    }
}
