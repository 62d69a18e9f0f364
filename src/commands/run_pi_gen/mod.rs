//! `run-pi-gen`: check out pi-gen, configure it safely, run it natively or in a
//! container, and stream its log with one collapsible group per stage.

pub mod config;
pub mod strategy;
pub mod substage;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use self::strategy::{ContainerSpec, Strategy};
use self::substage::{CloudInitPlacement, Contents};
use crate::config::{ImageArgs, PiGenArgs, PiGenSource};
use crate::error::usage;
use crate::gha::{Gha, StepReport, md_cell};
use crate::model::{self, to_canonical_json};
use crate::process::CmdSpec;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub image: ImageArgs,
    /// An existing pi-gen checkout to use (a missing directory is cloned into)
    #[arg(long, env = "PI_GEN_DIR")]
    pub pi_gen_dir: Option<PathBuf>,
    #[command(flatten)]
    pub pi_gen: PiGenArgs,
    /// Opt in to 32-bit armhf builds
    #[arg(long, env = "ALLOW_ARMHF", default_value = "0")]
    pub allow_armhf: String,
    /// cloud-init user-data to install into the image
    #[arg(long, env = "USER_DATA", default_value = "cloud-init/user-data.yaml")]
    pub user_data: PathBuf,
    /// Build without a cloud-init seed
    #[arg(long, conflicts_with = "user_data")]
    pub no_user_data: bool,
    /// Only check the header and YAML, not `cloud-init schema`
    #[arg(long, env = "SKIP_CLOUD_INIT_VALIDATION", value_parser = clap::builder::BoolishValueParser::new())]
    pub skip_cloud_init_validation: bool,
    /// Files copied into the image's root filesystem (a directory tree)
    #[arg(long, env = "OVERLAY_DIR")]
    pub overlay: Option<PathBuf>,
    /// Extra Debian packages, space-separated
    #[arg(long, env = "EXTRA_PACKAGES")]
    pub packages: Option<String>,
    /// A shell script run inside the image's chroot
    #[arg(long, env = "CHROOT_SCRIPT")]
    pub chroot_script: Option<PathBuf>,
    /// The image's hostname
    #[arg(long, env = "TARGET_HOSTNAME")]
    pub hostname: Option<String>,
    /// Enable SSH in the image
    #[arg(long, env = "ENABLE_SSH", default_value = "1")]
    pub enable_ssh: String,
    /// Any other pi-gen setting, KEY=VALUE (checked against the checkout)
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    #[arg(long, env = "PI_GEN_STRATEGY", value_enum, default_value = "auto")]
    pub strategy: Strategy,
    /// Container image for the container strategy [default: built from the checkout's Dockerfile]
    #[arg(long = "container-image", env = "PI_GEN_IMAGE")]
    pub container_image: Option<String>,
    /// Stop pi-gen after this many seconds
    #[arg(long, env = "BUILD_TIMEOUT")]
    pub timeout: Option<u64>,
    /// Free disk required, in GB
    #[arg(long, env = "REQUIRED_SPACE_GB", default_value_t = 30)]
    pub min_free_gb: u64,
    /// Install missing build dependencies with apt-get
    #[arg(long)]
    pub install_deps: bool,
    /// Resume a failed build from pi-gen's work directory (CONTINUE=1)
    #[arg(long = "continue")]
    pub continue_build: bool,
    /// Write an outage record (sugarkube outages schema) here when the build fails
    #[arg(long, env = "OUTAGE_DIR")]
    pub outage_dir: Option<PathBuf>,
    /// Check everything, write the config and sub-stages, but do not run pi-gen
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone)]
pub struct Input {
    pub img_name: String,
    pub output_dir: PathBuf,
    pub pi_gen_dir: PathBuf,
    pub clone_if_missing: bool,
    pub url: String,
    pub branch: String,
    pub git_ref: String,
    pub arm64: bool,
    pub stages: Vec<String>,
    pub user_data: Option<PathBuf>,
    pub skip_schema: bool,
    pub overlay: Option<PathBuf>,
    pub packages: Vec<String>,
    pub chroot_script: Option<PathBuf>,
    pub settings: BTreeMap<String, String>,
    pub strategy: Strategy,
    pub container_image: Option<String>,
    pub timeout: Option<Duration>,
    pub min_free_gb: u64,
    pub install_deps: bool,
    pub continue_build: bool,
    pub outage_dir: Option<PathBuf>,
    pub dry_run: bool,
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

impl Input {
    pub fn from_args(args: Args) -> anyhow::Result<Self> {
        let paths = args.image.artifact_paths()?;
        let PiGenSource {
            url,
            branch,
            git_ref,
            arm64,
            stages,
        } = args.pi_gen.resolve()?;
        if !arm64 && args.allow_armhf.trim() != "1" {
            return Err(usage(
                "ARM64=0 selects a 32-bit armhf userspace, which builds a second, slower image family.\nSet ALLOW_ARMHF=1 to explicitly opt in to armhf userspace builds.",
            ));
        }
        let packages: Vec<String> = args
            .packages
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        for p in &packages {
            substage::check_package(p)?;
        }
        let user_data = if args.no_user_data {
            None
        } else {
            Some(absolute(&args.user_data)?)
        };
        if let Some(ud) = &user_data {
            substage::validate_user_data(ud, args.skip_cloud_init_validation)?;
        }
        if let Some(dir) = &args.overlay
            && !dir.is_dir()
        {
            return Err(usage(format!(
                "overlay directory `{}` does not exist",
                dir.display()
            )));
        }
        if let Some(script) = &args.chroot_script {
            let out = Command::new("bash")
                .arg("-n")
                .arg(script)
                .output()
                .context("cannot run `bash -n` on the chroot script")?;
            if !out.status.success() {
                return Err(usage(format!(
                    "chroot script `{}` is not valid bash: {}",
                    script.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        let output_dir = absolute(&paths.dir)?;
        let mut settings = BTreeMap::new();
        settings.insert("IMG_NAME".to_owned(), args.image.img_name.clone());
        settings.insert("RELEASE".to_owned(), branch.clone());
        settings.insert(
            "DEPLOY_DIR".to_owned(),
            output_dir.join("deploy").display().to_string(),
        );
        settings.insert(
            "ENABLE_SSH".to_owned(),
            if args.enable_ssh.trim() == "0" {
                "0"
            } else {
                "1"
            }
            .to_owned(),
        );
        if let Some(h) = args.hostname.filter(|h| !h.is_empty()) {
            let ok = h.len() <= 63
                && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !h.starts_with('-');
            if !ok {
                return Err(usage(format!(
                    "hostname `{}` is not a valid host name (letters, digits, `-`)",
                    h.escape_debug()
                )));
            }
            settings.insert("TARGET_HOSTNAME".to_owned(), h);
        }
        for s in &args.settings {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| usage(format!("--setting `{s}` is not KEY=VALUE")))?;
            config::check(k, v)?;
            settings.insert(k.to_owned(), v.to_owned());
        }
        let (pi_gen_dir, clone_if_missing) = match args.pi_gen_dir {
            Some(d) => (absolute(&d)?, true),
            None => (absolute(Path::new("pi-gen"))?, true),
        };
        Ok(Self {
            img_name: args.image.img_name,
            output_dir,
            pi_gen_dir,
            clone_if_missing,
            url,
            git_ref,
            branch,
            arm64,
            stages,
            user_data,
            skip_schema: args.skip_cloud_init_validation,
            overlay: args.overlay.map(|o| absolute(&o)).transpose()?,
            packages,
            chroot_script: args.chroot_script,
            settings,
            strategy: args.strategy,
            container_image: args.container_image,
            timeout: args.timeout.map(Duration::from_secs),
            min_free_gb: args.min_free_gb,
            install_deps: args.install_deps,
            continue_build: args.continue_build,
            outage_dir: args.outage_dir,
            dry_run: args.dry_run,
        })
    }
}

fn which(tool: &str) -> bool {
    crate::process::find_program(tool).is_some()
}

/// Clones pi-gen (or reuses a checkout) at the requested ref; returns the commit.
fn checkout(gha: &Gha, input: &Input) -> anyhow::Result<String> {
    checkout_pi_gen(gha, &input.pi_gen_dir, &input.url, &input.git_ref)
}

/// Clones pi-gen from `url` at `git_ref` into `dir`, or reuses the checkout already
/// there; returns its commit. Shared with `prepare-mirrors`, which runs first.
pub fn checkout_pi_gen(gha: &Gha, dir: &Path, url: &str, git_ref: &str) -> anyhow::Result<String> {
    if dir.exists() {
        if !dir.join("build.sh").is_file() {
            bail!(
                "pi-gen directory `{}` exists but is missing build.sh: point --pi-gen-dir at a pi-gen checkout",
                dir.display()
            );
        }
        if dir.join(".git").exists() {
            return Ok(CmdSpec::new("git", "read the pi-gen commit")
                .arg("-c")
                .arg("safe.directory=*")
                .arg("-C")
                .arg(dir)
                .arg("rev-parse")
                .arg("HEAD")
                .output()
                .unwrap_or_else(|_| "unknown".into()));
        }
        return Ok("unknown".into());
    }
    if !which("git") {
        return Err(usage(
            "git is required to check out pi-gen (apt-get install git)",
        ));
    }
    let _g = gha.group(&format!("cloning pi-gen {} at {}", url, git_ref));
    let is_commit = git_ref.len() >= 7 && git_ref.chars().all(|c| c.is_ascii_hexdigit());
    if is_commit {
        std::fs::create_dir_all(dir)?;
        for args in [
            vec!["init", "-q"],
            vec!["remote", "add", "origin", url],
            vec!["fetch", "-q", "--depth", "1", "origin", git_ref],
            vec!["checkout", "-q", "FETCH_HEAD"],
        ] {
            let mut c = CmdSpec::new("git", &format!("check out pi-gen commit {}", git_ref))
                .arg("-C")
                .arg(dir);
            for a in args {
                c = c.arg(a);
            }
            c.output()?;
        }
    } else {
        CmdSpec::new("git", &format!("clone pi-gen ({} at {})", url, git_ref))
            .arg("clone")
            .arg("-q")
            .arg("--depth")
            .arg("1")
            .arg("--branch")
            .arg(git_ref)
            .arg(url)
            .arg(dir)
            .output()?;
    }
    CmdSpec::new("git", "read the pi-gen commit")
        .arg("-C")
        .arg(dir)
        .arg("rev-parse")
        .arg("HEAD")
        .output()
}

/// All text of the checkout's scripts, to see which settings it reads.
fn checkout_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in walkdir::WalkDir::new(dir)
        .max_depth(4)
        .into_iter()
        .flatten()
    {
        let p = entry.path();
        if p.components()
            .any(|c| matches!(c.as_os_str().to_str(), Some(".git" | "work" | "deploy")))
            || !entry.file_type().is_file()
        {
            continue;
        }
        let name = entry.file_name().to_string_lossy();
        if name.ends_with(".md") || name == "config" {
            continue;
        }
        if let Ok(t) = std::fs::read_to_string(p) {
            text.push_str(&t);
            text.push('\n');
        }
    }
    text
}

/// pi-gen's `depends` file: `tool[:package]` per line.
fn depends(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("depends"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (tool, pkg) = l.split_once(':').unwrap_or((l, l));
            (tool.to_owned(), pkg.to_owned())
        })
        .collect()
}

/// The `depends` entries whose tool is not installed.
fn missing_depends(dir: &Path) -> Vec<(String, String)> {
    depends(dir)
        .into_iter()
        .filter(|(tool, _)| !which(tool))
        .collect()
}

fn free_gb(dir: &Path) -> Option<f64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some((st.f_bavail as f64 * st.f_frsize as f64) / 1e9)
}

/// Why a strategy cannot run here, or `None` when it can.
fn native_blocker(input: &Input) -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("native builds need Linux; use a container strategy".into());
    }
    if !rustix::process::geteuid().is_root() && !which("sudo") {
        return Some("Run as root or install sudo".into());
    }
    let missing = missing_depends(&input.pi_gen_dir);
    if !missing.is_empty() {
        let tools: Vec<_> = missing.iter().map(|(t, _)| t.as_str()).collect();
        let pkgs: Vec<_> = missing.iter().map(|(_, p)| p.as_str()).collect();
        return Some(format!(
            "pi-gen's tools {} are missing: apt-get install {} (or pass --install-deps)",
            tools.join(", "),
            pkgs.join(" ")
        ));
    }
    if let Some(binfmt) = missing_binfmt(input.arm64) {
        return Some(format!(
            "no {binfmt} binfmt_misc entry: apt-get install qemu-user-static binfmt-support && update-binfmts --enable {binfmt}"
        ));
    }
    None
}

