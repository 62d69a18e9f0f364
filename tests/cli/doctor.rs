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
    let out = tmp.path().join("out");
    let (code, _, err) = run(pi_image(tmp.path())
        .args(["doctor", "--min-free-gb", "0"])
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
    for p in ["qemu-system-arm", "mtools", "git", "quilt"] {
        assert!(pkgs.contains(&p), "{p} in {pkgs:?}");
    }
    assert!(!pkgs.contains(&"docker.io"));
    assert!(err.contains("to install: apt-get install "), "{err}");
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
