//! `smoke` with real QEMU on Pi-OS-like images the test fixture script builds from
//! Debian's arm64 kernel and busybox (`tests/fixtures/smoke/build-images.sh`): passes,
//! timeouts, panics, the first-boot reboot, inject/collect, `.img.xz` input, bad images.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crate::support::{pi_image, read_outputs, repo_root, run, sh, sha256_of};

/// The fixture images, built (or found cached) once per test run.
fn images() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("smoke-images");
        let script = repo_root().join("tests/fixtures/smoke/build-images.sh");
        let out = Command::new("bash").arg(&script).arg(&dir).output().expect("bash runs");
        assert!(
            out.status.success(),
            "building the smoke images failed (run the README's test command to install QEMU and the tools):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// QEMU boots compete for the 2 cores: one at a time keeps boot times honest.
fn one_boot_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Smoke {
    tmp: tempfile::TempDir,
}

impl Smoke {
    fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn artifacts(&self) -> PathBuf {
        self.dir().join("smoke")
    }

    /// `pi-image smoke` on `image`, scratch files under this test's own directory
    /// (so its QEMU can be told apart from other tests').
    fn cmd(&self, image: &Path) -> Command {
        let mut cmd = pi_image(self.dir());
        cmd.args(["smoke", "--image"])
            .arg(image)
            .args(["--artifacts-dir", "smoke"]);
        cmd.env("RUNNER_TEMP", self.dir())
            .env("GITHUB_OUTPUT", self.dir().join("gh-output"));
        cmd
    }

    fn summary(&self) -> serde_json::Value {
        serde_json::from_str(&fs::read_to_string(self.artifacts().join("summary.json")).unwrap())
            .unwrap()
    }

    fn outputs(&self) -> std::collections::BTreeMap<String, String> {
        read_outputs(&self.dir().join("gh-output"))
    }

    /// No QEMU started by this test is still running.
    fn assert_no_qemu_left(&self) {
        let needle = self.dir().to_string_lossy().into_owned();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline);
            assert!(
                !(cmdline.contains("qemu-system") && cmdline.contains(&needle)),
                "QEMU left running: {cmdline}"
            );
        }
        let scratch: Vec<_> = fs::read_dir(self.dir())
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("pi-image-smoke-")
            })
            .collect();
        assert!(scratch.is_empty(), "scratch directory left behind");
    }
}

const OK: &str = r"\[first-boot\] ok";

/// QEMU's arguments with the scratch directory (a new one per run) as `[scratch]`.
fn without_scratch(args: &serde_json::Value) -> Vec<String> {
    let re = regex::Regex::new(r"/pi-image-smoke-[^/]+/").unwrap();
    args.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            re.replace_all(a.as_str().unwrap(), "/[scratch]/")
                .into_owned()
        })
        .collect()
}