/// The binfmt_misc entry ARM binaries need on this (non-ARM) host, if it is missing.
fn missing_binfmt(arm64: bool) -> Option<&'static str> {
    let entry = if arm64 { "qemu-aarch64" } else { "qemu-arm" };
    let host_is_arm = matches!(std::env::consts::ARCH, "aarch64" | "arm");
    (!host_is_arm && !binfmt_dir().join(entry).exists()).then_some(entry)
}

/// Where the kernel lists binfmt_misc entries (overridable so tests can simulate a
/// host without them).
fn binfmt_dir() -> PathBuf {
    std::env::var_os("PI_IMAGE_BINFMT_DIR")
        .map_or_else(|| PathBuf::from("/proc/sys/fs/binfmt_misc"), PathBuf::from)
}

fn docker_blocker() -> Option<String> {
    if !which("docker") {
        return Some("docker is not installed".into());
    }
    match Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        _ => Some("Docker daemon is not running or not accessible".into()),
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    pub strategy: String,
    pub pi_gen_url: String,
    pub pi_gen_ref: String,
    pub pi_gen_commit: String,
    pub pi_gen_dir: PathBuf,
    pub deploy_dir: PathBuf,
    pub build_log: PathBuf,
    pub build_start: String,
    pub build_end: String,
    pub stages: Vec<String>,
    pub attempts: Vec<String>,
}

