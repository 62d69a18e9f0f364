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

#[test]
fn tools_on_this_machine_are_found() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, _, err) = run(pi_image(tmp.path()).args(["doctor", "--min-free-gb", "0"]));
    // The README's test command installs these.
    for line in [
        "`qemu-system-aarch64` with `-M raspi3b`",
        "`qemu-system-arm` with `-M raspi2b`",
        "`mdir`",
        "`debugfs`",
        "binfmt_misc `qemu-aarch64`",
    ] {
        let row = err
            .lines()
            .find(|l| l.contains(line))
            .unwrap_or_else(|| panic!("no row for {line}: {err}"));
        assert!(row.starts_with("ok "), "{row}");
    }
}
