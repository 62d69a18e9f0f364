//! The hostile-input suite: values an attacker controls (inputs, environment variables,
//! file names and contents, a manifest, a workflow's `with:`), against the real binary
//! and `pi-image action run`, run as an Actions step (`GITHUB_ACTIONS=true`, outputs and
//! summary files, a token in the environment).
//!
//! Every case asserts the exact exit code; that the payload's marker file was never
//! created; that the secret appears in no stdout, stderr, output or summary; that the
//! inputs (everything under `in/`) are byte-identical afterwards; that the error names
//! the input; and that the runner would execute no command the tool did not mean
//! (read as actions/runner reads a step's output: `::` after leading white space, the
//! legacy `##[` anywhere, `::stop-commands::` fences honoured on stdout).
//!
//! The cases that need a booted guest or a build live with their subcommand:
//! `smoke::a_malicious_guests_symlinks_never_reach_the_host` (a real QEMU guest plants
//! links for `--collect`) and `run_pi_gen::injection_in_settings_never_executes`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{hex_sha256, pi_image, repo_root};

/// The credential every case holds: as `GITHUB_TOKEN`, and in URLs where a case says.
const SECRET: &str = "S3cr3tV4lue9zq";
/// The text an injected workflow command would carry.
const INJECTED: &str = "INJECTED";

/// A value that becomes several lines and workflow commands if printed raw.
fn lines_payload() -> String {
    format!(
        "x\n::set-env name=PWNED::{INJECTED}\r::add-path::/{INJECTED}\n::error::{INJECTED} ##[set-output name=p;]{INJECTED}"
    )
}

/// The commands this tool itself emits.
const OURS: &[&str] = &[
    "error", "warning", "notice", "debug", "group", "endgroup", "add-mask",
];
/// Every command the runner knows (`ActionCommandManager`).
const REGISTERED: &[&str] = &[
    "stop-commands",
    "add-mask",
    "add-matcher",
    "remove-matcher",
    "add-path",
    "debug",
    "echo",
    "save-state",
    "set-env",
    "set-output",
    "warning",
    "error",
    "notice",
    "group",
    "endgroup",
];

/// Fails when a line of `text` would make the runner do something the tool did not
/// mean. `stdout`: fences are honoured (the tool fences foreign output there).
fn assert_no_injected_commands(case: &str, stream: &str, text: &str) {
    let mut fence: Option<String> = None;
    for line in text.split(['\n', '\r']) {
        let trimmed = line.trim_start();
        let lower = line.to_lowercase();
        if let Some(token) = &fence {
            let t = token.to_lowercase();
            if trimmed.to_lowercase().starts_with(&format!("::{t}::"))
                || lower.contains(&format!("##[{t}]"))
            {
                fence = None;
            }
            continue;
        }
        if let Some(i) = line.find("##[") {
            let name = line[i + 3..]
                .split([']', ' '])
                .next()
                .unwrap_or("")
                .to_lowercase();
            assert!(
                !REGISTERED.contains(&name.as_str()),
                "{case}: {stream} line `{line}` is a legacy command the runner would run"
            );
        }
        let Some(rest) = trimmed.strip_prefix("::") else {
            continue;
        };
        let (head, data) = rest.split_once("::").unwrap_or((rest, ""));
        let name = head.split(' ').next().unwrap_or("").to_lowercase();
        if name == "stop-commands" {
            assert!(
                stream == "stdout"
                    && data.len() == 32
                    && data.chars().all(|c| c.is_ascii_hexdigit()),
                "{case}: {stream} line `{line}` stops commands with a token that is not the tool's"
            );
            fence = Some(data.to_owned());
            continue;
        }
        if !REGISTERED.contains(&name.as_str()) {
            continue;
        }
        assert!(
            OURS.contains(&name.as_str()),
            "{case}: {stream} line `{line}` is a command the tool never emits"
        );
        assert!(
            !data.starts_with(INJECTED) && !head.contains(INJECTED),
            "{case}: {stream} line `{line}` is an injected command"
        );
    }
}

/// Every file under `dir`: kind, mode and content (or link target).
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).follow_links(false) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
        let meta = fs::symlink_metadata(e.path()).unwrap();
        let what = if meta.file_type().is_symlink() {
            format!("link {}", fs::read_link(e.path()).unwrap().display())
        } else if meta.is_file() {
            format!(
                "file {:o} {}",
                meta.mode(),
                hex_sha256(&fs::read(e.path()).unwrap())
            )
        } else if meta.is_dir() {
            format!("dir {:o}", meta.mode())
        } else {
            format!("special {:o}", meta.mode())
        };
        out.insert(rel, what);
    }
    out
}

/// One attacker's workspace: inputs under `in/`, outputs under `out/`, the Actions
/// files, the marker a payload would create.
struct Hostile {
    tmp: tempfile::TempDir,
    /// Host files outside the workspace (removed with it).
    outside: tempfile::TempDir,
}