impl StepReport for Outcome {
    fn outputs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("strategy", self.strategy.clone()),
            ("pi-gen-url", self.pi_gen_url.clone()),
            ("pi-gen-ref", self.pi_gen_ref.clone()),
            ("pi-gen-commit", self.pi_gen_commit.clone()),
            ("pi-gen-dir", self.pi_gen_dir.display().to_string()),
            ("deploy-dir", self.deploy_dir.display().to_string()),
            ("build-log", self.build_log.display().to_string()),
            ("build-start", self.build_start.clone()),
            ("build-end", self.build_end.clone()),
            ("stages", self.stages.join(" ")),
        ]
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "### run-pi-gen\n\n| pi-gen | Strategy | Stages | Started | Ended |\n| --- | --- | --- | --- | --- |\n| `{}` @ `{}` | {} | {} | {} | {} |\n",
            md_cell(&self.pi_gen_ref),
            md_cell(self.pi_gen_commit.get(..12).unwrap_or(&self.pi_gen_commit)),
            self.strategy,
            md_cell(&self.stages.join(" ")),
            self.build_start,
            self.build_end
        );
        for a in &self.attempts {
            s.push_str(&format!("\n- {}", md_cell(a)));
        }
        s.push_str("\n\n");
        s
    }
}

/// Writes config, cloud-init seed, sub-stages and export markers into the checkout.
fn prepare_tree(input: &Input) -> anyhow::Result<(Option<CloudInitPlacement>, Vec<String>)> {
    let dir = &input.pi_gen_dir;
    for s in &input.stages {
        if !dir.join(s).is_dir() {
            let known: Vec<String> = std::fs::read_dir(dir)?
                .flatten()
                .filter(|e| {
                    e.path().is_dir() && e.file_name().to_string_lossy().starts_with("stage")
                })
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            return Err(usage(format!(
                "unknown pi-gen stage `{s}` (PI_GEN_STAGES); this checkout has: {}",
                known.join(" ")
            )));
        }
    }
    let last = input.stages.last().cloned().unwrap_or_default();
    let has_ci = dir.join("stage2/04-cloud-init").is_dir();
    let (files, placement) = substage::plan(
        &last,
        has_ci,
        input.stages.iter().any(|s| s == "stage2"),
        input.user_data.as_deref(),
        input.overlay.as_deref(),
        &input.packages,
        input.chroot_script.as_deref(),
    );
    let mut settings = input.settings.clone();
    settings.insert(
        "STAGE_LIST".to_owned(),
        input
            .stages
            .iter()
            .map(|s| dir.join(s).display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
    );
    if placement == Some(CloudInitPlacement::PiGenStage) {
        settings.insert("ENABLE_CLOUD_INIT".to_owned(), "1".to_owned());
    }
    let text = checkout_text(dir);
    let unsupported = config::unsupported(
        settings
            .keys()
            .map(String::as_str)
            .filter(|k| !["STAGE_LIST", "IMG_NAME", "DEPLOY_DIR"].contains(k)),
        &text,
    );
    if !unsupported.is_empty() {
        return Err(usage(format!(
            "this pi-gen ({}) does not support these settings, so they would be silently ignored:\n  {}",
            input.git_ref,
            unsupported.join("\n  ")
        )));
    }
    for f in &files {
        let dest = dir.join(&f.path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        match &f.contents {
            Contents::Text(t) => crate::atomic::write(&dest, t.as_bytes())?,
            Contents::Copy(src) => {
                std::fs::copy(src, &dest).with_context(|| {
                    format!("cannot copy `{}` into the pi-gen tree", src.display())
                })?;
            }
            Contents::Tree(src) => {
                let _ = std::fs::remove_dir_all(&dest);
                std::fs::create_dir_all(&dest)?;
                CmdSpec::new("cp", "copy the overlay into the generated sub-stage")
                    .arg("-a")
                    .arg(format!("{}/.", src.display()))
                    .arg(&dest)
                    .output()?;
            }
        }
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(f.mode)).ok();
    }
    // Only the last stage exports an image.
    for s in &input.stages {
        let skip = dir.join(s).join("SKIP_IMAGES");
        if s == &last {
            let _ = std::fs::remove_file(&skip);
            if !dir.join(s).join("EXPORT_IMAGE").exists() {
                crate::atomic::write(&dir.join(s).join("EXPORT_IMAGE"), b"IMG_SUFFIX=\"\"\n")?;
            }
        } else if dir.join(s).join("EXPORT_IMAGE").exists() {
            crate::atomic::write(&skip, b"")?;
        }
    }
    mark_completed_stages(input)?;
    crate::atomic::write(&dir.join("config"), config::render(&settings)?.as_bytes())?;
    Ok((
        placement,
        files.iter().map(|f| f.path.display().to_string()).collect(),
    ))
}

/// What a `SKIP` file written by `--continue` contains, so a later full build can tell
/// ours from a user's and remove them.
const CONTINUE_SKIP: &[u8] =
    b"written by pi-image run-pi-gen --continue: this stage completed in an earlier run\n";

/// `--continue`: stages that a previous run finished (an `End <stage>` line in the
/// persistent build.log, and their rootfs still in the work directory) get a `SKIP`
/// file, so pi-gen resumes at the first unfinished stage. Without `--continue`, our
/// `SKIP` files from an earlier resume are removed so everything is built.
fn mark_completed_stages(input: &Input) -> anyhow::Result<()> {
    let dir = &input.pi_gen_dir;
    let work = dir.join("work").join(&input.img_name);
    let log = std::fs::read_to_string(work.join("build.log")).unwrap_or_default();
    let done: Vec<String> = crate::buildlog::parse(&log)
        .stages()
        .into_iter()
        .map(|s| s.name.clone())
        .collect();
    let mut skipped = Vec::new();
    for s in &input.stages {
        let skip = dir.join(s).join("SKIP");
        let ours = std::fs::read(&skip).is_ok_and(|c| c == CONTINUE_SKIP);
        let finished = done.contains(s) && work.join(s).join("rootfs").is_dir();
        if input.continue_build && finished {
            crate::atomic::write(&skip, CONTINUE_SKIP)?;
            skipped.push(s.as_str());
        } else if ours {
            std::fs::remove_file(&skip)
                .with_context(|| format!("cannot remove `{}`", skip.display()))?;
        }
    }
    if input.continue_build {
        if skipped.is_empty() {
            tracing::info!(
                "--continue: no stage of an earlier run is complete; building from the start"
            );
        } else {
            tracing::info!(
                "--continue: skipping stages completed earlier: {}",
                skipped.join(" ")
            );
        }
    }
    Ok(())
}

/// Streams pi-gen's output; stage `Begin`/`End` lines open and close log groups.
fn stream(gha: &Gha, input: &Input, mut cmd: Command, what: &str) -> anyhow::Result<()> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    tracing::info!("running {what}: {:?}", cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("failed to start {what}"))?;
    let (tx, rx) = mpsc::channel::<Option<String>>();
    for pipe in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(Some(l)).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = tx.send(None);
        });
    }
    drop(tx);
    let pgid = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    let kill_tree = |sig| {
        if let Some(p) = pgid {
            let _ = rustix::process::kill_process_group(p, sig);
        }
    };
    let started = Instant::now();
    let base = input.pi_gen_dir.display().to_string();
    let mut group = None;
    let mut log_lines = String::new();
    let mut open_streams = 2;
    let timeline = input
        .output_dir
        .join(format!("{}.stages.json", input.img_name));
    let begin =
        regex::Regex::new(r"^\[(\d{2}:\d{2}:\d{2})\] (Begin|End) (.+)$").expect("valid regex");
    while open_streams > 0 {
        if let Err(e) = crate::atomic::check_interrupted() {
            kill_tree(rustix::process::Signal::TERM);
            return Err(e);
        }
        if let Some(limit) = input.timeout
            && started.elapsed() > limit
        {
            drop(group.take());
            kill_tree(rustix::process::Signal::TERM);
            std::thread::sleep(Duration::from_secs(10).min(limit));
            kill_tree(rustix::process::Signal::KILL);
            let _ = child.wait();
            bail!(
                "pi-gen did not finish within {}s (--timeout); its whole process tree was stopped",
                limit.as_secs()
            );
        }
        let line = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(l)) => l,
            Ok(None) => {
                open_streams -= 1;
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Some(c) = begin.captures(&line) {
            log_lines.push_str(&line);
            log_lines.push('\n');
            let path = c[3].trim_end_matches('/');
            let is_stage =
                Path::new(path).parent().map(|p| p.display().to_string()) == Some(base.clone());
            if is_stage {
                let name = path.rsplit('/').next().unwrap_or(path).to_owned();
                if &c[2] == "Begin" {
                    drop(group.take());
                    gha.line(&line);
                    group = Some(gha.group(&format!("pi-gen {name}")));
                    continue;
                }
                gha.line(&line);
                drop(group.take());
                let t = crate::buildlog::parse(&log_lines);
                let stages: Vec<_> = t.stages().into_iter().cloned().collect();
                let _ = crate::atomic::write(
                    &timeline,
                    to_canonical_json(&json!({ "stages": stages, "incomplete": t.incomplete }))?
                        .as_bytes(),
                );
                if let Some(s) = stages.iter().rev().find(|s| s.name == name) {
                    tracing::info!(
                        "pi-gen {name} finished in {}",
                        crate::commands::manifest::notes::human_duration(s.duration_seconds)
                    );
                }
                continue;
            }
        }
        gha.line(&line);
    }
    drop(group);
    let status = child.wait().context("cannot wait for pi-gen")?;
    if !status.success() {
        let code = status
            .code()
            .map_or_else(|| "a signal".to_owned(), |c| format!("exit code {c}"));
        bail!("{what} failed with {code}");
    }
    Ok(())
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn write_outage(dir: &Path, input: &Input, err: &anyhow::Error) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let now = model::now()?;
    let date = now.format("%Y-%m-%d").to_string();
    let id = format!("{date}-pi-image-build-{}", now.format("%H%M%S"));
    let record = json!({
        "id": id,
        "date": date,
        "component": "pi-image run-pi-gen",
        "rootCause": format!("{err:#}"),
        "resolution": "Unresolved: see the build log tail in the step log; re-run with --continue to resume from pi-gen's work directory.",
        "references": [format!("pi-gen {} @ {}", input.url, input.git_ref)],
    });
    let path = dir.join(format!("{id}.json"));
    crate::atomic::write(&path, to_canonical_json(&record)?.as_bytes())?;
    Ok(path)
}

