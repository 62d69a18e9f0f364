//! `run-pi-gen`: check out pi-gen, configure it safely, run it natively or in a
//! container, and stream its log with one collapsible group per stage.
//!
//! The shape: [`Args`] → [`Input`] (validated, no I/O) → [`gather`] (every read: the
//! checkout, the user's files, the host) → [`plan`] (pure: every file to write, the
//! strategies in order with their command lines) → [`tree::apply`] → [`run`] (pi-gen
//! runs, is watched, and its result is checked) → [`Outcome`].

pub mod cloud_init;
pub mod config;
pub mod heredoc;
mod plan;
pub mod resume;
pub mod strategy;
pub mod stream;
pub mod substage;
pub mod tree;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::json;

pub use self::plan::{EXPORT_IMAGE, Plan, SKIP_IMAGES, StrategyPlan, plan};
use self::strategy::Strategy;
use self::stream::{Ended, Watch};
use self::substage::{CloudInitPlacement, OverlayEntry, OwnerRule};
use crate::config::{ImageArgs, PiGenArgs, PiGenSource};
use crate::error::usage;
use crate::gha::{Gha, StepReport, md_cell};
use crate::host::Known;
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
    /// Owner of what the overlay creates at or below PATH, e.g. `home/pi=1000:1000`
    /// (repeatable; default root:root)
    #[arg(long = "overlay-owner", value_name = "PATH=OWNER[:GROUP]")]
    pub overlay_owner: Vec<String>,
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
    #[arg(
        long = "build-timeout",
        visible_alias = "timeout",
        env = "BUILD_TIMEOUT"
    )]
    pub timeout: Option<u64>,
    /// Stop pi-gen when it prints nothing and uses no CPU for this many seconds (0: never)
    #[arg(long, env = "STALL_TIMEOUT", default_value_t = 900)]
    pub stall_timeout: u64,
    /// Free disk required, in GB
    #[arg(long, env = "REQUIRED_SPACE_GB", default_value_t = 30)]
    pub min_free_gb: u64,
    /// Build even though the kernel seems to lack what pi-gen's export needs (loop
    /// devices with MBR partition scanning, vfat): for hosts that provide them another way
    #[arg(long, env = "SKIP_KERNEL_CHECK", value_parser = clap::builder::BoolishValueParser::new())]
    pub skip_kernel_check: bool,
    /// Environment variables passed on to pi-gen (space-separated names; pi-gen gets a
    /// minimal environment otherwise)
    #[arg(long = "pass-env", env = "PI_GEN_PASS_ENV", value_name = "NAMES")]
    pub pass_env: Option<String>,
    /// Install missing build dependencies with apt-get
    #[arg(long)]
    pub install_deps: bool,
    /// Resume a failed build: stages that completed unchanged in an earlier run are skipped
    #[arg(long = "continue")]
    pub continue_build: bool,
    /// Write an outage record (sugarkube outages schema) here when the build fails
    #[arg(long, env = "OUTAGE_DIR")]
    pub outage_dir: Option<PathBuf>,
    /// Check everything, write the config and sub-stages, but do not run pi-gen
    #[arg(long)]
    pub dry_run: bool,
}

/// Settings `run-pi-gen` owns: they come from its own validated flags.
const OWN_SETTINGS: &[(&str, &str)] = &[
    ("IMG_NAME", "--img-name / IMG_NAME"),
    ("RELEASE", "--pi-gen-branch / PI_GEN_BRANCH"),
    ("DEPLOY_DIR", "--output-dir / OUTPUT_DIR"),
    ("STAGE_LIST", "--pi-gen-stages / PI_GEN_STAGES"),
    ("TARGET_HOSTNAME", "--hostname / TARGET_HOSTNAME"),
    ("ENABLE_SSH", "--enable-ssh / ENABLE_SSH"),
    ("ENABLE_CLOUD_INIT", "--user-data / --no-user-data"),
    (
        "CLEAN",
        "(always 1: stages are built from scratch; --continue skips unchanged ones)",
    ),
    ("WORK_DIR", "(pi-gen's default, which --continue relies on)"),
    ("BASE_DIR", "(pi-gen's own directory)"),
    ("LOG_FILE", "(pi-gen's default)"),
    ("SCRIPT_DIR", "(pi-gen's own scripts)"),
    ("EXPORT_CONFIG_DIR", "(the checkout's export-image)"),
];

