//! QEMU: the command line for each machine (pure), and one boot watched on the serial
//! console until a success marker, a failure marker, a guest reboot, QEMU's exit or
//! the deadline. QEMU is always stopped (SIGTERM, then SIGKILL) and reaped.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use regex::Regex;

use crate::atomic::check_interrupted;
use crate::gha::Gha;

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

/// QEMU option values are comma-separated; a literal comma is written twice.
fn qemu_escape(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// Arguments for `qemu-system-aarch64` (arm64) or `qemu-system-arm` (armhf). The raspi
/// boards take exactly 1 GiB (the only size their models accept). raspi3b runs
/// single-threaded TCG, measured faster on 2-core runners than MTTCG with 4 emulated
/// cores; raspi2b must not: its 32-bit kernel then hangs in a `stop_machine` TLB flush.
/// 32-bit virt needs `highmem=off` for its PCI virtio disk.
pub fn args(
    machine: Machine,
    arch: Arch,
    kernel: &Path,
    dtb: Option<&Path>,
    initrd: Option<&Path>,
    cmdline: &str,
    disk: &Path,
) -> Vec<String> {
    let board: &[&str] = match (machine, arch) {
        (Machine::Raspi3b, _) => &["-M", "raspi3b", "-accel", "tcg,thread=single", "-m", "1G"],
        (Machine::Raspi2b, _) => &["-M", "raspi2b", "-m", "1G"],
        (Machine::Virt, Arch::Arm64) => &[
            "-M",
            "virt",
            "-cpu",
            "cortex-a72",
            "-m",
            "1G",
            "-nic",
            "none",
        ],
        (Machine::Virt, Arch::Armhf) => &[
            "-M",
            "virt,highmem=off",
            "-cpu",
            "cortex-a15",
            "-m",
            "1G",
            "-nic",
            "none",
        ],
    };
    let mut a: Vec<String> = board.iter().map(|s| (*s).to_owned()).collect();
    a.extend(
        [
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ]
        .map(String::from),
    );
    a.extend(["-kernel".into(), kernel.display().to_string()]);
    if let Some(dtb) = dtb {
        a.extend(["-dtb".into(), dtb.display().to_string()]);
    }
    if let Some(initrd) = initrd {
        a.extend(["-initrd".into(), initrd.display().to_string()]);
    }
    a.extend(["-append".into(), cmdline.to_owned()]);
    let drive = match machine {
        Machine::Raspi3b | Machine::Raspi2b => {
            format!("file={},if=sd,format=raw", qemu_escape(disk))
        }
        Machine::Virt => format!("file={},if=virtio,format=raw", qemu_escape(disk)),
    };
    a.extend(["-drive".into(), drive]);
    a
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
struct Reaper(Child);

impl Reaper {
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        if let Some(pid) = i32::try_from(self.0.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Msg {
    Out(Vec<u8>),
    Eof,
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
    let mut child = crate::process::command(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "failed to boot the image: cannot run `{program}` (apt-get install qemu-system-arm)"
            )
        })?;
    let mut stdout = child.stdout.take().context("QEMU has no stdout")?;
    let mut stderr = child.stderr.take().context("QEMU has no stderr")?;
    let mut reaper = Reaper(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Msg::Eof);
                    return;
                }
                Ok(n) => {
                    if tx.send(Msg::Out(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    // The console is the guest's to write: fenced, so the runner executes nothing a
    // (possibly malicious) image prints.
    let fence = gha.fence();
    let mut line = Vec::new();
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
        let msg = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => m,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => Msg::Eof,
        };
        let bytes = match msg {
            Msg::Out(b) => b,
            Msg::Eof => {
                let status = reaper.0.wait().map(|s| s.to_string()).unwrap_or_default();
                if passed_at.is_some() {
                    break Ending::Pass;
                }
                if rebooting {
                    break Ending::Rebooted;
                }
                // QEMU has exited, so its stderr is closed and the reader ends.
                let stderr = err_thread.join().unwrap_or_default();
                break Ending::Exited {
                    status,
                    stderr: stderr.trim().to_owned(),
                };
            }
        };
        serial
            .write_all(&bytes)
            .context("cannot write serial.log")?;
        let mut verdict = None;
        for &b in &bytes {
            if b == b'\n' {
                let text = clean(&line);
                line.clear();
                fence.line(&format!("[guest] {text}"));
                if let Some(v) = judge(&text, watch, seen, &mut passed_at, &mut rebooting) {
                    verdict = Some(v);
                    break;
                }
            } else {
                line.push(b);
            }
        }
        if verdict.is_none() && passed_at.is_none() && !line.is_empty() {
            // Prompts such as `raspberrypi login: ` never end their line.
            let text = clean(&line);
            if let Some(m) = watch.success.iter().find(|r| r.is_match(&text)) {
                record(seen, m, &text, watch.epoch);
                passed_at = Some(Instant::now());
            }
        }
        if let Some(v) = verdict {
            break v;
        }
    };
    let _ = serial.flush();
    reaper.stop();
    if !line.is_empty() {
        fence.line(&format!("[guest] {}", clean(&line)));
    }
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
    fn raspi3b_command() {
        let a = args(
            Machine::Raspi3b,
            Arch::Arm64,
            Path::new("/w/kernel8.img"),
            Some(Path::new("/w/x.dtb")),
            None,
            "console=ttyAMA0,115200 root=/dev/mmcblk0p2",
            Path::new("/w/a,b.img"),
        );
        let s = shell_words(&a);
        assert_eq!(
            s,
            "-M raspi3b -accel tcg,thread=single -m 1G -display none -monitor none -serial stdio -no-reboot \
             -kernel /w/kernel8.img -dtb /w/x.dtb -append 'console=ttyAMA0,115200 root=/dev/mmcblk0p2' \
             -drive file=/w/a,,b.img,if=sd,format=raw"
        );
    }

    #[test]
    fn virt_command() {
        let a = args(
            Machine::Virt,
            Arch::Arm64,
            Path::new("/k"),
            None,
            Some(Path::new("/i")),
            "root=/dev/vda2",
            Path::new("/d.img"),
        );
        assert!(a.windows(2).any(|w| w == ["-initrd", "/i"]));
        assert!(a.contains(&"file=/d.img,if=virtio,format=raw".to_owned()));
        assert!(a.windows(2).any(|w| w == ["-nic", "none"]));
        assert!(!a.contains(&"-dtb".to_owned()));
    }

    #[test]
    fn armhf_commands() {
        let a = args(
            Machine::Raspi2b,
            Arch::Armhf,
            Path::new("/k7"),
            Some(Path::new("/d")),
            None,
            "x",
            Path::new("/i"),
        );
        assert_eq!(&a[..4], ["-M", "raspi2b", "-m", "1G"]);
        assert!(!a.contains(&"tcg,thread=single".to_owned()));
        let v = args(
            Machine::Virt,
            Arch::Armhf,
            Path::new("/k7"),
            None,
            None,
            "x",
            Path::new("/i"),
        );
        assert_eq!(&v[..4], ["-M", "virt,highmem=off", "-cpu", "cortex-a15"]);
    }

    #[test]
    fn console_cleaning() {
        assert_eq!(
            clean(b"\x1b[0;32m  OK  \x1b[0m Started x.\r"),
            "  OK   Started x."
        );
    }

    #[test]
    fn judging_lines() {
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