pub fn run(gha: &Gha, input: &Input) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(input.output_dir.join("deploy"))
        .with_context(|| format!("cannot create `{}`", input.output_dir.display()))?;
    let commit = checkout(gha, input)?;
    let (placement, generated) = prepare_tree(input)?;
    tracing::info!(
        "pi-gen {} at {commit}; config and {} generated file(s) written",
        input.git_ref,
        generated.len()
    );
    if let Some(p) = &placement {
        tracing::info!(
            "cloud-init user-data: {}",
            match p {
                CloudInitPlacement::PiGenStage =>
                    "stage2/04-cloud-init/files/user-data (ENABLE_CLOUD_INIT=1)".to_owned(),
                CloudInitPlacement::Generated { stage } => format!(
                    "{stage}/{} (NoCloud seed on the boot partition)",
                    substage::CLOUD_INIT_SUBSTAGE
                ),
            }
        );
    }
    for dir in [&input.pi_gen_dir, &input.output_dir] {
        if let Some(free) = free_gb(dir)
            && free < input.min_free_gb as f64
        {
            return Err(usage(format!(
                "Need at least {}GB free in {} (only {free:.2}GB available)",
                input.min_free_gb,
                dir.display()
            )));
        }
    }
    let mut outcome = Outcome {
        pi_gen_url: input.url.clone(),
        pi_gen_ref: input.git_ref.clone(),
        pi_gen_commit: commit,
        pi_gen_dir: input.pi_gen_dir.clone(),
        deploy_dir: input.output_dir.join("deploy"),
        build_log: input
            .pi_gen_dir
            .join("work")
            .join(&input.img_name)
            .join("build.log"),
        stages: input.stages.clone(),
        ..Outcome::default()
    };
    let order: Vec<Strategy> = match input.strategy {
        Strategy::Auto => vec![
            Strategy::Native,
            Strategy::Container,
            Strategy::DebianContainer,
        ],
        s => vec![s],
    };
    if input.install_deps {
        install_deps(input)?;
    }
    let mut last_err = None;
    for strat in order {
        let blocker = match strat {
            Strategy::Native => native_blocker(input),
            _ => docker_blocker(),
        };
        if let Some(why) = blocker {
            tracing::warn!("strategy {}: skipped: {why}", strat.name());
            outcome
                .attempts
                .push(format!("{}: skipped: {why}", strat.name()));
            if input.strategy != Strategy::Auto {
                return Err(usage(why));
            }
            continue;
        }
        if input.dry_run {
            tracing::info!(
                "dry run: pi-gen would run with the {} strategy",
                strat.name()
            );
            outcome.strategy = strat.name().into();
            return Ok(outcome);
        }
        outcome.build_start = model::rfc3339(chrono::Utc::now());
        let result = match strat {
            Strategy::Native => run_native(gha, input),
            Strategy::Container => run_container(gha, input, placement.as_ref(), false),
            _ => run_container(gha, input, placement.as_ref(), true),
        };
        outcome.build_end = model::rfc3339(chrono::Utc::now());
        match result {
            Ok(()) => {
                outcome.strategy = strat.name().into();
                outcome
                    .attempts
                    .push(format!("{}: succeeded", strat.name()));
                return Ok(outcome);
            }
            Err(e) => {
                if e.downcast_ref::<crate::error::Interrupted>().is_some() {
                    return Err(e);
                }
                tracing::warn!("strategy {}: {e:#}", strat.name());
                outcome
                    .attempts
                    .push(format!("{}: failed: {e:#}", strat.name()));
                last_err = Some(e);
            }
        }
    }
    let err = last_err.unwrap_or_else(|| {
        anyhow::anyhow!(
            "no build strategy can run here:\n  {}",
            outcome.attempts.join("\n  ")
        )
    });
    let log_tail = tail(&outcome.build_log, 30);
    if !log_tail.is_empty() {
        gha.line(&format!(
            "last lines of {}:\n{log_tail}",
            outcome.build_log.display()
        ));
    }
    if let Some(dir) = &input.outage_dir {
        let path = write_outage(dir, input, &err)?;
        tracing::info!("outage record written to {}", path.display());
    }
    Err(err)
}