/// Environment variables that always reach pi-gen (and nothing else, unless
/// `--pass-env` names it): a token in the runner's environment stays out of the build.
const BASE_ENV: &[&str] = &[
    "PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "TERM", "TZ", "TMPDIR", "USER",
];

#[derive(Debug, Clone)]
pub struct Input {
    pub img_name: String,
    pub output_dir: PathBuf,
    pub pi_gen_dir: PathBuf,
    pub source: PiGenSource,
    pub user_data: Option<PathBuf>,
    pub skip_schema: bool,
    pub overlay: Option<PathBuf>,
    pub owners: Vec<OwnerRule>,
    pub packages: Vec<String>,
    pub chroot_script: Option<PathBuf>,
    pub settings: BTreeMap<String, String>,
    pub strategy: Strategy,
    pub container_image: Option<String>,
    pub timeout: Option<Duration>,
    pub stall: Option<Duration>,
    pub min_free_gb: u64,
    pub skip_kernel_check: bool,
    pub pass_env: Vec<String>,
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
        let source = args.pi_gen.resolve()?;
        if !source.arm64 && args.allow_armhf.trim() != "1" {
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
        let owners = args
            .overlay_owner
            .iter()
            .map(|o| substage::parse_owner_rule(o))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if !owners.is_empty() && args.overlay.is_none() {
            return Err(usage("--overlay-owner needs --overlay"));
        }
        let output_dir = absolute(&paths.dir)?;
        let mut settings = BTreeMap::new();
        for s in &args.settings {
            // Not echoed: a mistyped --setting may hold a password.
            let (k, v) = s.split_once('=').ok_or_else(|| {
                usage("a --setting is not KEY=VALUE (it has no `=`): write it as KEY=VALUE")
            })?;
            config::check(k, v)?;
            if let Some((_, flag)) = OWN_SETTINGS.iter().find(|(n, _)| *n == k) {
                return Err(usage(format!(
                    "--setting {k}=… is not allowed: run-pi-gen owns {k} ({}) and checks it",
                    flag.trim_matches(['(', ')'])
                )));
            }
            settings.insert(k.to_owned(), v.to_owned());
        }
        settings.insert("IMG_NAME".to_owned(), args.image.img_name.clone());
        settings.insert("RELEASE".to_owned(), source.branch.clone());
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
                && !h.starts_with('-')
                && !h.ends_with('-');
            if !ok {
                return Err(usage(format!(
                    "hostname `{}` is not a valid host name (letters, digits, `-`)",
                    h.escape_debug()
                )));
            }
            settings.insert("TARGET_HOSTNAME".to_owned(), h);
        }
        // Settings with a grammar of their own, checked by it.
        if let Some(proxy) = settings.get("APT_PROXY") {
            crate::mirror_url::normalize_url("APT_PROXY", proxy)?;
        }
        for name in ["IMG_FILENAME", "ARCHIVE_FILENAME", "IMG_SUFFIX", "IMG_DATE"] {
            // Parts of the image's file names in WORK_DIR and DEPLOY_DIR.
            if let Some(v) = settings.get(name)
                && (v.is_empty()
                    || v.starts_with('.')
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            {
                return Err(usage(format!(
                    "{name} `{}` is not part of a safe file name (letters, digits, `.`, `_`, `-`, not starting with `.`)",
                    v.escape_debug()
                )));
            }
        }
        if let Some(user) = settings.get("FIRST_USER_NAME")
            && !(user.starts_with(|c: char| c.is_ascii_lowercase())
                && user
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'))
        {
            // pi-gen's own rule (build.sh), checked before any work instead of after a clone.
            return Err(usage(format!(
                "FIRST_USER_NAME `{}` is not a valid user name: it must match ^[a-z][-a-z0-9_]*$",
                user.escape_debug()
            )));
        }
        let pass_env: Vec<String> = args
            .pass_env
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        for name in &pass_env {
            check_pass_env(name)?;
        }
        let pi_gen_dir = absolute(args.pi_gen_dir.as_deref().unwrap_or(Path::new("pi-gen")))?;
        if pi_gen_dir
            .to_string_lossy()
            .chars()
            .any(char::is_whitespace)
        {
            // pi-gen's build.sh refuses it too, but only after the clone.
            return Err(usage(format!(
                "the pi-gen directory `{}` has a space in its path, which pi-gen (debootstrap) cannot build in: choose another --pi-gen-dir",
                pi_gen_dir.display()
            )));
        }
        Ok(Self {
            img_name: args.image.img_name,
            output_dir,
            pi_gen_dir,
            source,
            user_data: if args.no_user_data {
                None
            } else {
                Some(absolute(&args.user_data)?)
            },
            skip_schema: args.skip_cloud_init_validation,
            overlay: args.overlay.map(|o| absolute(&o)).transpose()?,
            owners,
            packages,
            chroot_script: args.chroot_script.map(|c| absolute(&c)).transpose()?,
            settings,
            strategy: args.strategy,
            container_image: args.container_image,
            timeout: args.timeout.map(Duration::from_secs),
            stall: (args.stall_timeout > 0).then(|| Duration::from_secs(args.stall_timeout)),
            min_free_gb: args.min_free_gb,
            skip_kernel_check: args.skip_kernel_check,
            pass_env,
            install_deps: args.install_deps,
            continue_build: args.continue_build,
            outage_dir: args.outage_dir,
            dry_run: args.dry_run,
        })
    }

    fn work_dir(&self) -> PathBuf {
        self.pi_gen_dir.join("work").join(&self.img_name)
    }
}

/// `--pass-env` names: shell variable names; never a credential, never what changes how
/// a program or shell starts, never a setting run-pi-gen owns (a setting pi-gen reads
/// from the environment is checked like `--setting` in [`plan`]).
fn check_pass_env(name: &str) -> anyhow::Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64;
    if !valid {
        // The "name" may be a NAME=secret typed by mistake: do not print it.
        return Err(usage(
            "a --pass-env (PI_GEN_PASS_ENV) entry is not an environment variable name: give names only (letters, digits, `_`), separated by spaces",
        ));
    }
    let upper = name.to_ascii_uppercase();
    if heredoc::is_secret(&upper)
        || ["AUTH", "CREDENTIAL", "COOKIE", "SESSION", "PASSPHRASE"]
            .iter()
            .any(|w| upper.contains(w))
        || upper.starts_with("ACTIONS_")
        || upper.starts_with("GITHUB_")
        || upper.starts_with("RUNNER_")
    {
        return Err(usage(format!(
            "--pass-env {name}: credentials and the runner's variables are never passed to pi-gen (it runs third-party scripts as root); give pi-gen what it needs as a --setting"
        )));
    }
    let startup = upper.starts_with("LD_")
        || upper.starts_with("BASH_FUNC_")
        || [
            "BASH_ENV",
            "ENV",
            "SHELLOPTS",
            "BASHOPTS",
            "PS4",
            "IFS",
            "CDPATH",
            "GLOBIGNORE",
            "PROMPT_COMMAND",
            "PYTHONPATH",
            "PYTHONSTARTUP",
            "PERL5LIB",
            "PERL5OPT",
        ]
        .contains(&upper.as_str());
    if startup {
        return Err(usage(format!(
            "--pass-env {name}: it changes how every program or shell of the build starts; it is not passed"
        )));
    }
    if let Some((_, flag)) = OWN_SETTINGS.iter().find(|(n, _)| *n == name) {
        return Err(usage(format!(
            "--pass-env {name}: run-pi-gen owns {name} ({}) and checks it",
            flag.trim_matches(['(', ')'])
        )));
    }
    Ok(())
}

