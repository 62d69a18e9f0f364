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
        skeleton_in(self.root(), depends)
    }

    /// `docker` on PATH (no Docker daemon exists here): records argv; `docker info` and
    /// `docker run` exit as told. A successful `run` of the pi-gen container prints
    /// pi-gen's log lines for a build of the stages and writes an image into the
    /// directory mounted on /pi-gen/deploy, as the real container does.
    fn docker_shim(&self, info_exit: i32, run_exit: i32) -> PathBuf {
        let bin = self.root().join("shim-bin");
        fs::create_dir_all(&bin).unwrap();
        let log = self.root().join("docker.log");
        let script = format!(
            r#"#!/bin/bash
printf '%s\n' "$*" >> '{}'
case "$1" in
  info) exit {info_exit};;
  run)
    [ {run_exit} = 0 ] || exit {run_exit}
    deploy=""; prev=""
    for a in "$@"; do
      if [ "$prev" = --volume ] && [ "${{a%%:/pi-gen/deploy}}" != "$a" ]; then deploy=${{a%%:/pi-gen/deploy}}; fi
      prev=$a
    done
    if [ -n "$deploy" ]; then
      printf 'env IMG_NAME=%s APT_MIRROR=%s\n' "${{IMG_NAME-}}" "${{APT_MIRROR-}}" >> '{}'
      echo "[10:00:00] Begin /pi-gen"
      for s in stage0 stage1 stage2 export-image; do echo "[10:00:00] Begin /pi-gen/$s"; echo "[10:00:01] End /pi-gen/$s"; done
      echo "[10:00:01] End /pi-gen"
      echo "[10:00:01] Build finished"
      touch "$deploy/image_2026-01-01-sugarkube-lite.zip"
    fi
    exit 0;;
esac
exit 0
"#,
            log.display(),
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

    /// [`Ws::cmd`] for checks that are not about the kernel (the argv and config tests):
    /// the kernel preflight is judged on a configuration that has what the export needs.
    fn cmd_any_kernel(&self) -> Command {
        let config = self.root().join("kernel-config-ok");
        fs::write(
            &config,
            "CONFIG_BLK_DEV_LOOP=y\nCONFIG_MSDOS_PARTITION=y\nCONFIG_VFAT_FS=y\n",
        )
        .unwrap();
        let mut c = self.cmd();
        c.env("PI_IMAGE_KERNEL_CONFIG", config);
        c
    }

    #[allow(
        clippy::unused_self,
        reason = "a method, so a test reads ws.with_path(..) like the others"
    )]
    fn with_path(&self, cmd: &mut Command, bin: &Path) {
        cmd.env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        );
    }
}

/// A pi-gen-shaped git checkout at `root/pi-gen`: enough for planning, dry runs and
/// container argv tests.
pub(crate) fn skeleton_in(root: &Path, depends: &str) -> PathBuf {
    let dir = root.join("pi-gen");
    for s in [
        "stage0",
        "stage1",
        "stage2/04-cloud-init/files",
        "export-image",
    ] {
        fs::create_dir_all(dir.join(s)).unwrap();
    }
    fs::write(dir.join("stage2/EXPORT_IMAGE"), "IMG_SUFFIX=\"-lite\"\n").unwrap();
    fs::write(dir.join("build.sh"), "#!/bin/bash\n# reads IMG_NAME RELEASE DEPLOY_DIR ENABLE_SSH TARGET_HOSTNAME ENABLE_CLOUD_INIT FIRST_USER_NAME STAGE_LIST PI_GEN_RELEASE\nexit 0\n").unwrap();
    fs::set_permissions(dir.join("build.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("depends"), depends).unwrap();
    fs::write(
        dir.join("Dockerfile"),
        "FROM debian:bookworm\nCOPY . /pi-gen/\n",
    )
    .unwrap();
    // A git checkout on pi-gen's branch, as a clone leaves it.
    for args in [
        vec!["init", "-q", "-b", "bookworm-arm64"],
        vec!["add", "-A"],
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "-m",
            "pi-gen",
        ],
    ] {
        crate::support::sh("git", &args, &dir);
    }
    dir
}

#[test]
#[ignore = "tier pi-gen: needs pi-gen's build tools and arm64 emulation (tests/fixtures/pi-gen/setup-host.sh)"]
fn container_strategy_command_lines() {
    let ws = Ws::new();
    let checkout = ws.skeleton("");
    let bin = ws.docker_shim(0, 0);
    let mut c = ws.cmd_any_kernel();
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
             --volume pi-gen-apt-cache:/var/cache/apt \
             --env IMG_NAME --env APT_MIRROR pi-gen:bookworm-arm64 bash -e -o pipefail -c"
        )),
        "{}",
        log[2]
    );
    // pi-gen runs by its shebang in the container too, as build-docker.sh runs it.
    assert!(log[2].ends_with("cd /pi-gen && ./build.sh"), "{}", log[2]);
    // The values reach the container through docker's environment, not its command line.
    assert_eq!(
        log[3],
        "env IMG_NAME=sugarkube APT_MIRROR=http://mirror.example/raspbian"
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
    let mut c = ws.cmd_any_kernel();
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
#[ignore = "tier pi-gen: needs pi-gen's build tools and arm64 emulation (tests/fixtures/pi-gen/setup-host.sh)"]
fn auto_falls_back_in_order_saying_why() {
    let ws = Ws::new();
    ws.skeleton("definitely-missing-tool:some-package\n");
    // Every `docker run` fails: the container strategy fails, then debian-container too.
    let bin = ws.docker_shim(0, 7);
    let mut c = ws.cmd_any_kernel();
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
        // pi-gen pastes RELEASE into `sed -i "s/RELEASE/${RELEASE}/g"` on the host.
        (
            vec!["--pi-gen-branch", "bookworm/;e touch pwned;#"],
            vec![],
            "is not a Debian release name",
        ),
        (
            vec!["--setting", "APT_PROXY=http://proxy:3128|;e touch pwned;#"],
            vec![],
            "APT_PROXY",
        ),
        (
            vec!["--setting", "ARCHIVE_FILENAME=../../elsewhere"],
            vec![],
            "is not part of a safe file name",
        ),
        (
            vec!["--setting", "CLEAN=0"],
            vec![],
            "run-pi-gen owns CLEAN",
        ),
        (
            vec!["--setting", "FIRST_USER_PASS:hunter2"],
            vec![],
            "is not KEY=VALUE",
        ),
        (
            vec!["--pass-env", "GH_TOKEN"],
            vec![],
            "credentials and the runner's variables are never passed",
        ),
        (
            vec!["--pass-env", "DB_PASSWORD=hunter2"],
            vec![],
            "is not an environment variable name",
        ),
        (
            vec!["--pass-env", "LD_PRELOAD"],
            vec![],
            "changes how every program or shell of the build starts",
        ),
        (
            vec!["--pass-env", "WORK_DIR"],
            vec![],
            "run-pi-gen owns WORK_DIR",
        ),
        (
            vec!["--pi-gen-dir", "pi gen"],
            vec![],
            "has a space in its path",
        ),
    ];
    for (args, env, needle) in cases {
        let mut c = ws.cmd_any_kernel();
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
        assert!(!err.contains("hunter2"), "a secret was printed: {err}");
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
    let mut c = ws.cmd_any_kernel();
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
    let with_setting = |setting: String| {
        let mut c = ws.cmd_any_kernel();
        c.args([
            "--pi-gen-dir",
            "pi-gen",
            "--strategy",
            "container",
            "--setting",
        ])
        .arg(setting);
        ws.with_path(&mut c, &bin);
        run(&mut c)
    };
    assert_eq!(with_setting(format!("PI_GEN_RELEASE={evil}")).0, 0);
    // Source the config exactly as pi-gen does.
    let out = Command::new("bash")
        .arg("-c")
        .arg("set -e; source ./config; printf '%s' \"$PI_GEN_RELEASE\"")
        .current_dir(&checkout)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), evil);
    assert!(!pwned.exists());
    // A user name is checked against pi-gen's own rule before any work.
    let (code, _, err) = with_setting(format!("FIRST_USER_NAME={evil}"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("FIRST_USER_NAME") && err.contains("^[a-z][-a-z0-9_]*$"),
        "{err}"
    );
    assert!(!pwned.exists());
}

