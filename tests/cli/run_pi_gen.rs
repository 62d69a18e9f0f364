//! `run-pi-gen`: configuration safety, where the seed and overlay land, the strategies'
//! exact command lines (a `docker` shim records argv; no Docker daemon exists here),
//! the fallback order, and real builds with the test pi-gen in `tests/fixtures/pi-gen`
//! (real chroot into an arm64 root filesystem through binfmt).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{pi_image, read_outputs, run};

const USER_DATA: &str = "#cloud-config\nhostname: pi-test\nruncmd:\n  - [sh, -c, 'echo hello']\n";

struct Ws {
    tmp: tempfile::TempDir,
}

impl Ws {
    fn new() -> Self {
        let ws = Self {
            tmp: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(ws.root().join("cloud-init")).unwrap();
        fs::write(ws.root().join("cloud-init/user-data.yaml"), USER_DATA).unwrap();
        ws
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// A pi-gen-shaped checkout that is enough for planning and container argv tests.
    fn skeleton(&self, depends: &str) -> PathBuf {
        let dir = self.root().join("pi-gen");
        for s in [
            "stage0",
            "stage1",
            "stage2/04-cloud-init/files",
            "export-image",
        ] {
            fs::create_dir_all(dir.join(s)).unwrap();
        }
        fs::write(dir.join("stage2/EXPORT_IMAGE"), "IMG_SUFFIX=\"-lite\"\n").unwrap();
        fs::write(dir.join("build.sh"), "#!/bin/bash\n# reads IMG_NAME RELEASE DEPLOY_DIR ENABLE_SSH TARGET_HOSTNAME ENABLE_CLOUD_INIT FIRST_USER_NAME STAGE_LIST\nexit 0\n").unwrap();
        fs::write(dir.join("depends"), depends).unwrap();
        fs::write(
            dir.join("Dockerfile"),
            "FROM debian:bookworm\nCOPY . /pi-gen/\n",
        )
        .unwrap();
        dir
    }

    /// `docker` on PATH: records argv; `docker info` and `docker run` exit as told.
    fn docker_shim(&self, info_exit: i32, run_exit: i32) -> PathBuf {
        let bin = self.root().join("shim-bin");
        fs::create_dir_all(&bin).unwrap();
        let log = self.root().join("docker.log");
        let script = format!(
            "#!/bin/bash\nprintf '%s\\n' \"$*\" >> '{}'\ncase \"$1\" in\n  info) exit {info_exit};;\n  run) exit {run_exit};;\nesac\nexit 0\n",
            log.display()
        );
        fs::write(bin.join("docker"), script).unwrap();
        fs::set_permissions(bin.join("docker"), fs::Permissions::from_mode(0o755)).unwrap();
        bin
    }

    fn docker_log(&self) -> Vec<String> {
        fs::read_to_string(self.root().join("docker.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn cmd(&self) -> Command {
        let mut c = pi_image(self.root());
        c.args([
            "run-pi-gen",
            "--output-dir",
            "out",
            "--min-free-gb",
            "0",
            "--skip-cloud-init-validation",
        ]);
        c.env("GITHUB_OUTPUT", self.root().join("gh-output"));
        c
    }

    fn with_path(&self, cmd: &mut Command, bin: &Path) {
        cmd.env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        );
    }
}

#[test]
fn container_strategy_command_lines() {
    let ws = Ws::new();
    let checkout = ws.skeleton("");
    let bin = ws.docker_shim(0, 0);
    let mut c = ws.cmd();
    c.args(["--pi-gen-dir", "pi-gen", "--strategy", "container"])
        .env("APT_MIRROR", "http://mirror.example/raspbian");
    ws.with_path(&mut c, &bin);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    let log = ws.docker_log();
    let root = ws.root().display().to_string();
    assert_eq!(log[0], "info");
    assert_eq!(
        log[1],
        format!("build -t pi-gen:bookworm-arm64 {}", checkout.display())
    );
    assert!(
        log[2].starts_with(&format!(
            "run --rm --privileged --name pi-image-sugarkube --volume {root}/out/deploy:/pi-gen/deploy --volume pi-gen-work-cache:/pi-gen/work \
             --volume pi-gen-apt-cache:/var/cache/apt --volume {root}/cloud-init/user-data.yaml:/pi-gen/stage2/04-cloud-init/files/user-data:ro \
             --env IMG_NAME=sugarkube --env ENABLE_SSH=1 --env APT_MIRROR=http://mirror.example/raspbian pi-gen:bookworm-arm64 bash -e -o pipefail -c"
        )),
        "{}",
        log[2]
    );
    let out = read_outputs(&ws.root().join("gh-output"));
    assert_eq!(out["strategy"], "container");
    assert_eq!(out["pi-gen-ref"], "bookworm-arm64");
    assert_eq!(out["deploy-dir"], format!("{root}/out/deploy"));
    // The config pi-gen will source, and the seed where this pi-gen reads it.
    let config = fs::read_to_string(checkout.join("config")).unwrap();
    assert!(
        config.contains("IMG_NAME='sugarkube'") && config.contains("ENABLE_CLOUD_INIT='1'"),
        "{config}"
    );
    assert_eq!(
        fs::read_to_string(checkout.join("stage2/04-cloud-init/files/user-data")).unwrap(),
        USER_DATA
    );
}

#[test]
fn no_docker_daemon_is_a_clear_error() {
    let ws = Ws::new();
    ws.skeleton("");
    let bin = ws.docker_shim(1, 0);
    let mut c = ws.cmd();
    c.args(["--pi-gen-dir", "pi-gen", "--strategy", "container"]);
    ws.with_path(&mut c, &bin);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("Docker daemon is not running or not accessible"),
        "{err}"
    );
    assert_eq!(ws.docker_log(), ["info"]);
}

#[test]
fn auto_falls_back_in_order_saying_why() {
    let ws = Ws::new();
    ws.skeleton("definitely-missing-tool:some-package\n");
    // Every `docker run` fails: the container strategy fails, then debian-container too.
    let bin = ws.docker_shim(0, 7);
    let mut c = ws.cmd();
    c.args(["--pi-gen-dir", "pi-gen", "--strategy", "auto"]);
    ws.with_path(&mut c, &bin);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 1, "{err}");
    let native = err.find("strategy native: skipped: pi-gen's tools definitely-missing-tool are missing: apt-get install some-package").expect(&err);
    let container = err
        .find("strategy container: pi-gen in its container failed with exit code 7")
        .expect(&err);
    let debian = err
        .find("strategy debian-container: pi-gen in debian:bookworm failed with exit code 7")
        .expect(&err);
    assert!(native < container && container < debian);
    let runs: Vec<_> = ws
        .docker_log()
        .into_iter()
        .filter(|l| l.starts_with("run "))
        .collect();
    assert_eq!(runs.len(), 2);
    assert!(
        runs[1].contains(&format!("--volume {}/pi-gen:/pi-gen", ws.root().display()))
            && runs[1].contains(" debian:bookworm bash "),
        "{}",
        runs[1]
    );
    assert!(
        runs[1]
            .contains("apt-get install -y --no-install-recommends some-package qemu-user-static"),
        "{}",
        runs[1]
    );
}

#[test]
fn bad_input_is_refused_before_any_work() {
    let ws = Ws::new();
    ws.skeleton("");
    let bin = ws.docker_shim(0, 0);
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![],
            vec![("PI_GEN_STAGES", "")],
            "PI_GEN_STAGES is empty",
        ),
        (
            vec!["--stages", "stage0 stage9"],
            vec![],
            "unknown pi-gen stage `stage9`",
        ),
        (
            vec![],
            vec![("ARM64", "2")],
            "ARM64 must be 0 or 1 (got: 2)",
        ),
        (
            vec![],
            vec![("ARM64", "0")],
            "Set ALLOW_ARMHF=1 to explicitly opt in to armhf userspace builds.",
        ),
        (
            vec!["--user-data", "missing.yaml"],
            vec![],
            "Cloud-init file not found",
        ),
        (
            vec!["--setting", "USE_QCOW2=1"],
            vec![],
            "USE_QCOW2: removed from pi-gen in 2024",
        ),
        (
            vec!["--hostname", "$(touch pwned)"],
            vec![],
            "is not a valid host name",
        ),
        (
            vec!["--img-name", "x;touch pwned"],
            vec![],
            "is not a safe file name",
        ),
        (
            vec!["--packages", "jq $(id)"],
            vec![],
            "is not a Debian package name",
        ),
        (
            vec!["--setting", "FIRST_USER_NAME=a\nb"],
            vec![],
            "contains a newline",
        ),
    ];
    for (args, env, needle) in cases {
        let mut c = ws.cmd();
        c.args(["--pi-gen-dir", "pi-gen", "--strategy", "container"])
            .args(&args);
        for (k, v) in &env {
            c.env(k, v);
        }
        ws.with_path(&mut c, &bin);
        let (code, _, err) = run(&mut c);
        assert_eq!(code, 2, "{args:?} {env:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?} {env:?}: expected {needle:?} in {err}"
        );
        assert!(
            !ws.docker_log()
                .iter()
                .any(|l| l.starts_with("run ") || l.starts_with("build ")),
            "{args:?}: docker ran"
        );
    }
    fs::write(
        ws.root().join("cloud-init/bad.yaml"),
        "#cloud-config\nhostname: [unclosed\n",
    )
    .unwrap();
    let mut c = ws.cmd();
    c.args([
        "--pi-gen-dir",
        "pi-gen",
        "--strategy",
        "container",
        "--user-data",
        "cloud-init/bad.yaml",
    ]);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 2);
    assert!(err.contains("contains invalid YAML at line"), "{err}");
    assert!(!ws.root().join("pwned").exists());
}

#[test]
fn injection_in_settings_never_executes() {
    let ws = Ws::new();
    let checkout = ws.skeleton("");
    let bin = ws.docker_shim(0, 0);
    let pwned = ws.root().join("pwned");
    let evil = format!("$(touch {0})`touch {0}`;touch {0}", pwned.display());
    let mut c = ws.cmd();
    c.args([
        "--pi-gen-dir",
        "pi-gen",
        "--strategy",
        "container",
        "--setting",
    ])
    .arg(format!("FIRST_USER_NAME={evil}"));
    ws.with_path(&mut c, &bin);
    assert_eq!(run(&mut c).0, 0);
    // Source the config exactly as pi-gen does.
    let out = Command::new("bash")
        .arg("-c")
        .arg("set -e; source ./config; printf '%s' \"$FIRST_USER_NAME\"")
        .current_dir(&checkout)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), evil);
    assert!(!pwned.exists());
}