/// Everything `run-pi-gen` reads before it decides anything.
#[derive(Debug, Clone)]
pub struct Gathered {
    pub checkout: crate::checkout::Checkout,
    /// Stage directories of the checkout (`stage0`, …).
    pub stage_dirs: Vec<String>,
    pub has_pi_gen_cloud_init: bool,
    /// Which of the requested stages ship an `EXPORT_IMAGE` of pi-gen's own.
    pub own_export: Vec<String>,
    /// Settings some script of the checkout reads.
    pub checkout_text: String,
    pub expansions: Vec<heredoc::Expansion>,
    pub user_data: Option<Vec<u8>>,
    pub chroot_script: Option<Vec<u8>>,
    pub overlay: Vec<OverlayEntry>,
    pub build_sh: BuildSh,
    pub ledger: tree::Ledger,
    pub host: HostFacts,
    /// Values of the container strategies' pass-through variables.
    pub container_env: Vec<(String, String)>,
    /// What pi-gen's environment is made from.
    pub pi_gen_env: Vec<(String, String)>,
    /// The docker client's own settings (`DOCKER_*`, `XDG_*`, the base variables).
    pub docker_env: Vec<(String, String)>,
}

/// How `build.sh` can be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildSh {
    /// Executable, with a `#!` line: run by its shebang (pi-gen's `#!/bin/bash -e`).
    Runnable,
    NotExecutable,
    NoShebang,
}