/// `run-pi-gen --dry-run` on the checkout in `ws/pi-gen`, natively, the kernel judged on a
/// configuration that has what the export needs: everything is checked and written,
/// pi-gen does not run.
fn dry_run(ws: &Ws) -> Command {
    let mut c = ws.cmd_any_kernel();
    c.args([
        "--pi-gen-dir",
        "pi-gen",
        "--strategy",
        "native",
        "--dry-run",
    ]);
    c
}

/// No process whose command line holds `needle` is left (after a moment to be reaped).
fn assert_none_left_running(needle: &str) {
    std::thread::sleep(std::time::Duration::from_millis(500));
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(!cmdline.contains(needle), "left running: {cmdline}");
    }
}

/// `collect-artifacts` on the test pi-gen's export (quickly: xz preset 0).
fn collect(ws: &Ws) {
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

/// Whether this kernel has what pi-gen's export needs (loop partition scanning, vfat).
pub fn kernel_can_export() -> bool {
    !pi_image::host::vfat().is_no() && !pi_image::host::loop_partitions().is_no()
}

/// The environment that makes `run-pi-gen` (run by another step) build the test pi-gen
/// here: what it passes on to pi-gen, and how the test pi-gen exports on this kernel.
pub fn test_pi_gen_env(c: &mut Command) {
    c.env(
        "PI_GEN_PASS_ENV",
        "TEST_PI_GEN_CACHE TEST_PI_GEN_EXPORT TEST_PI_GEN_BOOT_FILES",
    );
    if kernel_can_export() {
        c.env("TEST_PI_GEN_EXPORT", "loop");
    } else {
        c.env("TEST_PI_GEN_EXPORT", "mtools")
            .env("SKIP_KERNEL_CHECK", "1");
    }
}

/// `run-pi-gen` on the test pi-gen, natively. Where the kernel has loop partition
/// scanning and vfat, the test pi-gen exports as pi-gen does (losetup, mkdosfs, mount);
/// elsewhere (our CI machines) it makes the file systems with mtools, and the kernel
/// preflight is told so with --skip-kernel-check.
fn native(ws: &Ws) -> Command {
    let mut c = ws.cmd();
    c.args([
        "--pi-gen-dir",
        "pi-gen",
        "--strategy",
        "native",
        "--pass-env",
        "TEST_PI_GEN_CACHE TEST_PI_GEN_EXPORT TEST_PI_GEN_BOOT_FILES",
    ])
    .env(
        "TEST_PI_GEN_CACHE",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-pi-gen-cache"),
    );
    if kernel_can_export() {
        c.env("TEST_PI_GEN_EXPORT", "loop");
    } else {
        c.env("TEST_PI_GEN_EXPORT", "mtools")
            .arg("--skip-kernel-check");
    }
    c
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
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
    // bookworm has no stage2/04-cloud-init: the generated sub-stage puts the seed on the
    // boot partition and tells cloud-init to read it there.
    assert_eq!(
        fs::read_to_string(rootfs.join("boot/firmware/user-data")).unwrap(),
        USER_DATA
    );
    assert!(
        fs::read_to_string(rootfs.join("boot/firmware/meta-data"))
            .unwrap()
            .contains("instance-id: pi-image")
    );
    let nocloud =
        fs::read_to_string(rootfs.join("etc/cloud/cloud.cfg.d/99_pi-image-nocloud.cfg")).unwrap();
    assert!(
        nocloud.contains("datasource_list: [ NoCloud, None ]")
            && nocloud.contains("seedfrom: file:///boot/firmware/"),
        "{nocloud}"
    );
    assert!(
        fs::read_to_string(
            rootfs.join("etc/systemd/system/cloud-init-local.service.d/pi-image-seed.conf")
        )
        .unwrap()
        .contains("RequiresMountsFor=/boot/firmware")
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
    let installs = fs::read_to_string(rootfs.join("var/lib/test-pi-gen/installs")).unwrap();
    for p in [
        "jq recommends=yes",
        "htop recommends=yes",
        "cloud-init recommends=yes",
    ] {
        assert!(installs.lines().any(|l| l == p), "{p} not in {installs}");
    }
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

    // pi-gen's export made its own bmap (bmaptool is installed here), as the real one does.
    let pi_gen_bmap = deploy
        .iter()
        .find(|n| n.ends_with("-sugarkube-lite.bmap") && !n.starts_with("image_"))
        .unwrap_or_else(|| panic!("no bmap from pi-gen's export: {deploy:?}"))
        .clone();

    // The rest of the pipeline picks it up from here.
    collect(&ws);
    let meta: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(ws.root().join("out/sugarkube.img.xz.metadata.json")).unwrap(),
    )
    .unwrap();
    // pi-gen's bmaptool maps what the image file holds, and blocks ext4 allocated but
    // never wrote are holes there: like the real pi-gen's, this bmap leaves out used
    // blocks, so it is not used, and the metadata says why.
    assert_eq!(meta["bmap"]["pi_gen"]["path"], pi_gen_bmap.as_str());
    assert_eq!(meta["bmap"]["pi_gen"]["used"], false, "{}", meta["bmap"]);
    assert!(
        meta["bmap"]["pi_gen"]["reason"]
            .as_str()
            .unwrap()
            .contains("blocks the file systems use"),
        "{}",
        meta["bmap"]
    );
    assert_eq!(meta["bmap"]["method"], "allocation");
    // The export's root file system has a real dpkg database: the SBOM lists its package.
    assert_eq!(
        meta["inventory"]["status"], "written",
        "{}",
        meta["inventory"]
    );
    let sbom = fs::read_to_string(ws.root().join("out/sugarkube.spdx.json")).unwrap();
    assert!(sbom.contains("pkg:deb/debian/busybox-static@"), "{sbom}");
    let card = ws.root().join("card.img");
    crate::support::bmaptool_copy(
        &ws.root().join("out/sugarkube.img.bmap"),
        &ws.root().join("out/sugarkube.img.xz"),
        &card,
    );
    fs::remove_file(&card).unwrap();

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
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
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
    let schema = crate::support::repo_root()
        .join("tests/fixtures/third-party/sugarkube/outages-schema.json");
    crate::support::assert_schema_valid(&schema, &records[0], None);
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
fn timeout_stops_the_whole_process_tree() {
    let ws = Ws::new();
    test_pi_gen(&ws);
    fs::write(ws.root().join("chroot.sh"), "sleep 171\n").unwrap();
    let started = std::time::Instant::now();
    let (code, _, err) = run(native(&ws).args(["--chroot-script", "chroot.sh", "--timeout", "8"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("did not finish within 8s"), "{err}");
    assert!(started.elapsed().as_secs() < 60);
    assert_none_left_running("sleep 171");
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
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
    let mut c = ws.cmd_any_kernel();
    c.args(["--pi-gen-dir", "pi-gen", "--strategy", "container"])
        .env("PI_IMAGE_BINFMT_DIR", &empty);
    ws.with_path(&mut c, &bin);
    assert_eq!(run(&mut c).0, 0);
    let log = ws.docker_log();
    let register = log
        .iter()
        .position(|l| {
            l == &format!(
                "run --privileged --rm {} --install arm64,arm",
                pi_image::commands::run_pi_gen::strategy::BINFMT_IMAGE
            )
        })
        .expect("registered");
    let build = log
        .iter()
        .position(|l| l.starts_with("run --rm --privileged --name"))
        .unwrap();
    assert!(register < build);
    // With the entry present nothing is registered.
    fs::write(empty.join("qemu-aarch64"), "enabled\n").unwrap();
    fs::remove_file(ws.root().join("docker.log")).unwrap();
    let mut c = ws.cmd_any_kernel();
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
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
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
    test_pi_gen_env(&mut c);
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

// ---- issue 12: what the real pi-gen showed --------------------------------------------

fn write_exec(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn log_of(stdout: &str, stderr: &str) -> String {
    format!("{stdout}{stderr}")
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
fn a_failing_step_stops_the_build_as_pi_gens_shebang_says() {
    let ws = Ws::new();
    let checkout = test_pi_gen(&ws);
    write_exec(
        &checkout.join("stage1/00-fail/00-run.sh"),
        "#!/bin/bash -e\nfalse\necho not reached\n",
    );
    write_exec(
        &checkout.join("stage1/01-after/00-run.sh"),
        "#!/bin/bash -e\ntouch \"${ROOTFS_DIR}/after-the-failure\"\n",
    );
    let (code, out, err) = run(native(&ws).arg("--no-user-data"));
    let log = log_of(&out, &err);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("failed with exit code 1"), "{log}");
    assert!(log.contains("Build failed"), "{log}");
    let rootfs = checkout.join("work/sugarkube/stage1/rootfs");
    assert!(
        !rootfs.join("after-the-failure").exists(),
        "the next sub-stage ran"
    );
    assert!(
        !log.contains(&format!("Begin {}/stage2", checkout.display())),
        "the build went on to stage2: {log}"
    );
    // The control: run the way pi-image used to (`bash ./build.sh`), the test pi-gen, like
    // the real one, ignores the failure and goes on.
    let out = Command::new("bash")
        .arg("./build.sh")
        .current_dir(&checkout)
        .env(
            "TEST_PI_GEN_CACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-pi-gen-cache"),
        )
        .env("TEST_PI_GEN_EXPORT", "mtools")
        .output()
        .unwrap();
    assert!(
        rootfs.join("after-the-failure").exists(),
        "under `bash ./build.sh` the next sub-stage runs: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
fn exit_zero_without_an_image_is_a_failed_build() {
    let ws = Ws::new();
    let checkout = ws.skeleton("");
    // Exits 0 having done nothing, like pi-gen under `bash ./build.sh` after its export failed.
    write_exec(
        &checkout.join("build.sh"),
        "#!/bin/bash\n# reads IMG_NAME RELEASE DEPLOY_DIR ENABLE_SSH TARGET_HOSTNAME STAGE_LIST\necho \"[10:00:00] Begin $PWD\"\necho \"[10:00:01] Build finished\"\nexit 0\n",
    );
    let (code, out, err) = run(ws.cmd_any_kernel().args([
        "--pi-gen-dir",
        "pi-gen",
        "--strategy",
        "native",
        "--no-user-data",
    ]));
    let log = log_of(&out, &err);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("pi-gen exited with status 0, but the build is not complete"),
        "{log}"
    );
    assert!(log.contains("stage0 did not run to its end"), "{log}");
    assert!(log.contains("export-image did not run to its end"), "{log}");
    assert!(log.contains("no image for sugarkube was written"), "{log}");
}

#[test]
fn build_sh_must_run_by_its_shebang() {
    let ws = Ws::new();
    let checkout = ws.skeleton("");
    fs::set_permissions(checkout.join("build.sh"), fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = run(dry_run(&ws));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("build.sh` is not executable"), "{err}");
    assert!(err.contains("chmod +x build.sh"), "{err}");
    assert!(!checkout.join("config").exists(), "nothing was written");
}

#[test]
#[ignore = "tier pi-gen: needs pi-gen's build tools and arm64 emulation (tests/fixtures/pi-gen/setup-host.sh)"]
fn the_kernel_preflight_names_what_the_export_needs() {
    let ws = Ws::new();
    let checkout = ws.skeleton("");
    let lacking = ws.root().join("kernel-config-lacking");
    fs::write(
        &lacking,
        "CONFIG_BLK_DEV_LOOP=y\n# CONFIG_MSDOS_PARTITION is not set\n# CONFIG_VFAT_FS is not set\n",
    )
    .unwrap();
    let mut c = ws.cmd();
    c.args([
        "--pi-gen-dir",
        "pi-gen",
        "--strategy",
        "native",
        "--dry-run",
    ])
    .env("PI_IMAGE_KERNEL_CONFIG", &lacking);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 2, "{err}");
    for needle in [
        "kernel lacks what pi-gen's export needs",
        "MBR partition",
        "CONFIG_MSDOS_PARTITION",
        "vfat",
        "CONFIG_VFAT_FS",
        "--skip-kernel-check",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert!(!checkout.join("config").exists(), "refused before any work");
    // The explicit override, for hosts that provide them another way.
    let (code, _, err) = run(c.arg("--skip-kernel-check"));
    assert_eq!(code, 0, "{err}");
    assert!(checkout.join("config").exists());
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
fn on_a_kernel_without_them_the_export_fails_as_pi_gens_does() {
    if kernel_can_export() {
        // This kernel has loop partition scanning and vfat: the loop export is what the
        // other native builds here use, and it succeeds.
        return;
    }
    let ws = Ws::new();
    test_pi_gen(&ws);
    let (code, out, err) = run(ws
        .cmd()
        .args([
            "--pi-gen-dir",
            "pi-gen",
            "--strategy",
            "native",
            "--no-user-data",
            "--skip-kernel-check",
            "--pass-env",
            "TEST_PI_GEN_CACHE",
        ])
        .env(
            "TEST_PI_GEN_CACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-pi-gen-cache"),
        ));
    let log = log_of(&out, &err);
    assert_eq!(code, 1, "the export cannot work on this kernel: {log}");
    assert!(
        log.contains("mkdosfs") || log.contains("unknown filesystem type"),
        "{log}"
    );
    assert!(log.contains("Build failed"), "{log}");
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
fn continue_rebuilds_what_changed_since_and_everything_after() {
    let ws = Ws::new();
    let checkout = test_pi_gen(&ws);
    let (code, _, err) = run(native(&ws).arg("--no-user-data"));
    assert_eq!(code, 0, "{err}");
    // Nothing changed: every stage is skipped, only the export runs.
    let (code, out, err) = run(native(&ws).args(["--no-user-data", "--continue"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        log_of(&out, &err).contains("skipping stages completed earlier: stage0 stage1 stage2"),
        "{err}"
    );
    // A changed stage1 is built again, and stage2 after it.
    write_exec(
        &checkout.join("stage1/05-new/00-run.sh"),
        "#!/bin/bash -e\ntouch \"${ROOTFS_DIR}/etc/new-step\"\n",
    );
    let (code, out, err) = run(native(&ws).args(["--no-user-data", "--continue"]));
    let log = log_of(&out, &err);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("skipping stages completed earlier: stage0\n")
            || log.contains("skipping stages completed earlier: stage0 "),
        "{log}"
    );
    assert!(log.contains("stage1 changed since it was built"), "{log}");
    assert!(
        checkout
            .join("work/sugarkube/stage2/rootfs/etc/new-step")
            .exists(),
        "stage2 was rebuilt from the new stage1"
    );
    // A different setting is a different build.
    let (code, out, err) =
        run(native(&ws).args(["--no-user-data", "--continue", "--hostname", "other"]));
    let log = log_of(&out, &err);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("stage0 changed since it was built"), "{log}");
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
fn the_overlay_keeps_the_images_directories_and_never_reaches_the_host() {
    use std::os::unix::fs::MetadataExt as _;
    let ws = Ws::new();
    let checkout = test_pi_gen(&ws);
    let ov = ws.root().join("overlay");
    fs::create_dir_all(ov.join("etc/pi-image")).unwrap();
    fs::write(ov.join("etc/pi-image/app.conf"), "x=1\n").unwrap();
    fs::create_dir_all(ov.join("home/pi/.ssh")).unwrap();
    fs::write(
        ov.join("home/pi/.ssh/authorized_keys"),
        "ssh-ed25519 AAAA test\n",
    )
    .unwrap();
    fs::set_permissions(
        ov.join("home/pi/.ssh/authorized_keys"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::set_permissions(ov.join("home/pi/.ssh"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("/", ov.join("etc/pi-image/root-link")).unwrap();
    // As on a GitHub runner: checked out by uid 1001, and here with a private etc/.
    crate::support::sh(
        "chown",
        &["-R", "1001:1001", ov.to_str().unwrap()],
        ws.root(),
    );
    fs::set_permissions(ov.join("etc"), fs::Permissions::from_mode(0o700)).unwrap();
    let (code, out, err) = run(native(&ws).args([
        "--no-user-data",
        "--overlay",
        "overlay",
        "--overlay-owner",
        "home/pi/.ssh=1000:1000",
    ]));
    assert_eq!(code, 0, "{}", log_of(&out, &err));
    let rootfs = checkout.join("work/sugarkube/stage2/rootfs");
    let meta = |p: &str| fs::symlink_metadata(rootfs.join(p)).unwrap();
    let etc = meta("etc");
    assert_eq!(
        (etc.uid(), etc.gid(), etc.mode() & 0o7777),
        (0, 0, 0o755),
        "the image's /etc kept its owner and mode"
    );
    let new_dir = meta("etc/pi-image");
    assert_eq!(
        (new_dir.uid(), new_dir.mode() & 0o7777),
        (0, 0o755),
        "new directories: root, the overlay's mode"
    );
    let conf = meta("etc/pi-image/app.conf");
    assert_eq!(
        (conf.uid(), conf.gid(), conf.mode() & 0o7777),
        (0, 0, 0o644)
    );
    let keys = meta("home/pi/.ssh/authorized_keys");
    assert_eq!(
        (keys.uid(), keys.gid(), keys.mode() & 0o7777),
        (1000, 1000, 0o600),
        "--overlay-owner"
    );
    let ssh = meta("home/pi/.ssh");
    assert_eq!((ssh.uid(), ssh.mode() & 0o7777), (1000, 0o700));
    let home = meta("home");
    assert_eq!(
        home.uid(),
        0,
        "directories the image had are not the owner rule's"
    );
    assert_eq!(
        fs::read_link(rootfs.join("etc/pi-image/root-link")).unwrap(),
        Path::new("/"),
        "a symlink stays a symlink"
    );
    assert!(
        !rootfs.join(".pi-image-overlay").exists(),
        "the staging copy is removed"
    );

    // An absolute symlink in the image is followed inside the image, never on the host:
    // here it names a host directory that does not exist in the image, so the build stops.
    let host_dir = ws.root().join("host-side");
    fs::create_dir_all(&host_dir).unwrap();
    write_exec(
        &checkout.join("stage2/00-hostlink/00-run.sh"),
        &format!(
            "#!/bin/bash -e\nmkdir -p \"${{ROOTFS_DIR}}/opt\"\nln -sfn {} \"${{ROOTFS_DIR}}/opt/hostlink\"\n",
            host_dir.display()
        ),
    );
    fs::create_dir_all(ws.root().join("overlay2/opt/hostlink")).unwrap();
    fs::write(ws.root().join("overlay2/opt/hostlink/pwned"), "x\n").unwrap();
    let (code, out, err) = run(native(&ws).args(["--no-user-data", "--overlay", "overlay2"]));
    let log = log_of(&out, &err);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("/opt/hostlink exists in the image and is not a directory"),
        "{log}"
    );
    assert!(
        !host_dir.join("pwned").exists(),
        "the overlay wrote on the build host"
    );
}

#[test]
fn overlays_are_checked_before_any_work() {
    let ws = Ws::new();
    let checkout = ws.skeleton("");
    type MakeOverlay = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, MakeOverlay, &str)> = vec![
        (
            "proc",
            Box::new(|o: &Path| {
                fs::create_dir_all(o.join("proc")).unwrap();
                fs::write(o.join("proc/x"), "").unwrap();
            }),
            "mounted from the build host",
        ),
        (
            "fifo",
            Box::new(|o: &Path| {
                crate::support::sh("mkfifo", &[o.join("etc-fifo").to_str().unwrap()], o);
            }),
            "is a FIFO, socket or device",
        ),
        (
            "newline",
            Box::new(|o: &Path| {
                fs::write(o.join("a\nb"), "").unwrap();
            }),
            "control character",
        ),
    ];
    for (name, make, needle) in cases {
        let ov = ws.root().join(format!("ov-{name}"));
        fs::create_dir_all(&ov).unwrap();
        make(&ov);
        let (code, _, err) = run(dry_run(&ws).args(["--overlay"]).arg(&ov));
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains(needle), "{name}: {err}");
    }
    std::os::unix::fs::symlink(ws.root().join("ov-proc"), ws.root().join("ov-link")).unwrap();
    let (code, _, err) = run(dry_run(&ws).args(["--overlay", "ov-link"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is a symlink"), "{err}");
    assert!(!checkout.join("config").exists());
}

#[test]
fn user_files_are_read_where_they_were_named_and_never_hang() {
    let ws = Ws::new();
    ws.skeleton("");
    // A directory of the workspace that is a symlink to the host's /etc.
    std::os::unix::fs::symlink("/etc", ws.root().join("scripts")).unwrap();
    crate::support::sh("mkfifo", &["cloud-init/fifo.yaml"], ws.root());
    let cases: [(&[&str], &str); 4] = [
        (
            &["--no-user-data", "--chroot-script", "scripts/hostname"],
            "leads through a symlink out of",
        ),
        (
            &["--user-data", "scripts/hostname"],
            "leads through a symlink out of",
        ),
        (
            &["--user-data", "cloud-init/fifo.yaml"],
            "is not a regular file",
        ),
        (&["--user-data", "cloud-init"], "is not a regular file"),
    ];
    for (args, needle) in cases {
        let started = std::time::Instant::now();
        let (code, _, err) = run(dry_run(&ws).args(args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            started.elapsed().as_secs() < 10,
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
fn every_run_leaves_exactly_the_generated_files_it_asked_for() {
    let ws = Ws::new();
    let checkout = test_pi_gen(&ws);
    fs::create_dir_all(ws.root().join("overlay/etc")).unwrap();
    fs::write(ws.root().join("overlay/etc/x"), "x\n").unwrap();
    fs::write(ws.root().join("chroot.sh"), "true\n").unwrap();
    let (code, out, err) = run(native(&ws).args([
        "--overlay",
        "overlay",
        "--packages",
        "jq",
        "--chroot-script",
        "chroot.sh",
        "--stages",
        "stage0 stage1",
    ]));
    assert_eq!(code, 0, "{}", log_of(&out, &err));
    for p in [
        "stage1/EXPORT_IMAGE",
        "stage1/90-pi-image/01-run.sh",
        "stage1/91-pi-image-cloud-init/01-run.sh",
    ] {
        assert!(checkout.join(p).exists(), "{p}");
    }
    // The next run asks for none of that.
    let (code, out, err) = run(native(&ws).arg("--no-user-data"));
    assert_eq!(code, 0, "{}", log_of(&out, &err));
    let pristine = crate::support::repo_root().join("tests/fixtures/pi-gen");
    let diff = Command::new("diff")
        .args([
            "-r",
            "-x",
            "work",
            "-x",
            "deploy",
            "-x",
            "cache",
            "-x",
            "config",
            "-x",
            ".pi-image",
        ])
        .arg(&pristine)
        .arg(&checkout)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "the checkout differs from pi-gen's own files:\n{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    let config = fs::read_to_string(checkout.join("config")).unwrap();
    assert!(config.contains("/stage2'"), "{config}");
    // And the stale image of the first run is not mistaken for this one.
    let rootfs2 = checkout.join("work/sugarkube/stage2/rootfs");
    assert!(
        !rootfs2.join("etc/x").exists(),
        "the old overlay is not built in"
    );
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
fn settings_pi_gen_pastes_into_chroot_scripts_cannot_run_as_code() {
    let ws = Ws::new();
    let checkout = test_pi_gen(&ws);
    let pwned = ws.root().join("pwned");
    let evil = format!("x\"; touch {}; echo \"", pwned.display());
    let (code, out, err) = run(native(&ws)
        .args(["--no-user-data", "--setting"])
        .arg(format!("FIRST_USER_PASS={evil}")));
    let log = log_of(&out, &err);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("FIRST_USER_PASS would run as code"), "{log}");
    assert!(log.contains("stage1/01-sys-tweaks/00-run.sh line"), "{log}");
    assert!(!log.contains(&evil), "the password was printed: {log}");
    assert!(!pwned.exists());
    assert!(!checkout.join("work").exists(), "refused before any work");
    // pi-gen takes an unset setting from its environment: what --pass-env hands it is
    // checked the same way, and a password is not handed over at all.
    let env_evil = format!("pi;touch {}", pwned.display());
    let (code, out, err) = run(native(&ws)
        .args([
            "--no-user-data",
            "--pass-env",
            "FIRST_USER_NAME TEST_PI_GEN_CACHE TEST_PI_GEN_EXPORT",
        ])
        .env("FIRST_USER_NAME", &env_evil));
    let log = log_of(&out, &err);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("FIRST_USER_NAME (`pi;touch"), "{log}");
    assert!(log.contains("would run as code"), "{log}");
    let (code, out, err) = run(native(&ws)
        .args(["--no-user-data", "--pass-env", "FIRST_USER_PASS"])
        .env("FIRST_USER_PASS", &evil));
    assert_eq!(code, 2, "{}", log_of(&out, &err));
    assert!(!pwned.exists());
    // A password with the characters people use gets through, intact.
    let (code, out, err) = run(native(&ws)
        .args([
            "--no-user-data",
            "--setting",
            "FIRST_USER_PASS=p@ss w:rd!&%^'",
        ])
        .env("GITHUB_ACTIONS", "true"));
    let log = log_of(&out, &err);
    assert_eq!(code, 0, "{log}");
    // Workflow-command data is %-escaped; the runner masks the value itself.
    assert!(
        log.contains("::add-mask::p@ss w:rd!&%25^'"),
        "masked in Actions: {log}"
    );
    assert!(
        !log.lines()
            .any(|l| !l.starts_with("::add-mask::") && l.contains("p@ss w:rd")),
        "{log}"
    );
    let shadow =
        fs::read_to_string(checkout.join("work/sugarkube/stage2/rootfs/etc/shadow")).unwrap();
    let hash = shadow
        .lines()
        .find_map(|l| l.strip_prefix("pi:"))
        .unwrap()
        .split(':')
        .next()
        .unwrap();
    assert!(hash.starts_with('$'), "pi has a password hash: {shadow}");
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
fn a_stalled_build_is_stopped_and_named_but_a_busy_one_is_not() {
    let ws = Ws::new();
    test_pi_gen(&ws);
    fs::write(ws.root().join("chroot.sh"), "sleep 173\n").unwrap();
    let started = std::time::Instant::now();
    let (code, out, err) = run(native(&ws).args([
        "--no-user-data",
        "--chroot-script",
        "chroot.sh",
        "--stall-timeout",
        "6",
    ]));
    let log = log_of(&out, &err);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("pi-gen stalled: nothing was printed and no CPU was used for 6s while running stage2/90-pi-image/02-run-chroot.sh"), "{log}");
    assert!(started.elapsed().as_secs() < 90);
    assert_none_left_running("sleep 173");
    // Silent but working (like xz or zerofree): not a stall.
    fs::write(
        ws.root().join("chroot.sh"),
        "end=$(( $(date +%s) + 12 ))\nwhile [ \"$(date +%s)\" -lt \"$end\" ]; do :; done\n",
    )
    .unwrap();
    let (code, out, err) = run(native(&ws).args([
        "--no-user-data",
        "--chroot-script",
        "chroot.sh",
        "--stall-timeout",
        "4",
    ]));
    assert_eq!(code, 0, "{}", log_of(&out, &err));
}

#[test]
#[ignore = "tier pi-gen: needs pi-gen's build tools and arm64 emulation (tests/fixtures/pi-gen/setup-host.sh)"]
fn an_existing_checkout_is_reported_as_what_it_is() {
    let ws = Ws::new();
    let checkout = test_pi_gen(&ws);
    for args in [
        vec!["init", "-q", "-b", "feature-x"],
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
    ] {
        crate::support::sh("git", &args, &checkout);
    }
    let (code, _, err) = run(dry_run(&ws).args(["--no-user-data"]));
    assert_eq!(code, 0, "{err}");
    let out = read_outputs(&ws.root().join("gh-output"));
    assert_eq!(out["pi-gen-ref"], "feature-x");
    assert!(err.contains("not the default `bookworm-arm64`"), "{err}");
    let (code, _, err) = run(dry_run(&ws)
        .args(["--no-user-data"])
        .env("PI_GEN_REF", "bookworm-arm64"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is at `feature-x`"), "{err}");
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
fn the_timeline_and_the_metadata_cover_this_run_and_close_the_build() {
    let ws = Ws::new();
    test_pi_gen(&ws);
    for _ in 0..2 {
        let (code, _, err) = run(native(&ws).arg("--no-user-data"));
        assert_eq!(code, 0, "{err}");
    }
    let timeline: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(ws.root().join("out/sugarkube.stages.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(timeline["result"], "finished", "{timeline}");
    assert!(timeline["build"]["duration_seconds"].is_u64(), "{timeline}");
    assert_eq!(timeline["incomplete"], serde_json::json!([]));
    let names: Vec<&str> = timeline["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["stage0", "stage1", "stage2", "export-image"]);
    collect(&ws);
    let log = fs::read_to_string(ws.root().join("out/sugarkube.build.log")).unwrap();
    let base = format!("Begin {}\n", ws.root().join("pi-gen").display());
    assert_eq!(log.matches(&base).count(), 1, "only this run's part: {log}");
    let appended = fs::read_to_string(ws.root().join("pi-gen/work/sugarkube/build.log")).unwrap();
    assert_eq!(
        appended.matches(&base).count(),
        2,
        "pi-gen's own log keeps appending"
    );
}

/// A bootable Pi OS-like image from the cached Debian root filesystem (systemd,
/// cloud-init 22.4, the cloud kernel; tests/fixtures/cloud-init/build-rootfs.sh) after
/// the generated cloud-init sub-stage's host step ran on it, as pi-gen runs it.
fn cloud_init_image(ws: &Ws, sub: &Path, name: &str, keep_seed_config: bool) -> PathBuf {
    let tar = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cloud-init/rootfs.tar");
    assert!(
        tar.is_file(),
        "{} is missing: run tests/fixtures/cloud-init/build-rootfs.sh target/tmp/cloud-init (scripts/test.sh does)",
        tar.display()
    );
    let dir = ws.root().join(name);
    let root = dir.join("root");
    fs::create_dir_all(&root).unwrap();
    crate::support::sh(
        "tar",
        &["-xpf", tar.to_str().unwrap(), "-C", root.to_str().unwrap()],
        &dir,
    );
    let out = Command::new("./01-run.sh")
        .current_dir(sub)
        .env("ROOTFS_DIR", &root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !keep_seed_config {
        fs::remove_file(root.join("etc/cloud/cloud.cfg.d/99_pi-image-nocloud.cfg")).unwrap();
        fs::remove_dir_all(root.join("etc/systemd/system/cloud-init-local.service.d")).unwrap();
    }
    // What pi-gen's stage1 and export do: fstab and cmdline by PARTUUID, the boot
    // partition's files (here Debian's kernel and initramfs in Pi firmware names).
    fs::write(
        root.join("etc/fstab"),
        "proc /proc proc defaults 0 0\nPARTUUID=5eed1234-01 /boot/firmware vfat defaults 0 2\nPARTUUID=5eed1234-02 / ext4 defaults,noatime 0 1\n",
    )
    .unwrap();
    let boot = dir.join("boot");
    fs::rename(root.join("boot/firmware"), &boot).unwrap();
    fs::create_dir_all(root.join("boot/firmware")).unwrap();
    let newest = |prefix: &str| {
        let mut v: Vec<PathBuf> = fs::read_dir(root.join("boot"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .collect();
        v.sort();
        v.pop().unwrap()
    };
    fs::copy(newest("vmlinuz-"), boot.join("kernel8.img")).unwrap();
    fs::copy(newest("initrd.img-"), boot.join("initramfs8")).unwrap();
    fs::write(
        boot.join("config.txt"),
        "[all]\narm_64bit=1\nauto_initramfs=1\n",
    )
    .unwrap();
    fs::write(
        boot.join("cmdline.txt"),
        "console=serial0,115200 console=tty1 root=PARTUUID=5eed1234-02 rootfstype=ext4 fsck.repair=yes rootwait\n",
    )
    .unwrap();
    let image = dir.join("disk.img");
    crate::support::disk_from_trees(&dir, &image, &boot, &root);
    fs::remove_dir_all(&root).unwrap();
    image
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
fn the_seed_on_the_boot_partition_is_read_at_first_boot() {
    let ws = Ws::new();
    let checkout = test_pi_gen(&ws);
    fs::write(
        ws.root().join("cloud-init/seed.yaml"),
        "#cloud-config\nbootcmd:\n  - [sh, -c, 'echo pi-image-seed-was-read > /dev/console']\n",
    )
    .unwrap();
    // The sub-stage exactly as run-pi-gen writes it for bookworm (no stage2/04-cloud-init).
    let (code, _, err) = run(dry_run(&ws).args(["--user-data", "cloud-init/seed.yaml"]));
    assert_eq!(code, 0, "{err}");
    let sub = checkout.join("stage2/91-pi-image-cloud-init");
    let boot = |image: &Path, marker: &str, dir: &str| {
        run(pi_image(ws.root())
            .args([
                "smoke",
                "--machine",
                "virt",
                "--timeout",
                "900",
                "--marker",
                marker,
                "--artifacts-dir",
                dir,
                "--image",
            ])
            .arg(image))
    };
    let image = cloud_init_image(&ws, &sub, "seeded", true);
    let started = std::time::Instant::now();
    let (code, out, err) = boot(&image, "pi-image-seed-was-read", "smoke-seeded");
    eprintln!(
        "boot to the seed's marker: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        code,
        0,
        "cloud-init did not run the seed's bootcmd: {}",
        log_of(&out, &err)
    );
    fs::remove_file(&image).unwrap();
    // The control: the same image without the configuration the sub-stage adds boots to a
    // login prompt, and cloud-init never reads the seed.
    let image = cloud_init_image(&ws, &sub, "unseeded", false);
    let (code, out, err) = boot(&image, r"\S+ login: ?$", "smoke-unseeded");
    assert_eq!(code, 0, "{}", log_of(&out, &err));
    let serial = fs::read_to_string(ws.root().join("smoke-unseeded/serial.log")).unwrap();
    assert!(!serial.contains("pi-image-seed-was-read"), "{serial}");
}

/// The files run-pi-gen writes into a checkout (bookworm: no stage2/04-cloud-init), with
/// the text of every generated one: what pi-gen will run, pinned.
#[test]
#[ignore = "tier pi-gen: needs pi-gen's build tools and arm64 emulation (tests/fixtures/pi-gen/setup-host.sh)"]
fn the_generated_tree_is_pinned() {
    let ws = Ws::new();
    let checkout = ws.skeleton("");
    fs::remove_dir_all(checkout.join("stage2/04-cloud-init")).unwrap();
    fs::create_dir_all(ws.root().join("overlay/etc/app")).unwrap();
    fs::write(ws.root().join("overlay/etc/app/it's.conf"), "x\n").unwrap();
    std::os::unix::fs::symlink("/run/app", ws.root().join("overlay/etc/app/run")).unwrap();
    fs::write(ws.root().join("chroot.sh"), "echo in the chroot\n").unwrap();
    let (code, _, err) = run(dry_run(&ws).args([
        "--overlay",
        "overlay",
        "--overlay-owner",
        "etc/app=1000:1000",
        "--packages",
        "jq tree",
        "--chroot-script",
        "chroot.sh",
        "--hostname",
        "pinned",
    ]));
    assert_eq!(code, 0, "{err}");
    let mut listing = String::new();
    for e in walkdir::WalkDir::new(&checkout)
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        let rel = e.path().strip_prefix(&checkout).unwrap();
        let rel_s = rel.display().to_string();
        let generated = rel_s == "config"
            || rel_s.contains(pi_image::commands::run_pi_gen::substage::SUBSTAGE)
            || rel_s.contains(pi_image::commands::run_pi_gen::substage::CLOUD_INIT_SUBSTAGE);
        if !generated {
            continue;
        }
        let meta = fs::symlink_metadata(e.path()).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            listing.push_str(&format!(
                "{rel_s} -> {}\n",
                fs::read_link(e.path()).unwrap().display()
            ));
        } else if meta.is_dir() {
            listing.push_str(&format!("{rel_s}/ {mode:04o}\n"));
        } else {
            listing.push_str(&format!("{rel_s} {mode:04o}\n"));
            let text = fs::read_to_string(e.path()).unwrap();
            if !rel_s.contains("/files/etc/") {
                listing.push_str(&format!("----\n{text}----\n"));
            }
        }
    }
    let root = ws.root().display().to_string();
    insta::assert_snapshot!("run-pi-gen-tree", listing.replace(&root, "[ws]"));
}

/// `run-pi-gen --print-plan` on `ws/pi-gen` with the container strategy and `bin` (the
/// docker shim) first on PATH.
fn print_plan_in_container(ws: &Ws, bin: &Path) -> Command {
    let mut c = ws.cmd_any_kernel();
    c.args([
        "--pi-gen-dir",
        "pi-gen",
        "--strategy",
        "container",
        "--print-plan",
    ]);
    ws.with_path(&mut c, bin);
    c
}

/// `--print-plan`: the config, the generated files and each strategy's command lines,
/// in the order they would be tried, and nothing written or run.
#[test]
#[ignore = "tier pi-gen: needs pi-gen's build tools and arm64 emulation (tests/fixtures/pi-gen/setup-host.sh)"]
fn the_printed_plan_is_what_would_be_written_and_run() {
    let ws = Ws::new();
    let checkout = ws.skeleton("");
    let bin = ws.docker_shim(0, 0);
    let tree = |dir: &Path| {
        let mut v: Vec<String> = walkdir::WalkDir::new(dir)
            .into_iter()
            .map(|e| e.unwrap().path().display().to_string())
            .collect();
        v.sort();
        v
    };
    let mut c = print_plan_in_container(&ws, &bin);
    let before = tree(ws.root());
    c.env("APT_MIRROR", "http://mirror.example/raspbian");
    let (code, plan, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    let root = ws.root().display().to_string();
    insta::assert_snapshot!("run-pi-gen-plan", plan.replace(&root, "[ws]"));
    // Only `docker info` (gathering) ran; nothing was written.
    assert_eq!(ws.docker_log(), ["info"]);
    let mut after = tree(ws.root());
    after.retain(|p| !p.ends_with("docker.log"));
    assert_eq!(
        after,
        before,
        "--print-plan wrote into {}",
        checkout.display()
    );
    assert!(
        !ws.root().join("gh-output").exists()
            || fs::read_to_string(ws.root().join("gh-output"))
                .unwrap()
                .is_empty()
    );
}

/// A printed plan shows a secret setting as `***` (a mask would not match its quoted
/// form), and reading a hostile checkout runs nothing its git config names.
#[test]
fn the_printed_plan_hides_secret_settings_and_runs_nothing_of_the_checkouts() {
    let ws = Ws::new();
    let checkout = ws.skeleton("");
    let build = checkout.join("build.sh");
    let text = fs::read_to_string(&build).unwrap();
    fs::write(&build, text.replace("# reads ", "# reads FIRST_USER_PASS ")).unwrap();
    // pi-image's state directory makes run-pi-gen ask git whether it is tracked.
    fs::create_dir_all(checkout.join(".pi-image")).unwrap();
    let ran = ws.root().join("fsmonitor-ran");
    write_exec(
        &ws.root().join("fsmonitor.sh"),
        &format!("#!/bin/sh\ntouch '{}'\n", ran.display()),
    );
    crate::support::sh(
        "git",
        &[
            "config",
            "core.fsmonitor",
            ws.root().join("fsmonitor.sh").to_str().unwrap(),
        ],
        &checkout,
    );
    let bin = ws.docker_shim(0, 0);
    let secret = "hunter2\"q'uote\\";
    let mut c = print_plan_in_container(&ws, &bin);
    c.arg("--setting")
        .arg(format!("FIRST_USER_PASS={secret}"))
        .env("GITHUB_ACTIONS", "true");
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(r"FIRST_USER_PASS='***'\n"), "{out}");
    // Only the mask command itself carries the value (the runner hides it from then on).
    let shown: Vec<&str> = out
        .lines()
        .chain(err.lines())
        .filter(|l| l.contains("hunter2") && !l.starts_with("::add-mask::"))
        .collect();
    assert!(shown.is_empty(), "the secret was shown: {shown:?}");
    assert!(!ran.exists(), "the checkout's core.fsmonitor ran");
}