fn install_deps(input: &Input) -> anyhow::Result<()> {
    let missing = missing_depends(&input.pi_gen_dir);
    if missing.is_empty() {
        return Ok(());
    }
    let mut pkgs: Vec<String> = missing.into_iter().map(|(_, p)| p).collect();
    pkgs.sort();
    pkgs.dedup();
    let sudo = !rustix::process::geteuid().is_root();
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let mut c = if sudo {
            CmdSpec::new("sudo", "install pi-gen's build dependencies")
                .arg("-n")
                .arg("apt-get")
        } else {
            CmdSpec::new("apt-get", "install pi-gen's build dependencies")
        };
        for a in args {
            c = c.arg(*a);
        }
        c.env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map(|_| ())
    };
    run(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(pkgs.iter().map(String::as_str));
    run(&args)
}

fn run_native(gha: &Gha, input: &Input) -> anyhow::Result<()> {
    let mut cmd = if rustix::process::geteuid().is_root() {
        Command::new("bash")
    } else {
        let mut c = Command::new("sudo");
        c.arg("-n").arg("bash");
        c
    };
    cmd.arg("./build.sh").current_dir(&input.pi_gen_dir);
    if input.continue_build {
        cmd.env("CONTINUE", "1");
    }
    stream(gha, input, cmd, "pi-gen (native build.sh)")
}