/// What this machine can do, for the strategies and the preflight.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub linux: bool,
    pub root: bool,
    pub sudo: bool,
    pub missing_depends: Vec<(String, String)>,
    pub depends: Vec<(String, String)>,
    /// pi-gen's export makes its own bmap only when bmaptool is installed.
    pub bmaptool: bool,
    pub missing_binfmt: Option<&'static str>,
    pub docker: Option<String>,
    pub vfat: Option<Known>,
    pub loop_partitions: Option<Known>,
    pub free_gb: Vec<(PathBuf, f64)>,
}

/// Reads everything: the checkout, the user's files (checked), the host.
pub fn gather(gha: &Gha, input: &Input) -> anyhow::Result<Gathered> {
    let user_data = match &input.user_data {
        Some(p) => Some(read_user_data(p, input.skip_schema)?),
        None => None,
    };
    let chroot_script = match &input.chroot_script {
        Some(p) => Some(read_chroot_script(p)?),
        None => None,
    };
    let overlay = match &input.overlay {
        Some(dir) => tree::walk_overlay(dir)?,
        None => Vec::new(),
    };
    let checkout = crate::checkout::checkout_pi_gen(
        gha,
        &input.pi_gen_dir,
        &input.source.url,
        &input.source.git_ref,
        input.source.ref_explicit,
    )?;
    let dir = &input.pi_gen_dir;
    let mut stage_dirs: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.path().is_dir() && e.file_name().to_string_lossy().starts_with("stage"))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    stage_dirs.sort();
    // A ledger that came with the checkout (committed to a fork) is not ours to follow.
    if dir.join(".git").exists()
        && dir.join(tree::STATE_DIR).exists()
        && crate::checkout::git(dir, "see whether the checkout tracks pi-image's state")
            .arg("ls-files")
            .arg("--")
            .arg(tree::STATE_DIR)
            .output()
            .is_ok_and(|o| !o.is_empty())
    {
        return Err(usage(format!(
            "the pi-gen checkout `{}` ships its own `{}`: that is pi-image's record of what it wrote, never part of a repository; remove it from the repository",
            dir.display(),
            tree::STATE_DIR
        )));
    }
    let ledger = tree::Ledger::read(dir)?;
    let own_export = input
        .source
        .stages
        .iter()
        .filter(|s| {
            let p = Path::new(s.as_str()).join("EXPORT_IMAGE");
            dir.join(&p).is_file() && !ledger.created(&p)
        })
        .cloned()
        .collect();
    let (checkout_text, expansions) = scan_checkout(dir);
    let build_sh = build_sh_state(&dir.join("build.sh"));
    let host = host_facts(input);
    let container_env = [
        "APT_MIRROR",
        "RASPBIAN_MIRROR",
        "APT_MIRROR_RASPBIAN",
        "APT_MIRROR_RASPBERRYPI",
        "DEBIAN_MIRROR",
        "APT_OPTS",
        "APT_PROXY",
    ]
    .iter()
    .filter_map(|k| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| ((*k).to_owned(), v))
    })
    .collect();
    let pi_gen_env = BASE_ENV
        .iter()
        .map(|s| (*s).to_owned())
        .chain(input.pass_env.iter().cloned())
        .filter_map(|k| std::env::var(&k).ok().map(|v| (k, v)))
        .collect();
    let docker_env = std::env::vars()
        .filter(|(k, _)| {
            BASE_ENV.contains(&k.as_str()) || k.starts_with("DOCKER_") || k.starts_with("XDG_")
        })
        .collect();
    Ok(Gathered {
        docker_env,
        checkout,
        stage_dirs,
        has_pi_gen_cloud_init: dir.join("stage2/04-cloud-init").is_dir(),
        own_export,
        checkout_text,
        expansions,
        user_data,
        chroot_script,
        overlay,
        build_sh,
        ledger,
        host,
        container_env,
        pi_gen_env,
    })
}

/// The most a user file (user-data, a chroot script) may hold.
const USER_FILE_MAX: u64 = 16 << 20;

