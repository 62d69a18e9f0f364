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

/// A copy of the test pi-gen (see tests/fixtures/pi-gen/README.md).
fn test_pi_gen(ws: &Ws) -> PathBuf {
    let dest = ws.root().join("pi-gen");
    let src = crate::support::repo_root().join("tests/fixtures/pi-gen");
    crate::support::sh(
        "cp",
        &["-a", src.to_str().unwrap(), dest.to_str().unwrap()],
        ws.root(),
    );
    dest
}

fn native(ws: &Ws) -> Command {
    let mut c = ws.cmd();
    c.args(["--pi-gen-dir", "pi-gen", "--strategy", "native"])
        .env(
            "TEST_PI_GEN_CACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-pi-gen-cache"),
        );
    c
}

#[test]
fn native_build_puts_overlay_seed_and_chroot_work_inside_the_image() {
    let ws = Ws::new();
    let checkout = test_pi_gen(&ws);
    fs::create_dir_all(ws.root().join("overlay/etc/sugarkube")).unwrap();
    fs::write(
        ws.root().join("overlay/etc/sugarkube/overlay.txt"),
        "from the overlay\n",
    )
    .unwrap();
    let host_marker = ws.root().join("chroot-ran-here");
    fs::write(
        ws.root().join("chroot.sh"),
        format!(
            "set -e\nuname -m > /etc/chroot-arch\nmkdir -p {}\necho inside > {}\n",
            ws.root().display(),
            host_marker.display()
        ),
    )
    .unwrap();
    let (code, stdout, err) = run(native(&ws)
        .args([
            "--overlay",
            "overlay",
            "--packages",
            "jq htop",
            "--chroot-script",
            "chroot.sh",
            "--hostname",
            "sk-test",
        ])
        .env("GITHUB_ACTIONS", "true"));
    assert_eq!(code, 0, "{stdout}{err}");
    // Streaming: one group per stage, in order.
    let groups: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("::group::pi-gen "))
        .collect();
    assert_eq!(
        groups,
        [
            "::group::pi-gen stage0",
            "::group::pi-gen stage1",
            "::group::pi-gen stage2",
            "::group::pi-gen export-image"
        ],
        "{stdout}"
    );
    let rootfs = checkout.join("work/sugarkube/stage2/rootfs");
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/sugarkube/overlay.txt")).unwrap(),
        "from the overlay\n"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("boot/firmware/user-data")).unwrap(),
        USER_DATA
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/chroot-arch"))
            .unwrap()
            .trim(),
        "aarch64",
        "ran in the arm64 chroot"
    );
    assert!(!host_marker.exists(), "the chroot script ran on the host");
    assert!(
        rootfs.join(host_marker.strip_prefix("/").unwrap()).exists(),
        "…and wrote inside the rootfs instead"
    );
    let packages = fs::read_to_string(rootfs.join("var/lib/test-pi-gen/packages")).unwrap();
    assert!(
        packages.contains("jq") && packages.contains("htop"),
        "{packages}"
    );
    let config = fs::read_to_string(checkout.join("config")).unwrap();
    assert!(config.contains("TARGET_HOSTNAME='sk-test'"), "{config}");
    // The export landed in OUTPUT_DIR/deploy with pi-gen's names, and the timeline was written.
    let deploy: Vec<String> = fs::read_dir(ws.root().join("out/deploy"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        deploy
            .iter()
            .any(|n| n.starts_with("image_") && n.ends_with("-sugarkube-lite.zip")),
        "{deploy:?}"
    );
    let timeline: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(ws.root().join("out/sugarkube.stages.json")).unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = timeline["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["stage0", "stage1", "stage2", "export-image"]);
    let out = read_outputs(&ws.root().join("gh-output"));
    assert_eq!(out["strategy"], "native");

    // The rest of the pipeline picks it up from here.
    let (code, _, err) = run(pi_image(ws.root()).args([
        "collect-artifacts",
        "--output-dir",
        "out",
        "--deploy-dir",
        "out/deploy",
        "--pi-gen-dir",
        "pi-gen",
        "--xz-preset",
        "0",
    ]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(pi_image(ws.root())
        .args(["manifest", "--output-dir", "out"])
        .env("BUILD_START", &out["build-start"])
        .env("BUILD_END", &out["build-end"]));
    assert_eq!(code, 0, "{err}");
    let meta: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(ws.root().join("out/sugarkube.img.xz.metadata.json")).unwrap(),
    )
    .unwrap();
    assert!(
        meta["build"]["stage_durations"]["stage2/01-sys-tweaks"].is_u64(),
        "{meta}"
    );
}

#[test]
fn a_failing_build_reports_the_exit_code_log_tail_and_an_outage_record() {
    let ws = Ws::new();
    test_pi_gen(&ws);
    fs::write(ws.root().join("chroot.sh"), "echo about to fail\nexit 3\n").unwrap();
    let (code, stdout, err) =
        run(native(&ws).args(["--chroot-script", "chroot.sh", "--outage-dir", "outages"]));
    assert_eq!(code, 1, "{stdout}{err}");
    assert!(err.contains("failed with exit code 3"), "{err}");
    assert!(
        err.contains("Build failed"),
        "the build.log tail is shown: {err}"
    );
    let records: Vec<PathBuf> = fs::read_dir(ws.root().join("outages"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(records.len(), 1);
    let schema =
        crate::support::repo_root().join("../shared/fixtures/sugarkube/outages-schema.json");
    let check = Command::new(crate::support::check_jsonschema())
        .arg("--schemafile")
        .arg(&schema)
        .arg(&records[0])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
fn timeout_stops_the_whole_process_tree() {
    let ws = Ws::new();
    test_pi_gen(&ws);
    fs::write(ws.root().join("chroot.sh"), "sleep 171\n").unwrap();
    let started = std::time::Instant::now();
    let (code, _, err) = run(native(&ws).args(["--chroot-script", "chroot.sh", "--timeout", "8"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("did not finish within 8s"), "{err}");
    assert!(started.elapsed().as_secs() < 60);
    std::thread::sleep(std::time::Duration::from_millis(500));
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(!cmdline.contains("sleep 171"), "left running: {cmdline}");
    }
}

#[test]
fn continue_resumes_after_the_last_completed_stage() {
    let ws = Ws::new();
    let checkout = test_pi_gen(&ws);
    fs::write(ws.root().join("chroot.sh"), "exit 4\n").unwrap();
    let (code, _, err) = run(native(&ws).args(["--chroot-script", "chroot.sh"]));
    assert_eq!(code, 1, "{err}");
    // Fixed, resumed: stage0 and stage1 completed before and are not built again.
    fs::write(ws.root().join("chroot.sh"), "echo fixed > /etc/fixed\n").unwrap();
    let (code, stdout, err) = run(native(&ws).args(["--chroot-script", "chroot.sh", "--continue"]));
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(
        err.contains("skipping stages completed earlier: stage0 stage1")
            || stdout.contains("skipping stages completed earlier: stage0 stage1"),
        "{err}"
    );
    assert!(checkout.join("stage0/SKIP").exists());
    assert!(
        checkout
            .join("work/sugarkube/stage2/rootfs/etc/fixed")
            .exists()
    );
    // A normal run removes the SKIP files --continue wrote.
    let (code, _, err) = run(native(&ws).args(["--chroot-script", "chroot.sh"]));
    assert_eq!(code, 0, "{err}");
    assert!(!checkout.join("stage0/SKIP").exists());
}

#[test]
fn container_strategy_registers_arm_emulation_when_missing() {
    let ws = Ws::new();
    ws.skeleton("");
    let bin = ws.docker_shim(0, 0);
    let empty = ws.root().join("no-binfmt");
    fs::create_dir_all(&empty).unwrap();
    let mut c = ws.cmd();
    c.args(["--pi-gen-dir", "pi-gen", "--strategy", "container"])
        .env("PI_IMAGE_BINFMT_DIR", &empty);
    ws.with_path(&mut c, &bin);
    assert_eq!(run(&mut c).0, 0);
    let log = ws.docker_log();
    let register = log
        .iter()
        .position(|l| l == "run --privileged --rm tonistiigi/binfmt --install arm64,arm")
        .expect("registered");
    let build = log
        .iter()
        .position(|l| l.starts_with("run --rm --privileged --name"))
        .unwrap();
    assert!(register < build);
    // With the entry present nothing is registered.
    fs::write(empty.join("qemu-aarch64"), "enabled\n").unwrap();
    fs::remove_file(ws.root().join("docker.log")).unwrap();
    let mut c = ws.cmd();
    c.args(["--pi-gen-dir", "pi-gen", "--strategy", "container"])
        .env("PI_IMAGE_BINFMT_DIR", &empty);
    ws.with_path(&mut c, &bin);
    assert_eq!(run(&mut c).0, 0);
    assert!(
        !ws.docker_log()
            .iter()
            .any(|l| l.contains("tonistiigi/binfmt"))
    );
}

#[test]
fn pipeline_runs_the_steps_in_order_and_resumes() {
    let ws = Ws::new();
    test_pi_gen(&ws);
    let mirror = crate::support::mirror::Mirror::start(crate::support::mirror::Behaviour::Healthy);
    let mut c = pi_image(ws.root());
    c.args(["pipeline", "--output-dir", "out", "--skip", "smoke"])
        .env("APT_REWRITE_MIRRORS", mirror.url("raspbian"))
        .env("APT_MIRROR_RASPBERRYPI", mirror.url("rpi"))
        .env("PI_GEN_DIR", "pi-gen")
        .env("PI_GEN_STRATEGY", "native")
        .env("REQUIRED_SPACE_GB", "0")
        .env("SKIP_CLOUD_INIT_VALIDATION", "1")
        .env("XZ_PRESET", "0")
        .env("GITHUB_REPOSITORY", "o/r")
        .env(
            "TEST_PI_GEN_CACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-pi-gen-cache"),
        );
    let (code, stdout, err) = run(&mut c);
    assert_eq!(code, 0, "{stdout}{err}");
    for f in [
        "sugarkube.img.xz",
        "sugarkube.img.xz.sha256",
        "sugarkube.img.xz.manifest.json",
        "RELEASE_NOTES.md",
    ] {
        assert!(ws.root().join("out").join(f).exists(), "{f}");
    }
    assert!(err.contains("sign: skipped (no signing identity"), "{err}");
    assert!(
        ws.root()
            .join("pi-gen/stage0/00-00-pi-image-mirrors/00-run.sh")
            .is_file(),
        "prepare-mirrors ran on the checkout run-pi-gen built"
    );
    assert!(
        err.contains("dry run: nothing was written"),
        "release ran as a dry run: {err}"
    );
    let state: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(ws.root().join("out/sugarkube.pipeline.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        state["completed"],
        serde_json::json!([
            "prepare-mirrors",
            "run-pi-gen",
            "collect-artifacts",
            "manifest",
            "release"
        ])
    );
    // A second run resumes: nothing is built again.
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("run-pi-gen: completed in an earlier run"),
        "{err}"
    );
    assert!(!err.contains("Begin "), "pi-gen ran again: {err}");
}