fn run_container(
    gha: &Gha,
    input: &Input,
    placement: Option<&CloudInitPlacement>,
    debian: bool,
) -> anyhow::Result<()> {
    let checkout = strategy::path_str(&input.pi_gen_dir);
    if missing_binfmt(input.arm64).is_some() {
        // The build container emulates ARM through the host kernel's binfmt_misc.
        let mut install = Command::new("docker");
        install.args([
            "run",
            "--privileged",
            "--rm",
            "tonistiigi/binfmt",
            "--install",
            "arm64,arm",
        ]);
        stream(
            gha,
            input,
            install,
            "registration of ARM emulation (tonistiigi/binfmt)",
        )?;
    }
    let image = match (&input.container_image, debian) {
        (Some(i), false) => i.clone(),
        (None, false) => {
            let tag = format!("pi-gen:{}", input.git_ref.replace('/', "-"));
            let mut build = Command::new("docker");
            build.args(strategy::docker_build(&tag, &checkout));
            stream(gha, input, build, "docker build of the pi-gen image")?;
            tag
        }
        (_, true) => "debian:bookworm".into(),
    };
    let deploy = strategy::path_str(&input.output_dir.join("deploy"));
    let ud = input.user_data.as_ref().map(|p| strategy::path_str(p));
    let target = match placement {
        Some(CloudInitPlacement::PiGenStage) => {
            Some("stage2/04-cloud-init/files/user-data".to_owned())
        }
        Some(CloudInitPlacement::Generated { stage }) => Some(format!(
            "{stage}/{}/files/user-data",
            substage::CLOUD_INIT_SUBSTAGE
        )),
        None => None,
    };
    let mut env: Vec<(String, String)> = vec![
        ("IMG_NAME".into(), input.img_name.clone()),
        (
            "ENABLE_SSH".into(),
            input
                .settings
                .get("ENABLE_SSH")
                .cloned()
                .unwrap_or_else(|| "1".into()),
        ),
    ];
    for var in [
        "APT_MIRROR",
        "RASPBIAN_MIRROR",
        "APT_MIRROR_RASPBIAN",
        "APT_MIRROR_RASPBERRYPI",
        "DEBIAN_MIRROR",
        "APT_OPTS",
        "APT_PROXY",
    ] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            env.push((var.into(), v));
        }
    }
    let name = strategy::container_name(&input.img_name);
    let spec = ContainerSpec {
        image: &image,
        checkout: &checkout,
        deploy: &deploy,
        user_data: ud.as_deref(),
        user_data_target: target.as_deref(),
        env: &env,
        name: &name,
        continue_build: input.continue_build,
    };
    let args = if debian {
        let mut pkgs: Vec<String> = depends(&input.pi_gen_dir)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        pkgs.sort();
        pkgs.dedup();
        strategy::debian_run(&spec, &pkgs)
    } else {
        strategy::container_run(&spec)
    };
    let mut cmd = Command::new("docker");
    cmd.args(&args);
    // The container's deploy mount is the host's OUTPUT_DIR/deploy.
    let _ = std::fs::create_dir_all(&deploy);
    stream(
        gha,
        input,
        cmd,
        if debian {
            "pi-gen in debian:bookworm"
        } else {
            "pi-gen in its container"
        },
    )
}

pub fn main(gha: &Gha, args: Args) -> anyhow::Result<()> {
    crate::atomic::install_signal_handlers()?;
    let input = Input::from_args(args)?;
    let outcome = run(gha, &input)?;
    gha.publish(&outcome)
}