fn read_user_file(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    crate::input::read(what, path, None, USER_FILE_MAX)
}

fn read_user_data(path: &Path, skip_schema: bool) -> anyhow::Result<Vec<u8>> {
    let bytes = read_user_file(path, "Cloud-init file").map_err(|e| {
        if e.to_string().contains("No such file") {
            usage(format!("Cloud-init file not found: {}", path.display()))
        } else {
            e
        }
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        usage(format!(
            "Cloud-init file {} is not UTF-8 text",
            path.display()
        ))
    })?;
    substage::check_user_data(path, text)?;
    if !skip_schema {
        if crate::process::find_program("cloud-init").is_none() {
            tracing::info!(
                "`cloud-init` is not installed: user-data checked for header and YAML only"
            );
        } else {
            check_what_was_read(
                &bytes,
                CmdSpec::new(
                    "cloud-init",
                    "validate the user-data with `cloud-init schema`",
                )
                .arg("schema")
                .arg("--config-file"),
                path,
            )
            .map_err(|e| {
                usage(format!(
                    "Cloud-init file {} fails `cloud-init schema`: {e:#}",
                    path.display()
                ))
            })?;
        }
    }
    Ok(bytes)
}

fn read_chroot_script(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = read_user_file(path, "chroot script")?;
    check_what_was_read(
        &bytes,
        CmdSpec::new("bash", "check the chroot script with `bash -n`").arg("-n"),
        path,
    )
    .map_err(|e| {
        usage(format!(
            "chroot script `{}` is not valid bash: {e:#}",
            path.display()
        ))
    })?;
    Ok(bytes)
}

/// Runs a checker on the bytes that were read (and will be built in), not on the user's
/// file, which may have changed since: `checker` gets a private copy as its last argument.
/// Its messages name `user`'s file, not the copy.
fn check_what_was_read(bytes: &[u8], checker: CmdSpec, user: &Path) -> anyhow::Result<()> {
    let tmp = tempfile::NamedTempFile::new()?;
    std::fs::write(tmp.path(), bytes)?;
    checker.arg(tmp.path()).output().map(drop).map_err(|e| {
        crate::error::naming_input(
            e,
            &tmp.path().display().to_string(),
            &user.display().to_string(),
        )
    })
}

/// The text of every script of the checkout (to see which settings it reads), and the
/// settings its unquoted heredocs paste into chroot scripts.
fn scan_checkout(dir: &Path) -> (String, Vec<heredoc::Expansion>) {
    let mut text = String::new();
    let mut expansions = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .max_depth(4)
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        let p = entry.path();
        let rel = crate::config::posix_relative(dir, p);
        let generated = rel
            .split('/')
            .nth(1)
            .is_some_and(|c| c == substage::SUBSTAGE || c == substage::CLOUD_INIT_SUBSTAGE);
        if rel
            .split('/')
            .any(|c| matches!(c, ".git" | "work" | "deploy" | ".pi-image"))
            || !entry.file_type().is_file()
            || generated
        {
            continue;
        }
        let name = entry.file_name().to_string_lossy();
        if name.ends_with(".md") || name == "config" {
            continue;
        }
        if let Ok(t) = std::fs::read_to_string(p) {
            if name.ends_with(".sh") || rel == "scripts/common" || rel == "build.sh" {
                expansions.extend(heredoc::scan(&rel, &t));
                expansions.extend(heredoc::scan_sed(&rel, &t));
            }
            text.push_str(&t);
            text.push('\n');
        }
    }
    (text, expansions)
}

fn build_sh_state(path: &Path) -> BuildSh {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
    let shebang = std::fs::read(path).is_ok_and(|b| b.starts_with(b"#!"));
    match (executable, shebang) {
        (_, false) => BuildSh::NoShebang,
        (false, true) => BuildSh::NotExecutable,
        (true, true) => BuildSh::Runnable,
    }
}