impl Hostile {
    fn new() -> Self {
        let h = Self {
            tmp: tempfile::tempdir().unwrap(),
            outside: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(h.input("")).unwrap();
        h
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn input(&self, rel: &str) -> PathBuf {
        self.root().join("in").join(rel)
    }

    fn marker(&self) -> PathBuf {
        self.root().join("PWNED")
    }

    /// Shell that creates the marker, in every form a shell would run it.
    fn shell_payload(&self) -> String {
        let m = self.marker();
        let m = m.display();
        format!("$(touch {m})`touch {m}`;touch {m}")
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.input(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p
    }

    fn fifo(&self, rel: &str) -> PathBuf {
        let p = self.input(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        crate::support::sh("mkfifo", &[p.to_str().unwrap()], self.root());
        p
    }

    /// A file outside the workspace that a symlink under `in/` points at.
    fn link_out(&self, rel: &str) -> PathBuf {
        let outside = tempfile::NamedTempFile::new_in(self.outside.path())
            .unwrap()
            .into_temp_path()
            .keep()
            .unwrap();
        fs::write(&outside, format!("host secret {SECRET}\n")).unwrap();
        let p = self.input(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&outside, &p).unwrap();
        p
    }

    /// The binary as an Actions step, in the workspace, with a token in its environment.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = pi_image(self.root());
        c.args(args)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", self.root().join("gh-output"))
            .env("GITHUB_STEP_SUMMARY", self.root().join("gh-summary"))
            .env("GITHUB_WORKSPACE", self.root())
            .env("GITHUB_TOKEN", SECRET)
            .env("RUNNER_TEMP", self.root());
        c
    }

    /// A pi-gen checkout under `in/` (so the suite sees that nothing in it changes).
    fn pi_gen(&self) -> PathBuf {
        if self.input("pi-gen").exists() {
            return self.input("pi-gen");
        }
        let dir = crate::run_pi_gen::skeleton_in(&self.input(""), "");
        let config = self.root().join("kernel-config-ok");
        fs::write(
            &config,
            "CONFIG_BLK_DEV_LOOP=y\nCONFIG_MSDOS_PARTITION=y\nCONFIG_VFAT_FS=y\n",
        )
        .unwrap();
        dir
    }

    /// `run-pi-gen --dry-run` on [`Hostile::pi_gen`]'s checkout.
    fn run_pi_gen(&self, args: &[&str]) -> Command {
        self.pi_gen();
        let mut c = self.cmd(&[
            "run-pi-gen",
            "--output-dir",
            "out",
            "--min-free-gb",
            "0",
            "--skip-cloud-init-validation",
            "--pi-gen-dir",
            "in/pi-gen",
            "--strategy",
            "native",
            "--dry-run",
        ]);
        c.args(args).env(
            "PI_IMAGE_KERNEL_CONFIG",
            self.root().join("kernel-config-ok"),
        );
        c
    }

    /// Runs `cmd` (killed after a minute: a hang fails the case) and checks everything
    /// the suite promises.
    fn check(&self, case: &str, mut cmd: Command, code: i32, names: &[&str]) {
        let before = tree(&self.input(""));
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let t_out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let t_err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{case}: still running after 60 s (a hang on hostile input)");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (stdout, stderr) = (t_out.join().unwrap(), t_err.join().unwrap());
        let all = format!("{stdout}{stderr}");
        assert!(
            !all.contains("pi-image-smoke-"),
            "{case}: a message names a private copy, not the user's input\n{all}"
        );
        assert_eq!(status.code(), Some(code), "{case}: exit code\n{all}");
        assert!(!self.marker().exists(), "{case}: the payload ran\n{all}");
        let outputs = fs::read_to_string(self.root().join("gh-output")).unwrap_or_default();
        let summary = fs::read_to_string(self.root().join("gh-summary")).unwrap_or_default();
        for (what, text) in [
            ("stdout", &stdout),
            ("stderr", &stderr),
            ("the step outputs", &outputs),
            ("the step summary", &summary),
        ] {
            // A mask names the secret to the runner, which hides it: those lines aside.
            let shown: String = text
                .lines()
                .filter(|l| !l.starts_with("::add-mask::"))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                !shown.contains(SECRET),
                "{case}: the secret is in {what}\n{text}"
            );
        }
        assert_eq!(tree(&self.input("")), before, "{case}: an input changed");
        for e in walkdir::WalkDir::new(self.root().join("out")).follow_links(false) {
            let Ok(e) = e else { continue };
            if e.file_type().is_file() {
                let bytes = fs::read(e.path()).unwrap_or_default();
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(SECRET),
                    "{case}: the secret is in the output `{}`",
                    e.path().display()
                );
            }
        }
        for n in names {
            assert!(
                all.contains(n),
                "{case}: the message does not name `{n}`\n{all}"
            );
        }
        assert_no_injected_commands(case, "stdout", &stdout);
        assert_no_injected_commands(case, "stderr", &stderr);
    }
}

/// (case, args, environment, exit code, what the message must name)
type Row<'a> = (
    &'a str,
    Vec<String>,
    Vec<(&'a str, String)>,
    i32,
    Vec<&'a str>,
);

/// (case, a set-up returning the arguments, exit code, what the message must name)
type SetupRow<'a> = (&'a str, fn(&Hostile) -> Vec<String>, i32, Vec<&'a str>);
/// (case, arguments, environment, what the message must name); exit code 2
type UsageRow<'a> = (&'a str, Vec<String>, Vec<(&'a str, String)>, Vec<&'a str>);
/// (case, the action's inputs, exit code, what the message must name)
type ActionRow<'a> = (&'a str, Vec<(&'a str, String)>, i32, Vec<&'a str>);

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

#[test]
fn apt_configuration_that_could_run_a_program_is_refused_and_the_checkout_kept() {
    let rows: Vec<Row> = vec![
        (
            "pre-invoke",
            vec![],
            vec![(
                "APT_OPTS",
                "-o APT::Update::Pre-Invoke::=touch /tmp/x".into(),
            )],
            2,
            vec!["APT_OPTS", "APT::Update::Pre-Invoke::"],
        ),
        (
            "dpkg post-invoke",
            vec![],
            vec![("APT_OPTS", "-o DPkg::Post-Invoke::0=touch".into())],
            2,
            vec!["APT_OPTS", "DPkg::Post-Invoke::0"],
        ),
        (
            "dpkg pre-install-pkgs",
            vec![],
            vec![("APT_OPTS", "-oDpkg::Pre-Install-Pkgs::=x".into())],
            2,
            vec!["APT_OPTS"],
        ),
        (
            "update post-invoke-success",
            vec![],
            vec![(
                "APT_OPTS",
                "--option=APT::Update::Post-Invoke-Success::1=x".into(),
            )],
            2,
            vec!["APT_OPTS"],
        ),
        (
            "proxy auto-detect program",
            vec![],
            vec![(
                "APT_OPTS",
                "-o Acquire::http::Proxy-Auto-Detect=/bin/sh".into(),
            )],
            2,
            vec!["Acquire::http::Proxy-Auto-Detect"],
        ),
        (
            "methods directory",
            vec![],
            vec![("APT_OPTS", "-o Dir::Bin::Methods=/tmp".into())],
            2,
            vec!["Dir::Bin::Methods"],
        ),
        (
            "case variant",
            vec![],
            vec![("APT_OPTS", "-o dpkg::pre-invoke::=x".into())],
            2,
            vec!["dpkg::pre-invoke::"],
        ),
        (
            "value breaks apt syntax",
            vec![],
            vec![(
                "APT_OPTS",
                "-o Acquire::http::User-Agent=a\";DPkg::Pre-Invoke{\"x".into(),
            )],
            2,
            vec!["Acquire::http::User-Agent"],
        ),
        (
            "not an option",
            vec![],
            vec![("APT_OPTS", "--allow-unauthenticated".into())],
            2,
            vec!["APT_OPTS"],
        ),
        (
            "lines in the value",
            vec![],
            vec![(
                "APT_OPTS",
                format!("-o Acquire::Retries=3 {}", lines_payload()),
            )],
            2,
            vec!["APT_OPTS"],
        ),
        (
            "credentials kept in the image",
            vec![],
            vec![
                ("KEEP_MIRRORS_IN_IMAGE", "1".into()),
                ("APT_PROXY", format!("http://bob:{SECRET}@proxy:3128")),
            ],
            2,
            vec!["KEEP_MIRRORS_IN_IMAGE"],
        ),
        (
            "a proxy that is not http",
            vec![],
            vec![("APT_PROXY", format!("ftp://bob:{SECRET}@proxy"))],
            2,
            vec!["APT_PROXY"],
        ),
        (
            "a mirror with shell",
            vec![],
            vec![("DEBIAN_MIRROR", "http://h/$(touch PWNED)".into())],
            2,
            vec!["DEBIAN_MIRROR"],
        ),
        (
            "a mirror with lines",
            vec![],
            vec![("DEBIAN_MIRROR", format!("http://h/{}", lines_payload()))],
            2,
            vec!["DEBIAN_MIRROR"],
        ),
        (
            "a ref that is an option",
            vec![],
            vec![("PI_GEN_REF", "--upload-pack=touch PWNED".into())],
            2,
            vec!["PI_GEN_REF"],
        ),
        (
            "a git transport that runs programs",
            vec![],
            vec![("PI_GEN_URL", "ext::sh -c touch% PWNED".into())],
            2,
            vec!["PI_GEN_URL"],
        ),
        (
            "a branch with shell",
            vec![],
            vec![("PI_GEN_BRANCH", "bookworm;touch PWNED".into())],
            2,
            vec!["PI_GEN_BRANCH"],
        ),
    ];
    for (case, args, env, code, names) in rows {
        let h = Hostile::new();
        h.pi_gen();
        let mut c = h.cmd(&["prepare-mirrors", "--pi-gen-dir", "in/pi-gen", "--offline"]);
        c.args(&args);
        for (k, v) in &env {
            c.env(k, v.replace("PWNED", &h.marker().display().to_string()));
        }
        h.check(&format!("prepare-mirrors: {case}"), c, code, &names);
    }
}

#[test]
fn run_pi_gen_keeps_what_it_validates_and_reads_only_plain_files() {
    let rows: Vec<SetupRow> = vec![
        (
            "--setting IMG_NAME",
            |_| s(&["--no-user-data", "--setting", "IMG_NAME=../../x"]),
            2,
            vec!["--setting IMG_NAME"],
        ),
        (
            "--setting DEPLOY_DIR",
            |_| s(&["--no-user-data", "--setting", "DEPLOY_DIR=/"]),
            2,
            vec!["--setting DEPLOY_DIR"],
        ),
        (
            "--setting WORK_DIR",
            |_| s(&["--no-user-data", "--setting", "WORK_DIR=/etc"]),
            2,
            vec!["--setting WORK_DIR"],
        ),
        (
            "--setting STAGE_LIST",
            |_| s(&["--no-user-data", "--setting", "STAGE_LIST=/tmp/evil"]),
            2,
            vec!["--setting STAGE_LIST"],
        ),
        (
            "--setting BASE_DIR",
            |_| s(&["--no-user-data", "--setting", "BASE_DIR=/tmp"]),
            2,
            vec!["--setting BASE_DIR"],
        ),
        (
            "--setting with lines",
            |_| {
                vec![
                    "--no-user-data".into(),
                    "--setting".into(),
                    format!("X={}", lines_payload()),
                ]
            },
            2,
            vec!["setting X"],
        ),
        (
            "--setting with a bad name",
            |h| {
                vec![
                    "--no-user-data".into(),
                    "--setting".into(),
                    format!("A;{}=1", h.shell_payload()),
                ]
            },
            2,
            vec!["not a shell variable name"],
        ),
        (
            "--user-data FIFO",
            |h| {
                h.fifo("seed.yaml");
                s(&["--user-data", "in/seed.yaml"])
            },
            2,
            vec!["in/seed.yaml", "not a regular file"],
        ),
        (
            "--user-data symlink out",
            |h| {
                h.link_out("seed.yaml");
                s(&["--user-data", "in/seed.yaml"])
            },
            2,
            vec!["in/seed.yaml", "leads through a symlink out of"],
        ),
        (
            "--user-data directory",
            |h| {
                fs::create_dir_all(h.input("seed")).unwrap();
                s(&["--user-data", "in/seed"])
            },
            2,
            vec!["in/seed", "not a regular file"],
        ),
        (
            "--user-data device",
            |_| s(&["--user-data", "/dev/zero"]),
            2,
            vec!["/dev/zero", "not a regular file"],
        ),
        (
            "--chroot-script FIFO",
            |h| {
                h.fifo("s.sh");
                s(&["--no-user-data", "--chroot-script", "in/s.sh"])
            },
            2,
            vec!["in/s.sh", "not a regular file"],
        ),
        (
            "--chroot-script symlink out",
            |h| {
                h.link_out("s.sh");
                s(&["--no-user-data", "--chroot-script", "in/s.sh"])
            },
            2,
            vec!["in/s.sh", "leads through a symlink out of"],
        ),
        (
            "--overlay under a link out",
            |h| {
                std::os::unix::fs::symlink("/etc", h.input("etc-link")).unwrap();
                s(&["--no-user-data", "--overlay", "in/etc-link/apt"])
            },
            2,
            vec!["in/etc-link/apt", "leads through a symlink out of"],
        ),
        (
            "--overlay that is a link",
            |h| {
                std::os::unix::fs::symlink("/etc", h.input("ov")).unwrap();
                s(&["--no-user-data", "--overlay", "in/ov"])
            },
            2,
            vec!["in/ov", "is a symlink"],
        ),
        (
            "--pass-env a token",
            |_| s(&["--no-user-data", "--pass-env", "GITHUB_TOKEN"]),
            2,
            vec!["--pass-env GITHUB_TOKEN"],
        ),
        (
            "--pass-env the loader",
            |_| s(&["--no-user-data", "--pass-env", "LD_PRELOAD"]),
            2,
            vec!["LD_PRELOAD"],
        ),
        (
            "--pass-env NAME=secret",
            |_| {
                vec![
                    "--no-user-data".into(),
                    "--pass-env".into(),
                    format!("X={SECRET}"),
                ]
            },
            2,
            vec!["--pass-env"],
        ),
        (
            "--hostname with shell",
            |h| {
                vec![
                    "--no-user-data".into(),
                    "--hostname".into(),
                    h.shell_payload(),
                ]
            },
            2,
            vec!["hostname"],
        ),
        (
            "--img-name with a path",
            |_| s(&["--no-user-data", "--img-name", "../escape"]),
            2,
            vec!["IMG_NAME"],
        ),
        (
            "--img-name with lines",
            |_| {
                vec![
                    "--no-user-data".into(),
                    "--img-name".into(),
                    lines_payload(),
                ]
            },
            2,
            vec!["IMG_NAME"],
        ),
        (
            "--packages with shell",
            |h| {
                vec![
                    "--no-user-data".into(),
                    "--packages".into(),
                    format!("jq {}", h.shell_payload()),
                ]
            },
            2,
            vec!["--packages"],
        ),
    ];
    for (case, args, code, names) in rows {
        let h = Hostile::new();
        let args = args(&h);
        let mut c = h.run_pi_gen(&[]);
        c.args(&args);
        h.check(&format!("run-pi-gen: {case}"), c, code, &names);
    }
}

/// A small raw disk image under `in/deploy`.
fn deploy_image(h: &Hostile, rel: &str) -> PathBuf {
    let p = h.input(&format!("deploy/{rel}"));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::copy(crate::support::pi_like_image(), &p).unwrap();
    p
}

fn collect(h: &Hostile) -> Command {
    h.cmd(&[
        "collect-artifacts",
        "--xz-preset",
        "0",
        "--output-dir",
        "out",
        "--deploy-dir",
        "in/deploy",
    ])
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn collect_artifacts_reads_no_link_or_special_file_and_keeps_its_set_whole() {
    // (case, setup returning extra args, exit code, names)
    let rows: Vec<SetupRow> = vec![
        (
            "an image that links out",
            |h| {
                h.link_out("deploy/x.img");
                vec![]
            },
            1,
            vec!["x.img: a symlink, not followed"],
        ),
        (
            "an image that is a FIFO",
            |h| {
                h.fifo("deploy/x.img");
                vec![]
            },
            1,
            vec!["x.img: not a regular file"],
        ),
        (
            "a build log that links out",
            |h| {
                deploy_image(h, "x.img");
                h.link_out("deploy/build.log");
                vec![]
            },
            2,
            vec!["in/deploy/build.log", "leads through a symlink out of"],
        ),
        (
            "a build log that is a FIFO",
            |h| {
                deploy_image(h, "x.img");
                h.fifo("deploy/build.log");
                vec![]
            },
            2,
            vec!["in/deploy/build.log", "not a regular file"],
        ),
        (
            "--threads out of range",
            |h| {
                deploy_image(h, "x.img");
                s(&["--threads", "100000"])
            },
            2,
            vec!["--threads"],
        ),
        (
            "XZ_THREADS negative",
            |h| {
                deploy_image(h, "x.img");
                s(&["--threads", "-1"])
            },
            2,
            vec!["-1"],
        ),
        (
            "--image with lines",
            |h| {
                deploy_image(h, "x.img");
                vec!["--image".into(), lines_payload()]
            },
            2,
            vec!["--image", "in/deploy"],
        ),
        (
            "--chown not numbers",
            |h| {
                deploy_image(h, "x.img");
                vec!["--chown".into(), format!("a:{}", h.shell_payload())]
            },
            2,
            vec!["--chown"],
        ),
        (
            "a file name with commands",
            |h| {
                deploy_image(h, &format!("{}.img", lines_payload().replace('/', "_")));
                vec![]
            },
            0,
            vec![],
        ),
        (
            "--max-depth not a number",
            |h| {
                deploy_image(h, "x.img");
                s(&["--max-depth", "x;y"])
            },
            2,
            vec!["--max-depth"],
        ),
    ];
    for (case, args, code, names) in rows {
        let h = Hostile::new();
        fs::create_dir_all(h.input("deploy")).unwrap();
        let args = args(&h);
        let mut c = collect(&h);
        c.args(&args);
        h.check(&format!("collect-artifacts: {case}"), c, code, &names);
    }
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn a_set_that_cannot_be_replaced_leaves_the_previous_one_verifiable() {
    let h = Hostile::new();
    deploy_image(&h, "x.img");
    let mut c = collect(&h);
    c.args(["--img-name", "x"]);
    h.check("collect-artifacts: first run", c, 0, &[]);
    let out = h.root().join("out");
    let before = tree(&out);
    crate::support::sh("sha256sum", &["-c", "x.img.xz.sha256"], &out);
    // The next build is different; its metadata cannot be renamed into place.
    fs::write(h.input("deploy/x.img"), b"another image entirely").unwrap();
    let meta = out.join("x.img.xz.metadata.json");
    fs::remove_file(&meta).unwrap();
    fs::create_dir(&meta).unwrap();
    fs::write(meta.join("in-the-way"), "").unwrap();
    let mut c = collect(&h);
    c.args(["--img-name", "x"]);
    h.check(
        "collect-artifacts: set not replaceable",
        c,
        1,
        &["x.img.xz.metadata.json", "is a directory"],
    );
    let mut after = tree(&out);
    after.retain(|k, _| !k.starts_with("x.img.xz.metadata.json"));
    let mut want = before.clone();
    want.retain(|k, _| !k.starts_with("x.img.xz.metadata.json"));
    assert_eq!(after, want, "the previous image and checksum are untouched");
    crate::support::sh("sha256sum", &["-c", "x.img.xz.sha256"], &out);
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn two_collects_into_one_directory_wait_for_each_other() {
    let h = Hostile::new();
    deploy_image(&h, "x.img");
    let spawn = || {
        let mut c = collect(&h);
        c.args(["--img-name", "x"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = h.root().join("out");
    crate::support::sh("sha256sum", &["-c", "x.img.xz.sha256"], &out);
    crate::support::sh("xz", &["-t", "x.img.xz"], &out);
    let names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial") || n.ends_with(".previous"))
        .collect();
    assert!(names.is_empty(), "left behind: {names:?}");
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn smoke_reads_plain_files_and_names_the_users_image() {
    let rows: Vec<SetupRow> = vec![
        (
            "--image FIFO",
            |h| {
                h.fifo("x.img");
                s(&["--image", "in/x.img"])
            },
            2,
            vec!["in/x.img", "not a regular file"],
        ),
        (
            "--image symlink out",
            |h| {
                h.link_out("x.img");
                s(&["--image", "in/x.img"])
            },
            2,
            vec!["in/x.img", "leads through a symlink out of"],
        ),
        (
            "--inject FIFO",
            |h| {
                deploy_image(h, "x.img");
                h.fifo("hook");
                s(&[
                    "--image",
                    "in/deploy/x.img",
                    "--inject",
                    "in/hook:/opt/hook",
                ])
            },
            2,
            vec!["in/hook", "not a regular file"],
        ),
        (
            "--inject symlink out",
            |h| {
                deploy_image(h, "x.img");
                h.link_out("hook");
                s(&[
                    "--image",
                    "in/deploy/x.img",
                    "--inject",
                    "in/hook:/opt/hook",
                ])
            },
            2,
            vec!["in/hook", "leads through a symlink out of"],
        ),
        (
            "--collect with ..",
            |h| {
                deploy_image(h, "x.img");
                s(&["--image", "in/deploy/x.img", "--collect", "/etc/../../x"])
            },
            2,
            vec!["--collect", "must not contain"],
        ),
        (
            "--collect with quotes",
            |h| {
                deploy_image(h, "x.img");
                s(&["--image", "in/deploy/x.img", "--collect", "/x\" \"/y"])
            },
            2,
            vec!["--collect"],
        ),
        (
            "--inject guest path with lines",
            |h| {
                deploy_image(h, "x.img");
                h.write("hook", "x");
                vec![
                    "--image".into(),
                    "in/deploy/x.img".into(),
                    "--inject".into(),
                    format!("in/hook:/opt/{}", lines_payload()),
                ]
            },
            2,
            vec!["--inject"],
        ),
        (
            "an image that is not a disk",
            |h| {
                h.write("x.img", &"junk".repeat(3000));
                s(&["--image", "in/x.img", "--timeout", "5"])
            },
            1,
            vec!["in/x.img"],
        ),
    ];
    for (case, args, code, names) in rows {
        let h = Hostile::new();
        let args = args(&h);
        let mut c = h.cmd(&["smoke", "--artifacts-dir", "out/smoke"]);
        c.args(&args);
        h.check(&format!("smoke: {case}"), c, code, &names);
    }
}

fn manifest_cmd(h: &Hostile) -> Command {
    let out = h.root().join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("sk.img"), b"bytes").unwrap();
    crate::support::sh("xz", &["-0", "sk.img"], &out);
    let digest = crate::support::sha256_of(&out.join("sk.img.xz"));
    fs::write(
        out.join("sk.img.xz.sha256"),
        format!("{digest}  sk.img.xz\n"),
    )
    .unwrap();
    let mut c = h.cmd(&["manifest", "--img-name", "sk", "--output-dir", "out"]);
    c.env("GITHUB_REPOSITORY", "o/r")
        .env("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567");
    c
}

#[test]
fn manifest_values_with_a_grammar_are_checked_against_it() {
    let rows: Vec<UsageRow> = vec![
        (
            "--repository with shell",
            s(&["--repository", "o/$(touch PWNED)"]),
            vec![],
            vec!["--repository", "not a GitHub repository"],
        ),
        (
            "GITHUB_REPOSITORY with lines",
            vec![],
            vec![("GITHUB_REPOSITORY", format!("o/r{}", lines_payload()))],
            vec!["GITHUB_REPOSITORY"],
        ),
        (
            "GITHUB_REPOSITORY with a third part",
            vec![],
            vec![("GITHUB_REPOSITORY", "o/r/../x".into())],
            vec!["GITHUB_REPOSITORY"],
        ),
        (
            "GITHUB_SHA with shell",
            vec![],
            vec![("GITHUB_SHA", "$(touch PWNED)".into())],
            vec!["GITHUB_SHA", "not a git commit"],
        ),
        (
            "PI_GEN_COMMIT with lines",
            vec![],
            vec![("PI_GEN_COMMIT", lines_payload())],
            vec!["PI_GEN_COMMIT"],
        ),
        (
            "GITHUB_SERVER_URL with shell",
            vec![],
            vec![("GITHUB_SERVER_URL", "https://x/'$(touch PWNED)'".into())],
            vec!["GITHUB_SERVER_URL"],
        ),
        (
            "GITHUB_RUN_ID with shell",
            vec![],
            vec![("GITHUB_RUN_ID", "1;touch PWNED".into())],
            vec!["GITHUB_RUN_ID"],
        ),
        (
            "GITHUB_REF with lines",
            vec![],
            vec![("GITHUB_REF", format!("refs/heads/{}", lines_payload()))],
            vec!["GITHUB_REF"],
        ),
        (
            "--title with lines",
            vec!["--title".into(), lines_payload()],
            vec![],
            vec!["--title"],
        ),
    ];
    for (case, args, env, names) in rows {
        let h = Hostile::new();
        let mut c = manifest_cmd(&h);
        c.args(
            args.iter()
                .map(|a| a.replace("PWNED", &h.marker().display().to_string())),
        );
        for (k, v) in &env {
            c.env(k, v.replace("PWNED", &h.marker().display().to_string()));
        }
        h.check(&format!("manifest: {case}"), c, 2, &names);
    }
}

#[test]
fn the_notes_commands_are_each_one_shell_word_per_value() {
    let h = Hostile::new();
    let mut c = manifest_cmd(&h);
    c.args(["--repository", "o-1/r.x_y"]);
    h.check("manifest: valid values", c, 0, &[]);
    let notes = fs::read_to_string(h.root().join("out/RELEASE_NOTES.md")).unwrap();
    let block: Vec<&str> = notes
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert_eq!(block.len(), 3, "{notes}");
    for b in block {
        // bash parses each block, and running it with a stub for each command shows
        // the words it would get: the values arrive whole.
        let script = format!(
            "sha256sum() {{ printf '<%s>' \"$@\"; echo; }}\npi-image() {{ printf '<%s>' \"$@\"; echo; }}\ncosign() {{ printf '<%s>' \"$@\"; echo; }}\n{b}"
        );
        let out = crate::support::sh("bash", &["-c", &script], h.root());
        assert!(!h.marker().exists());
        for line in out.lines() {
            assert!(line.starts_with('<'), "{out}");
        }
        if out.contains("<--repository>") {
            assert!(out.contains("<--repository><o-1/r.x_y>"), "{out}");
        }
        if out.contains("<--certificate-identity-regexp>") {
            assert!(
                out.contains(r"<^https://github\.com/o\-1/r\.x_y/\.github/workflows/>"),
                "{out}"
            );
        }
    }
}

/// A release directory whose manifest says what `edit` makes it say.
fn release_dir(h: &Hostile, edit: impl FnOnce(&mut serde_json::Value)) {
    let d = h.input("rel");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("sk.img.xz"), b"bytes").unwrap();
    let mut m = serde_json::json!({
        "schema_version": 1, "generated_at": "2026-11-26T00:00:00Z",
        "release": { "channel": "stable", "tag": "v2026.11.26+g0123456", "name": "Sk", "prerelease": false, "make_latest": true },
        "source": { "repository": "o/r", "server_url": "https://github.com", "ref": "refs/heads/main", "commit": "0123456789abcdef0123456789abcdef01234567", "workflow": null, "run_id": null, "run_attempt": null },
        "build": null, "options": {},
        "artifacts": [{ "name": "sk.img.xz", "kind": "image", "size_bytes": 5, "sha256": hex_sha256(b"bytes") }],
        "smoke": { "status": "pass", "directory": "smoke", "artifacts": [] },
        "verifier": { "status": "not_run" }
    });
    edit(&mut m);
    fs::write(d.join("sk.img.xz.manifest.json"), m.to_string()).unwrap();
    fs::write(d.join("RELEASE_NOTES.md"), "# Sk\n").unwrap();
}

#[test]
fn release_refuses_a_hostile_manifest_before_any_request() {
    let gh = crate::support::github::FakeGitHub::start();
    type Edit = fn(&mut serde_json::Value);
    let rows: Vec<(&str, Edit, Vec<&str>, Vec<&str>)> = vec![
        (
            "an artifact name with a path",
            |m| m["artifacts"][0]["name"] = "../../etc/passwd".into(),
            vec![],
            vec!["artifact name", "not a plain file name"],
        ),
        (
            "an artifact name with lines",
            |m| m["artifacts"][0]["name"] = format!("a{}", lines_payload()).into(),
            vec![],
            vec!["artifact name"],
        ),
        (
            "an artifact name that is an option",
            |m| m["artifacts"][0]["name"] = "-rf".into(),
            vec![],
            vec!["artifact name"],
        ),
        (
            "an artifact name with a right-to-left override",
            |m| m["artifacts"][0]["name"] = "sk\u{202e}zx.gmi".into(),
            vec![],
            vec!["artifact name", "invisible characters"],
        ),
        (
            "a bundle name with a path",
            |m| {
                m["artifacts"][0]["bundle"] =
                    serde_json::json!({"name": "/etc/shadow", "sha256": "00", "size_bytes": 1});
            },
            vec![],
            vec!["bundle name"],
        ),
        (
            "a tag with shell",
            |m| m["release"]["tag"] = "v1;$(touch x)".into(),
            vec![],
            vec!["release tag"],
        ),
        (
            "a tag that is an option",
            |_| {},
            vec!["--tag=--delete"],
            vec!["--tag"],
        ),
        (
            "a repository with shell",
            |m| m["source"]["repository"] = "o/$(touch x)".into(),
            vec![],
            vec!["repository", "not a GitHub repository"],
        ),
        (
            "a commit with shell",
            |m| m["source"]["commit"] = "main;rm".into(),
            vec![],
            vec!["source commit"],
        ),
        (
            "an asset that links out",
            |_| {},
            vec!["--assets", "in/rel/link"],
            vec![],
        ),
    ];
    for (case, edit, args, names) in rows {
        let h = Hostile::new();
        release_dir(&h, edit);
        if case.contains("links out") {
            h.link_out("rel/link");
        }
        let mut c = h.cmd(&[
            "release",
            "--img-name",
            "sk",
            "--publish",
            "--manifest",
            "in/rel/sk.img.xz.manifest.json",
        ]);
        c.args(&args)
            .env_remove("GITHUB_REPOSITORY")
            .env("GITHUB_API_URL", &gh.base);
        if !case.contains("repository") {
            c.env("GITHUB_REPOSITORY", "o/r");
        }
        let names: Vec<&str> = if case.contains("links out") {
            vec!["leads through a symlink out of"]
        } else {
            names
        };
        h.check(&format!("release: {case}"), c, 2, &names);
        assert_eq!(
            gh.log(),
            Vec::<String>::new(),
            "release: {case}: a request was sent"
        );
    }
}

#[test]
fn credentials_in_urls_are_masked_first_and_never_shown() {
    let h = Hostile::new();
    h.pi_gen();
    let proxy = format!("http://bob:{SECRET}@127.0.0.1:9");
    let mut c = h.cmd(&["prepare-mirrors", "--pi-gen-dir", "in/pi-gen", "--offline"]);
    c.env("APT_PROXY", &proxy).env("DEBIAN_MIRROR", "not a url");
    h.check(
        "prepare-mirrors: a proxy with credentials",
        c,
        2,
        &["DEBIAN_MIRROR"],
    );
    let mut c = h.cmd(&[
        "release",
        "--img-name",
        "sk",
        "--dry-run",
        "--manifest",
        "in/rel/m.json",
    ]);
    c.env("GITHUB_API_URL", format!("http://u:{SECRET}@127.0.0.1:9"));
    h.check(
        "release: an API URL with credentials",
        c,
        2,
        &["in/rel/m.json"],
    );
    // A clap error quoting the value.
    let c = h.cmd(&[
        "collect-artifacts",
        "--threads",
        &format!("http://u:{SECRET}@h"),
    ]);
    h.check(
        "collect-artifacts: a credential in a bad value",
        c,
        2,
        &["--threads"],
    );
}

#[test]
fn published_files_hold_no_credential() {
    let h = Hostile::new();
    let mut c = manifest_cmd(&h);
    c.args([
        "--pi-gen-url",
        &format!("https://bob:p@ss{SECRET}@github.com/x/pi-gen"),
        "--option",
        &format!("MIRROR=http://al:{SECRET}@mirror/x"),
    ]);
    // The manifest, in-toto statement, metadata and notes under out/ are checked too.
    h.check(
        "manifest: credentials in the pi-gen URL and an option",
        c,
        0,
        &[],
    );
    let manifest = fs::read_to_string(h.root().join("out/sk.img.xz.manifest.json")).unwrap();
    assert!(
        manifest.contains("https://***@github.com/x/pi-gen"),
        "{manifest}"
    );
}

#[test]
fn more_inputs_are_plain_files_read_where_they_were_named() {
    let rows: Vec<SetupRow> = vec![
        (
            "release --manifest FIFO",
            |h| {
                h.fifo("m.json");
                s(&[
                    "release",
                    "--dry-run",
                    "--manifest",
                    "in/m.json",
                    "--repository",
                    "o/r",
                ])
            },
            2,
            vec!["in/m.json", "not a regular file"],
        ),
        (
            "release --notes FIFO",
            |h| {
                release_dir(h, |_| {});
                h.fifo("notes.md");
                s(&[
                    "release",
                    "--dry-run",
                    "--img-name",
                    "sk",
                    "--manifest",
                    "in/rel/sk.img.xz.manifest.json",
                    "--notes",
                    "in/notes.md",
                ])
            },
            2,
            vec!["in/notes.md", "not a regular file"],
        ),
        (
            "release --notes symlink out",
            |h| {
                h.write("a.bin", "x");
                h.link_out("notes.md");
                s(&[
                    "release",
                    "--dry-run",
                    "--no-manifest",
                    "--tag",
                    "v1",
                    "--assets",
                    "in/a.bin",
                    "--notes",
                    "in/notes.md",
                    "--repository",
                    "o/r",
                ])
            },
            2,
            vec!["in/notes.md", "leads through a symlink out of"],
        ),
        (
            "verify --manifest FIFO",
            |h| {
                h.fifo("m.json");
                s(&["verify", "--manifest", "in/m.json", "--repository", "o/r"])
            },
            2,
            vec!["in/m.json", "not a regular file"],
        ),
        (
            "sign --key symlink out",
            |h| {
                h.write("x.bin", "x");
                h.link_out("cosign.key");
                s(&["sign", "--key", "in/cosign.key", "in/x.bin"])
            },
            2,
            vec!["in/cosign.key", "leads through a symlink out of"],
        ),
        (
            "collect --deploy-dir missing",
            |_| {
                s(&[
                    "collect-artifacts",
                    "--deploy-dir",
                    "in/none",
                    "--output-dir",
                    "out",
                ])
            },
            2,
            vec!["in/none", "does not exist"],
        ),
        (
            "run-pi-gen PI_GEN_URL with Markdown",
            |h| {
                h.pi_gen();
                s(&[
                    "run-pi-gen",
                    "--dry-run",
                    "--pi-gen-dir",
                    "in/pi-gen",
                    "--pi-gen-url",
                    "https://h/x`$(id)`",
                ])
            },
            2,
            vec!["PI_GEN_URL"],
        ),
    ];
    for (case, args, code, names) in rows {
        let h = Hostile::new();
        let args = args(&h);
        let c = h.cmd(&args.iter().map(String::as_str).collect::<Vec<_>>());
        h.check(case, c, code, &names);
    }
}

#[test]
fn a_checkers_complaint_names_the_users_file() {
    let h = Hostile::new();
    h.write("bad.sh", "if then fi (\n");
    let c = h.run_pi_gen(&["--no-user-data", "--chroot-script", "in/bad.sh"]);
    h.check(
        "run-pi-gen: a chroot script bash cannot read",
        c,
        2,
        &["in/bad.sh", "not valid bash"],
    );
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn a_build_without_a_log_leaves_no_earlier_log_in_its_set() {
    let h = Hostile::new();
    deploy_image(&h, "x.img");
    h.write("deploy/build.log", "[10:00:00] Begin /pi-gen/stage0\n");
    h.check("collect-artifacts: with a log", collect(&h), 0, &[]);
    assert!(h.root().join("out/sugarkube.build.log").exists());
    fs::remove_file(h.input("deploy/build.log")).unwrap();
    h.check("collect-artifacts: without a log", collect(&h), 0, &[]);
    assert!(
        !h.root().join("out/sugarkube.build.log").exists(),
        "the earlier build's log is still beside the new image"
    );
}

#[test]
#[ignore = "tier pi-gen: needs pi-gen's build tools and arm64 emulation (tests/fixtures/pi-gen/setup-host.sh)"]
fn no_child_process_gets_the_token() {
    // `git` on PATH records the environment it was started with, then runs the real one.
    let h = Hostile::new();
    h.pi_gen();
    let bin = h.root().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let log = h.root().join("git-env");
    let real = crate::support::sh("sh", &["-c", "command -v git"], h.root());
    fs::write(
        bin.join("git"),
        format!(
            "#!/bin/sh\nenv >> '{}'\nexec {} \"$@\"\n",
            log.display(),
            real.trim()
        ),
    )
    .unwrap();
    crate::support::sh(
        "chmod",
        &["+x", bin.join("git").to_str().unwrap()],
        h.root(),
    );
    // The checkout is the build's to write (its config): outside `in/`.
    fs::rename(h.input("pi-gen"), h.root().join("pi-gen")).unwrap();
    let mut c = h.run_pi_gen(&["--no-user-data", "--pi-gen-dir", "pi-gen"]);
    c.env(
        "PATH",
        format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
    )
    .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", SECRET)
    .env("SIGSTORE_ID_TOKEN", SECRET);
    h.check("run-pi-gen: children's environment", c, 0, &[]);
    let env = fs::read_to_string(&log).expect("git ran");
    assert!(!env.contains(SECRET), "a child got a credential:\n{env}");
}

/// The root action's run step as the runner starts it: `pi-image action run`.
fn action(h: &Hostile, inputs: &[(&str, String)]) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("pi-image"));
    c.args(["action", "run", "--action-path"])
        .arg(repo_root())
        .current_dir(h.root())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", h.root().join("gh-output"))
        .env("GITHUB_STEP_SUMMARY", h.root().join("gh-summary"));
    for (k, v) in inputs {
        c.env(format!("INPUT_{}", k.to_uppercase().replace('-', "_")), v);
    }
    c
}

#[test]
fn the_action_script_prints_no_value_raw() {
    let rows: Vec<ActionRow> = vec![
        (
            "a command with lines",
            vec![("command", format!("doctor{}", lines_payload()))],
            2,
            vec!["unknown command"],
        ),
        (
            "a boolean with lines",
            vec![
                ("command", "doctor".into()),
                ("apply", format!("true{}", lines_payload())),
            ],
            2,
            vec!["`apply` must be true or false"],
        ),
        (
            "an output dir with lines",
            vec![
                ("command", "collect-artifacts".into()),
                ("output-dir", lines_payload()),
                ("deploy-dir", "in/none".into()),
            ],
            2,
            vec!["in/none"],
        ),
        (
            "a misplaced input with lines",
            vec![("command", "verify".into()), ("image", lines_payload())],
            2,
            vec!["input `image` is not used by `verify`"],
        ),
        (
            "a proxy with credentials",
            vec![
                ("command", "prepare-mirrors".into()),
                ("pi-gen-dir", "in/none".into()),
                ("offline", "true".into()),
                ("apt-proxy", format!("http://bob:{SECRET}@p:1")),
                ("debian-mirror", "bad".into()),
            ],
            2,
            vec!["DEBIAN_MIRROR"],
        ),
        (
            "a token to a step that does not use it",
            vec![
                ("command", "verify".into()),
                ("token", SECRET.into()),
                ("github-token", SECRET.into()),
            ],
            2,
            vec![],
        ),
        (
            "args with commands",
            vec![("command", "doctor".into()), ("args", lines_payload())],
            2,
            vec![],
        ),
    ];
    for (case, inputs, code, names) in rows {
        let h = Hostile::new();
        let c = action(&h, &inputs);
        h.check(&format!("action run: {case}"), c, code, &names);
    }
}

#[test]
fn the_install_script_prints_no_value_raw() {
    let h = Hostile::new();
    let mut c = Command::new("bash");
    c.arg(repo_root().join("action/install.sh"))
        .current_dir(h.root())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_ACTION_PATH", repo_root())
        .env("INPUT_INSTALL", lines_payload());
    h.check(
        "action/install.sh: an install mode with lines",
        c,
        2,
        &["input `install` must be auto or source"],
    );
}

#[test]
fn the_action_gives_the_binary_no_input_copies() {
    // The binary is a script that prints its environment.
    let h = Hostile::new();
    let bin = h.root().join("print-env");
    fs::write(&bin, "#!/bin/sh\nenv\n").unwrap();
    crate::support::sh("chmod", &["+x", bin.to_str().unwrap()], h.root());
    let mut c = action(
        &h,
        &[
            ("command", "run-pi-gen".into()),
            ("github-token", SECRET.into()),
            ("identity-token", SECRET.into()),
        ],
    );
    c.env("PI_IMAGE_BIN", &bin)
        .env("PI_IMAGE_DEFAULT_TOKEN", SECRET)
        // The step's own credentials: the child is this tool, as the step would have been.
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", "https://oidc.example/req")
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "step-oidc-request")
        .env("COSIGN_PASSWORD", "step-cosign-password");
    let out = c.output().unwrap();
    let env = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{env}");
    assert!(!env.contains(SECRET), "run-pi-gen got a token:\n{env}");
    assert!(
        !env.contains("INPUT_") && !env.contains("PI_IMAGE_DEFAULT_TOKEN"),
        "INPUT_ copies reached the binary:\n{env}"
    );
    for kept in [
        "ACTIONS_ID_TOKEN_REQUEST_URL=https://oidc.example/req",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN=step-oidc-request",
        "COSIGN_PASSWORD=step-cosign-password",
    ] {
        assert!(env.contains(kept), "keyless signing needs {kept}:\n{env}");
    }
}
