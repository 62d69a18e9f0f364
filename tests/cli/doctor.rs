//! `doctor`: real look-ups on this machine, with PATH narrowed to simulate missing tools.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use crate::support::{pi_image, read_outputs, run};

#[test]
fn missing_tools_are_named_with_their_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    // Only a docker client whose daemon answers.
    fs::write(bin.join("docker"), "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(bin.join("docker"), fs::Permissions::from_mode(0o755)).unwrap();
    // A pi-gen checkout's own `depends`, which doctor reads as run-pi-gen does.
    let pi_gen = tmp.path().join("pi-gen");
    fs::create_dir_all(&pi_gen).unwrap();
    fs::write(
        pi_gen.join("depends"),
        "quilt\nqemu-arm-static:qemu-user-static\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let (code, _, err) = run(pi_image(tmp.path())
        .args(["doctor", "--min-free-gb", "0", "--pi-gen-dir"])
        .arg(&pi_gen)
        .env("PATH", &bin)
        .env("GITHUB_OUTPUT", &out));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("MISSING smoke") && err.contains("`qemu-system-aarch64` with `-M raspi3b`"),
        "{err}"
    );
    let docker = err
        .lines()
        .find(|l| l.contains("Docker daemon"))
        .expect("docker row");
    assert!(
        docker.starts_with("ok ") && docker.contains("`docker info` answers"),
        "{docker}"
    );
    let o = read_outputs(&out);
    let pkgs: Vec<&str> = o["apt-packages"].split(' ').collect();
    for p in [
        "qemu-system-arm",
        "mtools",
        "git",
        "quilt",
        "qemu-user-static",
    ] {
        assert!(pkgs.contains(&p), "{p} in {pkgs:?}");
    }
    assert!(!pkgs.contains(&"docker.io"));
    assert!(err.contains("to install: apt-get install "), "{err}");
    assert!(
        err.contains("`qemu-arm-static`"),
        "the checkout's tool names: {err}"
    );
}

#[test]
fn without_a_checkout_pi_gens_depends_are_said_to_be_unchecked() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, _, err) =
        run(pi_image(tmp.path()).args(["doctor", "--min-free-gb", "0", "--pi-gen-dir", "nowhere"]));
    let row = err
        .lines()
        .find(|l| l.contains("pi-gen's `depends`"))
        .unwrap_or_else(|| panic!("no depends row: {err}"));
    assert!(
        row.contains("not checked: no pi-gen checkout at `nowhere`"),
        "{row}"
    );
    assert!(!err.contains("`quilt`"), "no list of its own: {err}");
}

#[test]
fn print_plan_shows_the_install_command_and_runs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    // apt-get would leave a mark if it ran.
    stub(
        &bin,
        "apt-get",
        &format!("touch {}", tmp.path().join("ran").display()),
    );
    stub(&bin, "sudo", "exec \"$@\"");
    let (code, out, err) = run(pi_image(tmp.path())
        .args(["--print-plan", "doctor", "--apply", "--min-free-gb", "0"])
        .env("PATH", &bin));
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let install: Vec<&str> = plan["install"]
        .as_array()
        .unwrap_or_else(|| panic!("{plan}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        install
            .windows(4)
            .any(|w| w == ["apt-get", "install", "-y", "--no-install-recommends"]),
        "{install:?}"
    );
    assert!(install.contains(&"mtools"), "{install:?}");
    assert!(!tmp.path().join("ran").exists(), "--print-plan ran apt-get");
}

/// An executable `name` in `bin` running `body`.
fn stub(bin: &std::path::Path, name: &str, body: &str) {
    fs::write(bin.join(name), format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(bin.join(name), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn tools_are_judged_by_what_they_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    // A QEMU that has the machine smoke needs, one that lacks it, and the mtools and
    // e2fsprogs tools by name.
    stub(
        &bin,
        "qemu-system-aarch64",
        r#"case "$1" in --version) echo "QEMU emulator version 10.0.2";; -machine) printf 'Supported machines are:\nraspi3b  Raspberry Pi 3B\nvirt  QEMU virt\n';; esac"#,
    );
    stub(
        &bin,
        "qemu-system-arm",
        r#"case "$1" in --version) echo "QEMU emulator version 6.2.0";; -machine) printf 'Supported machines are:\nvirt  QEMU virt\n';; esac"#,
    );
    stub(&bin, "mdir", "exit 0");
    stub(&bin, "debugfs", "exit 0");
    let (_, _, err) = run(pi_image(tmp.path())
        .args(["doctor", "--min-free-gb", "0"])
        .env("PATH", &bin));
    let row = |what: &str| {
        err.lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no row for {what}: {err}"))
            .to_owned()
    };
    for what in [
        "`qemu-system-aarch64` with `-M raspi3b`",
        "`mdir`",
        "`debugfs`",
    ] {
        let r = row(what);
        assert!(r.starts_with("ok "), "{r}");
    }
    let arm = row("`qemu-system-arm` with `-M raspi2b`");
    assert!(
        arm.starts_with("MISSING") && arm.contains("no `raspi2b` machine"),
        "{arm}"
    );
    assert!(row("`qemu-system-aarch64`").contains("QEMU emulator version 10.0.2"));
}