fn host_facts(input: &Input) -> HostFacts {
    let depends = crate::host::pi_gen_depends(&input.pi_gen_dir);
    let wants_docker = !matches!(input.strategy, Strategy::Native);
    let root = rustix::process::geteuid().is_root();
    let check_kernel = !input.skip_kernel_check && cfg!(target_os = "linux");
    HostFacts {
        linux: cfg!(target_os = "linux"),
        root,
        sudo: !root && crate::process::find_program("sudo").is_some(),
        missing_depends: depends
            .iter()
            .filter(|(t, _)| crate::process::find_program(t).is_none())
            .cloned()
            .collect(),
        depends,
        bmaptool: crate::process::find_program("bmaptool").is_some(),
        missing_binfmt: crate::host::missing_binfmt(input.source.arm64),
        docker: if wants_docker {
            crate::host::docker_blocker()
        } else {
            None
        },
        vfat: check_kernel.then(crate::host::vfat),
        loop_partitions: check_kernel.then(crate::host::loop_partitions),
        free_gb: [&input.pi_gen_dir, &input.output_dir]
            .into_iter()
            // The output directory is made after planning: judge the disk it will be on.
            .filter_map(|d| {
                let existing = d.ancestors().find(|a| a.exists())?;
                crate::host::free_gb(existing).map(|f| (d.clone(), f))
            })
            .collect(),
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
    pub skipped_stages: Vec<String>,
    pub attempts: Vec<String>,
}

/// run-pi-gen's step outputs.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Outputs {
    /// The strategy that built the image
    pub strategy: String,
    /// The pi-gen repository
    pub pi_gen_url: String,
    /// The pi-gen ref built
    pub pi_gen_ref: String,
    /// The pi-gen commit built
    pub pi_gen_commit: String,
    /// The pi-gen checkout
    pub pi_gen_dir: String,
    /// Where pi-gen exported the image
    pub deploy_dir: String,
    /// pi-gen's build.log
    pub build_log: String,
    /// When the build started (RFC 3339)
    pub build_start: String,
    /// When the build ended (RFC 3339)
    pub build_end: String,
    /// The stages built, space-separated
    pub stages: String,
}

impl StepReport for Outcome {
    type Outputs = Outputs;
    fn outputs(&self) -> Outputs {
        Outputs {
            strategy: self.strategy.clone(),
            pi_gen_url: self.pi_gen_url.clone(),
            pi_gen_ref: self.pi_gen_ref.clone(),
            pi_gen_commit: self.pi_gen_commit.clone(),
            pi_gen_dir: self.pi_gen_dir.display().to_string(),
            deploy_dir: self.deploy_dir.display().to_string(),
            build_log: self.build_log.display().to_string(),
            build_start: self.build_start.clone(),
            build_end: self.build_end.clone(),
            stages: self.stages.join(" "),
        }
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
        if !self.skipped_stages.is_empty() {
            s.push_str(&format!(
                "\nResumed: {} completed in an earlier run.\n",
                md_cell(&self.skipped_stages.join(" "))
            ));
        }
        for a in &self.attempts {
            s.push_str(&format!("\n- {}", md_cell(a)));
        }
        s.push_str("\n\n");
        s
    }
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
        "references": [format!("pi-gen {} @ {}", input.source.url, input.source.git_ref)],
    });
    let path = dir.join(format!("{id}.json"));
    crate::atomic::write(&path, to_canonical_json(&record)?.as_bytes())?;
    Ok(path)
}