/// Also: `--print-plan` first prints the QEMU command line the boot then uses, and
/// boots nothing, writes no artifacts and leaves no scratch directory.
#[test]
#[ignore = "tier qemu: boots images in QEMU (scripts/test.sh installs QEMU and builds the images)"]
fn passes_on_raspi3b_and_leaves_the_input_alone() {
    let img = images().join("ok.img");
    let before = sha256_of(&img);
    let s = Smoke::new();
    let (code, printed, err) = run(s.cmd(&img).arg("--print-plan"));
    assert_eq!(code, 0, "{printed}{err}");
    let plan: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(plan["machine"], "raspi3b");
    assert!(
        !s.artifacts().exists(),
        "--print-plan made the artifacts directory"
    );
    assert!(
        !s.dir().join("gh-output").exists(),
        "--print-plan wrote outputs"
    );
    s.assert_no_qemu_left();
    let _one = one_boot_at_a_time();
    let (code, stdout, err) = run(s.cmd(&img).args(["--marker", OK, "--timeout", "120"]));
    assert_eq!(code, 0, "{stdout}{err}");
    assert_eq!(sha256_of(&img), before);
    let summary = s.summary();
    assert_eq!(summary["status"], "pass");
    assert_eq!(summary["machine"], "raspi3b");
    assert_eq!(summary["boots"], 1);
    assert!(
        summary["qemu_version"]
            .as_str()
            .unwrap()
            .contains("QEMU emulator version")
    );
    assert!(
        summary["kernel_cmdline"]
            .as_str()
            .unwrap()
            .starts_with("console=ttyAMA0,115200 root=/dev/mmcblk0p2 ")
    );
    assert!(
        summary["qemu_args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "tcg,thread=single")
    );
    assert_eq!(summary["image_sha256"], before);
    assert_eq!(
        without_scratch(&summary["qemu_args"]),
        without_scratch(&plan["qemu_args"]),
        "the boot did not use the printed plan"
    );
    let serial = fs::read_to_string(s.artifacts().join("serial.log")).unwrap();
    assert!(serial.contains("[first-boot] ok"), "{serial}");
    assert_eq!(
        fs::read_to_string(s.artifacts().join("smoke-success.json")).unwrap(),
        "{\n  \"status\": \"pass\"\n}\n"
    );
    assert!(!s.artifacts().join("error.json").exists());
    let out = s.outputs();
    assert_eq!(out["status"], "pass");
    assert_eq!(out["machine"], "raspi3b");
    assert!(out["boot-seconds"].parse::<f64>().unwrap() > 0.0);
    // The serial console is streamed, prefixed, to the step log.
    assert!(err.contains("[guest] [first-boot] ok") || stdout.contains("[guest] [first-boot] ok"));
    s.assert_no_qemu_left();
}

#[test]
#[ignore = "tier qemu: boots images in QEMU (scripts/test.sh installs QEMU and builds the images)"]
fn passes_on_virt_and_from_img_xz() {
    let s = Smoke::new();
    let xz = s.dir().join("ok.img.xz");
    sh(
        "bash",
        &[
            "-c",
            &format!(
                "xz -T1 -0 -c '{}' > '{}'",
                images().join("ok.img").display(),
                xz.display()
            ),
        ],
        s.dir(),
    );
    let before = sha256_of(&xz);
    let _one = one_boot_at_a_time();
    let (code, _, err) =
        run(s
            .cmd(&xz)
            .args(["--marker", OK, "--timeout", "120", "--machine", "virt"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.summary()["machine"], "virt");
    assert!(
        s.summary()["kernel_cmdline"]
            .as_str()
            .unwrap()
            .contains("root=/dev/vda2")
    );
    assert_eq!(sha256_of(&xz), before);
    let (code, _, err) = run(s.cmd(&xz).args(["--marker", OK, "--timeout", "120"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.summary()["machine"], "raspi3b");
    s.assert_no_qemu_left();
}

#[test]
#[ignore = "tier qemu: boots images in QEMU (scripts/test.sh installs QEMU and builds the images)"]
fn a_silent_image_times_out_and_qemu_is_stopped() {
    let s = Smoke::new();
    let _one = one_boot_at_a_time();
    let started = Instant::now();
    let (code, _, err) =
        run(s
            .cmd(&images().join("silent.img"))
            .args(["--marker", OK, "--timeout", "15"]));
    assert_eq!(code, 1, "{err}");
    assert!(started.elapsed().as_secs() < 60);
    let error = fs::read_to_string(s.artifacts().join("error.json")).unwrap();
    assert!(error.contains("timed out after 15s"), "{error}");
    assert!(
        error.contains("silent image"),
        "the last console lines are in the error: {error}"
    );
    assert!(!s.artifacts().join("smoke-success.json").exists());
    assert_eq!(s.outputs()["status"], "fail");
    s.assert_no_qemu_left();
}

#[test]
#[ignore = "tier qemu: boots images in QEMU (scripts/test.sh installs QEMU and builds the images)"]
fn a_kernel_panic_fails_fast() {
    let s = Smoke::new();
    let _one = one_boot_at_a_time();
    let started = Instant::now();
    let (code, _, err) =
        run(s
            .cmd(&images().join("panic.img"))
            .args(["--marker", OK, "--timeout", "300"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        started.elapsed().as_secs() < 120,
        "failed on the marker, not the timeout"
    );
    let error = fs::read_to_string(s.artifacts().join("error.json")).unwrap();
    assert!(error.contains("Kernel panic"), "{error}");
    s.assert_no_qemu_left();
}

#[test]
#[ignore = "tier qemu: boots images in QEMU (scripts/test.sh installs QEMU and builds the images)"]
fn the_first_boot_reboot_is_followed() {
    let s = Smoke::new();
    let _one = one_boot_at_a_time();
    let (code, _, err) =
        run(s
            .cmd(&images().join("reboot.img"))
            .args(["--marker", OK, "--timeout", "180"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.summary()["boots"], 2);
    let serial = fs::read_to_string(s.artifacts().join("serial.log")).unwrap();
    assert!(
        serial.contains("resizing root filesystem") && serial.contains("[first-boot] ok"),
        "{serial}"
    );
    // Without following the reboot, the same image fails.
    let (code, _, err) = run(s.cmd(&images().join("reboot.img")).args([
        "--marker",
        OK,
        "--timeout",
        "180",
        "--max-reboots",
        "0",
    ]));
    assert_eq!(code, 1, "{err}");
    assert!(
        fs::read_to_string(s.artifacts().join("error.json"))
            .unwrap()
            .contains("rebooted more than 0 time")
    );
    s.assert_no_qemu_left();
}

#[test]
#[ignore = "tier qemu: boots images in QEMU (scripts/test.sh installs QEMU and builds the images)"]
fn inject_and_collect_round_trip_with_default_markers() {
    let s = Smoke::new();
    let hook = s.dir().join("hook.sh");
    fs::write(
        &hook,
        "#!/bin/sh\nmkdir -p /boot/first-boot-report /var/log/sugarkube\n\
         echo '{\"overall\": \"pass\"}' > /boot/first-boot-report/summary.json\n\
         echo ok > /var/log/sugarkube/first-boot.ok\nsync\n\
         echo '[first-boot] summary.json written to /boot/first-boot-report/summary.json'\nsync\npoweroff -f\n",
    )
    .unwrap();
    let conf = s.dir().join("drop-in.conf");
    fs::write(&conf, "[Service]\nEnvironment=FIRST_BOOT_ATTEMPTS=1\n").unwrap();
    let _one = one_boot_at_a_time();
    let (code, _, err) = run(s
        .cmd(&images().join("hook.img"))
        .args(["--timeout", "120", "--inject"])
        .arg(format!("{}:/opt/smoketest/hook.sh:0755", hook.display()))
        .arg("--inject")
        .arg(format!(
            "{}:/etc/systemd/system/first-boot.service.d/zz-smoketest.conf",
            conf.display()
        ))
        .args([
            "--collect",
            "/boot/first-boot-report",
            "--collect",
            "/var/log/sugarkube",
            "--collect",
            "/etc/systemd/system/first-boot.service.d/zz-smoketest.conf",
            "--collect",
            "/nonexistent",
        ]));
    assert_eq!(code, 0, "{err}");
    let collected = s.artifacts().join("collected");
    assert_eq!(
        fs::read_to_string(collected.join("boot/first-boot-report/summary.json")).unwrap(),
        "{\"overall\": \"pass\"}\n"
    );
    assert_eq!(
        fs::read_to_string(collected.join("var/log/sugarkube/first-boot.ok")).unwrap(),
        "ok\n"
    );
    assert_eq!(
        fs::read_to_string(
            collected.join("etc/systemd/system/first-boot.service.d/zz-smoketest.conf")
        )
        .unwrap(),
        fs::read_to_string(&conf).unwrap()
    );
    let summary = s.summary();
    assert_eq!(summary["missing"], serde_json::json!(["/nonexistent"]));
    assert_eq!(
        summary["markers_seen"][0]["marker"],
        r"\[first-boot\] summary\.json"
    );
    s.assert_no_qemu_left();
}

/// A guest that may be malicious plants links where `--collect` looks: to an absolute
/// host path, to a directory, and a host link is already where the collected files go.
/// Nothing is written through any of them, no link is made on the host, and each
/// skipped link is named.
#[test]
#[ignore = "tier qemu: boots images in QEMU (scripts/test.sh installs QEMU and builds the images)"]
fn a_malicious_guests_symlinks_never_reach_the_host() {
    let s = Smoke::new();
    let victim = s.dir().join("victim");
    fs::write(&victim, "host file\n").unwrap();
    let host_dir = s.dir().join("host-dir");
    fs::create_dir_all(&host_dir).unwrap();
    fs::create_dir_all(s.artifacts()).unwrap();
    std::os::unix::fs::symlink(&host_dir, s.artifacts().join("collected")).unwrap();
    let hook = s.dir().join("hook.sh");
    fs::write(
        &hook,
        format!(
            "#!/bin/sh\nmkdir -p /var/log/evil\necho fine > /var/log/evil/ok.txt\n\
             ln -s {v} /var/log/evil/link\nln -s /etc /var/log/evil/etc-link\n\
             ln -s {v} /var/log/file-link\nsync\n\
             echo '[first-boot] summary.json written to /boot/first-boot-report/summary.json'\nsync\npoweroff -f\n",
            v = victim.display()
        ),
    )
    .unwrap();
    let _one = one_boot_at_a_time();
    let (code, _, err) = run(s
        .cmd(&images().join("hook.img"))
        .args(["--timeout", "120", "--inject"])
        .arg(format!("{}:/opt/smoketest/hook.sh:0755", hook.display()))
        .args([
            "--collect",
            "/var/log/evil",
            "--collect",
            "/var/log/file-link",
        ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "host file\n");
    assert_eq!(
        fs::read_dir(&host_dir).unwrap().count(),
        0,
        "written through a host link"
    );
    let collected = s.artifacts().join("collected");
    assert!(fs::symlink_metadata(&collected).unwrap().is_dir());
    assert_eq!(
        fs::read_to_string(collected.join("var/log/evil/ok.txt")).unwrap(),
        "fine\n"
    );
    for e in walkdir::WalkDir::new(&collected) {
        let e = e.unwrap();
        assert!(
            !e.path_is_symlink(),
            "a link was made on the host: {}",
            e.path().display()
        );
    }
    let skipped = s.summary()["skipped"].to_string();
    assert!(
        skipped.contains("/var/log/evil/link: a symlink in the guest"),
        "{skipped}"
    );
    assert!(
        skipped.contains("/var/log/evil/etc-link: a symlink in the guest"),
        "{skipped}"
    );
    assert!(err.contains("--collect: skipped"), "{err}");
    s.assert_no_qemu_left();
}

#[test]
#[ignore = "tier qemu: boots images in QEMU (scripts/test.sh installs QEMU and builds the images)"]
fn bad_images_are_clear_errors() {
    let s = Smoke::new();
    let not_disk = s.dir().join("random.img");
    fs::write(&not_disk, vec![7u8; 4096]).unwrap();
    let truncated = s.dir().join("ok.img.xz");
    sh(
        "bash",
        &[
            "-c",
            &format!(
                "xz -T1 -0 -c '{}' | head -c 300000 > '{}'",
                images().join("ok.img").display(),
                truncated.display()
            ),
        ],
        s.dir(),
    );
    for (image, needle) in [
        (not_disk, "no MBR partition table"),
        (images().join("no-boot.img"), "no FAT boot partition"),
        (
            images().join("no-kernel.img"),
            "no kernel in the boot partition: `kernel8.img` is missing",
        ),
        (truncated, "not a valid or complete .xz file"),
    ] {
        let (code, _, err) = run(s.cmd(&image).args(["--timeout", "30"]));
        assert_eq!(code, 1, "{image:?}: {err}");
        assert!(
            err.contains(needle),
            "{image:?}: expected {needle:?} in {err}"
        );
        let error = fs::read_to_string(s.artifacts().join("error.json")).unwrap();
        assert!(error.contains(needle), "{error}");
    }
    let (code, _, err) = run(s
        .cmd(&images().join("ok.img"))
        .env("QEMU_SYSTEM_AARCH64", "/nonexistent/qemu"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("apt-get install qemu-system-arm"), "{err}");
    let (code, _, err) = run(s
        .cmd(&images().join("ok.img"))
        .args(["--marker", "(unclosed"]));
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(s
        .cmd(&images().join("ok.img"))
        .args(["--inject", "/etc/hostname:relative/path"]));
    assert_eq!(code, 2, "{err}");
    s.assert_no_qemu_left();
}

#[test]
#[ignore = "tier qemu: boots images in QEMU (scripts/test.sh installs QEMU and builds the images)"]
fn armhf_images_boot_on_raspi2b_and_survive_the_reboot() {
    let s = Smoke::new();
    let _one = one_boot_at_a_time();
    let (code, _, err) =
        run(s
            .cmd(&images().join("armhf-ok.img"))
            .args(["--marker", OK, "--timeout", "240"]));
    assert_eq!(code, 0, "{err}");
    let summary = s.summary();
    assert_eq!(summary["machine"], "raspi2b");
    assert_eq!(summary["arch"], "armhf");
    assert_eq!(summary["qemu"], "qemu-system-arm");
    assert!(
        summary["qemu_args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().ends_with("kernel7.img"))
    );
    let (code, _, err) =
        run(s
            .cmd(&images().join("armhf-reboot.img"))
            .args(["--marker", OK, "--timeout", "240"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.summary()["boots"], 2);
    // An arm64-only board is refused for it, with the reason.
    let (code, _, err) = run(s
        .cmd(&images().join("armhf-ok.img"))
        .args(["--machine", "raspi3b"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot boot this armhf (kernel7*.img) image"),
        "{err}"
    );
    s.assert_no_qemu_left();
}