/// Checks that a build pi-gen reported as finished really made the image: the log of
/// this run ends with `Build finished`, every stage and the export ran to its end, and
/// the deploy directory holds an image for IMG_NAME newer than the build's start.
fn verify_build(input: &Input, log: &str, started: std::time::SystemTime) -> anyhow::Result<()> {
    let t = crate::buildlog::parse(log);
    let mut problems = Vec::new();
    match t.result.as_deref() {
        Some("finished") => {}
        Some(other) => problems.push(format!("pi-gen logged `Build {other}`")),
        None => problems.push("pi-gen never logged `Build finished`".to_owned()),
    }
    let ended: Vec<String> = t.stages().iter().map(|s| s.name.clone()).collect();
    for s in input
        .source
        .stages
        .iter()
        .map(String::as_str)
        .chain(["export-image"])
    {
        if !ended.iter().any(|e| e == s) {
            problems.push(format!("{s} did not run to its end"));
        }
    }
    for i in t
        .incomplete
        .iter()
        .filter(|i| i.name != crate::buildlog::WHOLE_BUILD)
    {
        problems.push(format!("{} began and never ended", i.name));
    }
    let deploy = input.output_dir.join("deploy");
    let fresh = walkdir::WalkDir::new(&deploy)
        .max_depth(3)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .any(|e| {
            let n = e.file_name().to_string_lossy();
            let image = [".img", ".img.xz", ".img.gz", ".zip"]
                .iter()
                .any(|x| n.ends_with(x));
            image
                && n.contains(&format!("-{}", input.img_name))
                && e.metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .is_some_and(|m| m >= started)
        });
    if !fresh {
        problems.push(format!(
            "no image for {} was written to {} by this build",
            input.img_name,
            deploy.display()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "pi-gen exited with status 0, but the build is not complete: {}",
            problems.join("; ")
        )
    }
}

/// Runs one strategy's commands, stopping at the first that fails; returns how the
/// last one ended, what it was, and the pi-gen log lines it printed.
fn execute(gha: &Gha, input: &Input, sp: &StrategyPlan) -> anyhow::Result<(Ended, String, String)> {
    let timeline = input
        .output_dir
        .join(format!("{}.stages.json", input.img_name));
    let base = input.pi_gen_dir.display().to_string();
    let container_base = "/pi-gen".to_owned();
    let n = sp.commands.len();
    for (i, argv) in sp.commands.iter().enumerate() {
        let is_build = i + 1 == n;
        let what = match (sp.strategy, is_build) {
            (Strategy::Native, _) => "pi-gen (native ./build.sh)".to_owned(),
            (Strategy::DebianContainer, true) => "pi-gen in debian:bookworm".to_owned(),
            (_, true) => "pi-gen in its container".to_owned(),
            (_, false) if argv.get(1).map(String::as_str) == Some("build") => {
                "docker build of the pi-gen image".to_owned()
            }
            _ => "registration of ARM emulation (tonistiigi/binfmt)".to_owned(),
        };
        let watch = Watch {
            what: &what,
            base: if sp.strategy == Strategy::Native {
                &base
            } else {
                &container_base
            },
            timeline: is_build.then_some(timeline.as_path()),
            timeout: input.timeout,
            stall: input.stall,
        };
        let mut cmd = CmdSpec::new(&argv[0], &format!("run {what}"))
            .args(&argv[1..])
            .env_clear();
        for (k, v) in &sp.env {
            cmd = cmd.env(k, v);
        }
        if sp.strategy == Strategy::Native {
            cmd = cmd.cwd(&input.pi_gen_dir);
        }
        let out = stream::stream(gha, cmd, &watch)?;
        if is_build || out.ended != Ended::Success {
            return Ok((out.ended, what, out.log));
        }
    }
    bail!("strategy {} has no command to run", sp.strategy.name())
}

/// Mounts pi-gen left under its work directory after it was stopped (its EXIT trap did
/// not get to run), deepest first.
fn unmount_leftovers(input: &Input) {
    for m in stream::mounts_under(&input.pi_gen_dir.join("work")) {
        match CmdSpec::new("umount", "unmount what a stopped pi-gen left mounted")
            .arg("-l")
            .arg(&m)
            .output()
        {
            Ok(_) => tracing::info!("unmounted {} left by the stopped build", m.display()),
            Err(e) => tracing::warn!("{e:#}"),
        }
    }
}

pub fn run(gha: &Gha, input: &Input) -> anyhow::Result<Outcome> {
    for (k, v) in &input.settings {
        if heredoc::is_secret(k) {
            gha.mask(v);
        }
    }
    let gathered = gather(gha, input)?;
    let plan = plan(input, &gathered)?;
    if gha.is_plan_only() {
        // The config quotes every setting: a secret one is shown as `***`, never its value
        // (a mask would not match its quoted form).
        let mut shown = plan.clone();
        for (k, v) in input.settings.iter().filter(|(k, _)| heredoc::is_secret(k)) {
            shown.config = shown.config.replace(
                &format!("{k}={}\n", config::shell_quote(v)),
                &format!("{k}='***'\n"),
            );
        }
        gha.print_plan(&shown)?;
        return Ok(Outcome::default());
    }
    for w in &plan.warnings {
        tracing::warn!("{w}");
    }
    std::fs::create_dir_all(input.output_dir.join("deploy"))
        .with_context(|| format!("cannot create `{}`", input.output_dir.display()))?;
    for argv in &plan.install {
        install_deps(argv)?;
    }
    let applied = tree::apply(&input.pi_gen_dir, &gathered.ledger, &plan)?;
    let resume = resume::decide(input, &applied.fingerprints)?;
    tree::write_resume_markers(&input.pi_gen_dir, &applied, &resume.skip)?;
    tracing::info!(
        "pi-gen {} at {}; config and {} generated file(s) written",
        gathered.checkout.git_ref,
        gathered.checkout.commit,
        plan.files.len()
    );
    if let Some(p) = &plan.placement {
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
    let mut outcome = Outcome {
        pi_gen_url: input.source.url.clone(),
        pi_gen_ref: gathered.checkout.git_ref.clone(),
        pi_gen_commit: gathered.checkout.commit.clone(),
        pi_gen_dir: input.pi_gen_dir.clone(),
        deploy_dir: input.output_dir.join("deploy"),
        build_log: input.work_dir().join("build.log"),
        stages: input.source.stages.clone(),
        skipped_stages: resume.skip.clone(),
        ..Outcome::default()
    };
    let mut last_err = None;
    for sp in &plan.strategies {
        let name = sp.strategy.name();
        if let Some(why) = &sp.blocker {
            tracing::warn!("strategy {name}: skipped: {why}");
            outcome.attempts.push(format!("{name}: skipped: {why}"));
            if input.strategy != Strategy::Auto {
                return Err(usage(why.clone()));
            }
            continue;
        }
        if input.dry_run {
            tracing::info!("dry run: pi-gen would run with the {name} strategy");
            outcome.strategy = name.into();
            return Ok(outcome);
        }
        let started = std::time::SystemTime::now();
        outcome.build_start = model::rfc3339(chrono::Utc::now());
        let result = execute(gha, input, sp);
        outcome.build_end = model::rfc3339(chrono::Utc::now());
        if sp.strategy != Strategy::Native
            && let Ok((_, _, log)) = &result
            && !log.is_empty()
        {
            // A container's work directory is a Docker volume: keep this run's log where
            // collect-artifacts looks (deploy/build.log, as pi-gen's build-docker.sh does).
            outcome.build_log = outcome.deploy_dir.join("build.log");
            crate::atomic::write(&outcome.build_log, log.as_bytes())?;
        }
        let result = result.and_then(|(ended, what, log)| match ended {
            Ended::Success => {
                resume::record(input, &applied.fingerprints, &resume, &log)?;
                verify_build(input, &log, started)
            }
            Ended::Failed(code) => {
                resume::record(input, &applied.fingerprints, &resume, &log)?;
                bail!("{what} failed with {code}")
            }
            Ended::TimedOut(limit) => {
                unmount_leftovers(input);
                bail!(
                    "pi-gen did not finish within {}s (--timeout); its whole process tree was stopped",
                    limit.as_secs()
                )
            }
            Ended::Stalled { after, step } => {
                unmount_leftovers(input);
                bail!(
                    "pi-gen stalled: nothing was printed and no CPU was used for {}s{}; its whole process tree was stopped (raise --stall-timeout / STALL_TIMEOUT if a step is legitimately that quiet)",
                    after.as_secs(),
                    step.map(|s| format!(" while running {s}")).unwrap_or_default()
                )
            }
        });
        match result {
            Ok(()) => {
                outcome.strategy = name.into();
                outcome.attempts.push(format!("{name}: succeeded"));
                return Ok(outcome);
            }
            Err(e) => {
                if e.downcast_ref::<crate::error::Interrupted>().is_some() {
                    unmount_leftovers(input);
                    return Err(e);
                }
                tracing::warn!("strategy {name}: {e:#}");
                outcome.attempts.push(format!("{name}: failed: {e:#}"));
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
    let log_tail = crate::buildlog::tail_lines(&outcome.build_log, 30);
    if !log_tail.is_empty() {
        gha.line(&format!("last lines of {}:", outcome.build_log.display()));
        gha.block(&log_tail);
    }
    if let Some(dir) = &input.outage_dir {
        let path = write_outage(dir, input, &err)?;
        tracing::info!("outage record written to {}", path.display());
    }
    Err(err)
}

/// Runs one planned apt-get command of `--install-deps`.
fn install_deps(argv: &[String]) -> anyhow::Result<()> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    CmdSpec::new(program, "install pi-gen's build dependencies")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map(|_| ())
}

pub fn main(gha: &Gha, args: Args) -> anyhow::Result<()> {
    crate::atomic::install_signal_handlers()?;
    let input = Input::from_args(args)?;
    let outcome = run(gha, &input)?;
    gha.publish(&outcome)
}
