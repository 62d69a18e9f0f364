//! `smoke`: boot the image in QEMU and prove it reaches a working first boot.
//!
//! The image is never modified: it is copied (decompressed, sparse) into a scratch
//! directory, the kernel, device tree, initramfs and command line are read from the
//! FAT boot partition without mounting, files can be injected into the ext4 root,
//! and the copy is booted with the serial console watched for markers. Pi OS reboots
//! once on first boot (root filesystem resize); that reboot is followed, not fatal.

pub mod bootfs;
mod collect;
pub mod disk;
pub mod firmware;
mod plan;
pub mod qemu;
pub mod rootfs;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use regex::Regex;
use serde_json::json;

use self::disk::Partition;
use self::firmware::FirmwareConfig;
pub use self::plan::{Plan, plan};
use self::qemu::{Arch, Ending, Machine, Seen, Watch};
use self::rootfs::Injection;
use crate::atomic;
use crate::config::ImageArgs;
use crate::error::usage;
use crate::gha::{Gha, StepReport, md_cell};
use crate::model::to_canonical_json;
use crate::process::CmdSpec;

/// Success markers: the seed's first-boot service lines, a login prompt, cloud-init's end.
pub const DEFAULT_MARKERS: &[&str] = &[
    r"\[first-boot\] first-boot already completed successfully",
    r"\[first-boot\] appending verifier report",
    r"\[first-boot\] summary\.json",
    r"\S+ login: ?$",
    r"Cloud-init v\. \S+ finished",
];

pub const DEFAULT_FAILURE_MARKERS: &[&str] = &[
    "Kernel panic",
    "emergency mode",
    "Give root password for maintenance",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MachineChoice {
    /// raspi3b for Pi images, else virt (the reason is logged)
    Auto,
    /// arm64 images
    Raspi3b,
    /// armhf images
    Raspi2b,
    Virt,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub image: ImageArgs,
    /// Image to boot, .img or .img.xz (never modified) [default: OUTPUT_DIR/IMG_NAME.img.xz]
    #[arg(long = "image", env = "SMOKE_IMAGE", value_name = "IMG")]
    pub path: Option<PathBuf>,
    /// Emulated machine
    #[arg(long, env = "SMOKE_MACHINE", value_enum, default_value = "auto")]
    pub machine: MachineChoice,
    /// Seconds to wait for a success marker (all boots together)
    #[arg(
        long = "smoke-timeout",
        visible_alias = "timeout",
        env = "SMOKE_TIMEOUT",
        default_value_t = 480
    )]
    pub timeout: u64,
    /// Regex that means the boot succeeded (repeatable) [default: the first-boot markers, a login prompt, cloud-init finished]
    #[arg(long = "marker", value_name = "REGEX")]
    pub markers: Vec<String>,
    /// Regex that means the boot failed (repeatable) [default: Kernel panic, emergency mode, Give root password for maintenance]
    #[arg(long = "failure-marker", value_name = "REGEX")]
    pub failure_markers: Vec<String>,
    /// Where serial.log, summary.json and the result files go
    #[arg(
        long = "smoke-dir",
        visible_alias = "artifacts-dir",
        env = "SMOKE_DIR",
        default_value = "smoke"
    )]
    pub artifacts_dir: PathBuf,
    /// Put a host file into the root filesystem before boot (repeatable), mode in octal
    #[arg(long = "inject", value_name = "HOST_PATH:GUEST_PATH[:MODE]")]
    pub inject: Vec<String>,
    /// Copy a guest file or directory out after the boot (repeatable)
    #[arg(long = "collect", value_name = "GUEST_PATH")]
    pub collect: Vec<String>,
    /// Guest reboots to follow before giving up (Pi OS reboots once to resize)
    #[arg(long, default_value_t = 1)]
    pub max_reboots: u32,
    /// Seconds the guest may take to shut down after a success marker
    #[arg(long, default_value_t = 20)]
    pub shutdown_grace: u64,
    /// Extra kernel command-line arguments
    #[arg(long, value_name = "ARGS")]
    pub append: Option<String>,
    /// QEMU binary
    #[arg(
        long,
        env = "QEMU_SYSTEM_AARCH64",
        default_value = "qemu-system-aarch64"
    )]
    pub qemu: String,
    /// QEMU binary for armhf images
    #[arg(long, env = "QEMU_SYSTEM_ARM", default_value = "qemu-system-arm")]
    pub qemu_arm: String,
}

/// Validated input.
#[derive(Debug, Clone)]
pub struct Input {
    pub image: PathBuf,
    pub machine: MachineChoice,
    pub timeout: Duration,
    pub success: Vec<Regex>,
    pub failure: Vec<Regex>,
    pub artifacts_dir: PathBuf,
    pub inject: Vec<Injection>,
    pub collect: Vec<String>,
    pub max_reboots: u32,
    pub grace: Duration,
    pub append: Vec<String>,
    pub qemu: String,
    pub qemu_arm: String,
}

fn regexes(given: &[String], defaults: &[&str], flag: &str) -> anyhow::Result<Vec<Regex>> {
    let list: Vec<String> = if given.is_empty() {
        defaults.iter().map(|s| (*s).to_owned()).collect()
    } else {
        given.to_vec()
    };
    list.iter()
        .map(|r| {
            Regex::new(r).map_err(|e| usage(format!("{flag} `{r}` is not a valid regex: {e}")))
        })
        .collect()
}

impl Input {
    pub fn from_args(args: Args) -> anyhow::Result<Self> {
        let image = match args.path {
            Some(p) => p,
            None => args.image.artifact_paths()?.image,
        };
        if std::fs::symlink_metadata(&image).is_err() {
            return Err(usage(format!(
                "image `{}` does not exist (pass --image IMG.img.xz or run collect-artifacts first)",
                image.display()
            )));
        }
        // A regular file, through no symlink out of its directory: never a FIFO that
        // would hang the step.
        crate::input::open("--image", &image, None)?;
        if args.timeout == 0 {
            return Err(usage("--smoke-timeout must be at least 1 second"));
        }
        for c in &args.collect {
            rootfs::check_guest_path(c).map_err(|e| usage(format!("--collect: {e}")))?;
        }
        Ok(Self {
            image,
            machine: args.machine,
            timeout: Duration::from_secs(args.timeout),
            success: regexes(&args.markers, DEFAULT_MARKERS, "--marker")?,
            failure: regexes(
                &args.failure_markers,
                DEFAULT_FAILURE_MARKERS,
                "--failure-marker",
            )?,
            artifacts_dir: args.artifacts_dir,
            inject: args
                .inject
                .iter()
                .map(|s| rootfs::parse_injection(s))
                .collect::<anyhow::Result<_>>()?,
            collect: args.collect,
            max_reboots: args.max_reboots,
            grace: Duration::from_secs(args.shutdown_grace),
            append: args
                .append
                .map(|a| a.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            qemu: args.qemu,
            qemu_arm: args.qemu_arm,
        })
    }
}

/// What the image and the host offer, found before planning.
#[derive(Debug, Clone)]
pub struct Facts {
    /// `qemu-system-aarch64`: version and machines, or why it cannot be used.
    pub qemu_aarch64: Result<(String, Vec<String>), String>,
    /// `qemu-system-arm`, the same, for armhf images.
    pub qemu_arm: Result<(String, Vec<String>), String>,
    pub boot: Partition,
    pub root: Partition,
    pub files: Vec<String>,
    pub config: FirmwareConfig,
    pub cmdline: String,
    /// smoke's private copy of the image, which QEMU boots.
    pub disk: PathBuf,
    /// This is an arm64 host whose `/dev/kvm` this process can open: arm64 images boot
    /// on `virt` with KVM instead of emulated.
    pub kvm: bool,
    /// Where boot files are copied out to.
    pub scratch: PathBuf,
}

/// Finds QEMU and the machines it offers.
fn probe_qemu(program: &str) -> Result<(String, Vec<String>), String> {
    probe_qemu_inner(program).map_err(|e| format!("{e:#}"))
}

fn probe_qemu_inner(program: &str) -> anyhow::Result<(String, Vec<String>)> {
    let not_found = |e: anyhow::Error| {
        usage(format!(
            "`{program}` is not usable ({e:#}): install QEMU's system emulator (apt-get install qemu-system-arm; on Debian bookworm take it from bookworm-backports for QEMU 10)"
        ))
    };
    let version = CmdSpec::new(program, "read the QEMU version")
        .arg("--version")
        .output()
        .map_err(not_found)?;
    let machines = CmdSpec::new(program, "list QEMU's machines")
        .arg("-machine")
        .arg("help")
        .output()
        .map_err(not_found)?;
    let machines = machines
        .lines()
        .skip_while(|l| l.starts_with("Supported"))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    Ok((
        version.lines().next().unwrap_or_default().to_owned(),
        machines,
    ))
}

fn require_tool(tool: &str, package: &str) -> anyhow::Result<()> {
    if crate::process::find_program(tool).is_some() {
        Ok(())
    } else {
        Err(usage(format!(
            "`{tool}` is required to read the image without mounting it: apt-get install {package}"
        )))
    }
}

/// Reads partitions, the boot file list, config.txt and cmdline.txt from the copy.
fn gather(input: &Input, copy: &Path, scratch: &Path) -> anyhow::Result<Facts> {
    let qemu_aarch64 = probe_qemu(&input.qemu);
    let kvm = cfg!(target_arch = "aarch64")
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
    let qemu_arm = probe_qemu(&input.qemu_arm);
    let parts = disk::partitions(copy)?;
    let boot = *parts.iter().find(|p| p.is_fat()).with_context(|| {
        format!(
            "`{}` has no FAT boot partition (partition types: {})",
            input.image.display(),
            kinds(&parts)
        )
    })?;
    let root = *parts.iter().find(|p| p.is_linux()).with_context(|| {
        format!(
            "`{}` has no Linux root partition (partition types: {})",
            input.image.display(),
            kinds(&parts)
        )
    })?;
    let files = bootfs::list(copy, boot.start)?;
    let read = |name: &str| -> anyhow::Result<Option<String>> {
        let Some(found) = firmware::find(&files, name) else {
            return Ok(None);
        };
        let dest = scratch.join(name);
        bootfs::extract(copy, boot.start, found, &dest)?;
        Ok(Some(
            std::fs::read_to_string(&dest).with_context(|| format!("cannot read `{name}`"))?,
        ))
    };
    let config = read("config.txt")?
        .map(|t| firmware::parse_config(&t))
        .unwrap_or_default();
    let cmdline = read("cmdline.txt")?
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
        .context(
            "cmdline.txt is missing from the boot partition: this is not a Raspberry Pi OS image",
        )?;
    Ok(Facts {
        qemu_aarch64,
        qemu_arm,
        kvm,
        boot,
        root,
        files,
        config,
        cmdline,
        disk: copy.to_path_buf(),
        scratch: scratch.to_path_buf(),
    })
}

fn kinds(parts: &[Partition]) -> String {
    parts
        .iter()
        .map(|p| format!("p{}=0x{:02x}", p.number, p.kind))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub status: String,
    pub machine: Option<Machine>,
    pub boot_seconds: Option<f64>,
    pub artifacts_dir: PathBuf,
    pub error: Option<String>,
}

/// smoke's step outputs.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Outputs {
    /// pass or fail
    pub status: String,
    /// Seconds to the success marker
    pub boot_seconds: String,
    /// serial.log, summary.json and the collected files
    pub artifacts_dir: String,
    /// The emulated machine
    pub machine: String,
}

impl StepReport for Outcome {
    type Outputs = Outputs;
    fn outputs(&self) -> Outputs {
        Outputs {
            status: self.status.clone(),
            boot_seconds: self
                .boot_seconds
                .map(|s| format!("{s:.1}"))
                .unwrap_or_default(),
            artifacts_dir: self.artifacts_dir.display().to_string(),
            machine: self
                .machine
                .map(|m| m.name().to_owned())
                .unwrap_or_default(),
        }
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "### smoke: {}\n\n| Machine | Time to marker | Artifacts |\n| --- | --- | --- |\n| {} | {} | `{}` |\n",
            if self.status == "pass" {
                "passed"
            } else {
                "FAILED"
            },
            self.machine.map_or("-", |m| m.name()),
            self.boot_seconds
                .map_or_else(|| "-".into(), |s| format!("{s:.1} s")),
            md_cell(&self.artifacts_dir.display().to_string()),
        );
        if let Some(e) = &self.error {
            s.push_str(&format!("\n```\n{}\n```\n", e.replace("```", "'''")));
        }
        s.push('\n');
        s
    }
}

/// Everything that happened, for summary.json.
struct Record {
    plan: Option<Plan>,
    facts: Option<Facts>,
    seen: Vec<Seen>,
    boots: u32,
    qemu_args: Vec<String>,
    input_sha256: Option<String>,
    collected: Vec<String>,
    /// Entries of collected guest paths not copied (symlinks, special files), with why.
    skipped: Vec<String>,
    missing: Vec<String>,
}

pub fn run(gha: &Gha, input: &Input) -> anyhow::Result<Outcome> {
    let dir = &input.artifacts_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create artifacts directory `{}`", dir.display()))?;
    for stale in [
        "smoke-success.json",
        "error.json",
        "summary.json",
        "serial.log",
    ] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    let started = Instant::now();
    let mut record = Record {
        plan: None,
        facts: None,
        seen: Vec::new(),
        boots: 0,
        qemu_args: Vec::new(),
        input_sha256: None,
        collected: Vec::new(),
        missing: Vec::new(),
        skipped: Vec::new(),
    };
    let result = boot_and_collect(gha, input, &mut record);
    let boot_seconds = record.seen.first().map(|s| s.seconds);
    let status = if result.is_ok() { "pass" } else { "fail" };
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    let summary = json!({
        "status": status,
        "image": input.image.display().to_string(),
        "image_sha256": record.input_sha256,
        "machine": record.plan.as_ref().map(|p| p.machine),
        "machine_reason": record.plan.as_ref().map(|p| p.reason.clone()),
        "qemu_version": record.facts.as_ref().zip(record.plan.as_ref()).and_then(|(f, p)| {
            match p.arch { Arch::Arm64 => &f.qemu_aarch64, Arch::Armhf => &f.qemu_arm }.as_ref().ok().map(|(v, _)| v.clone())
        }),
        "arch": record.plan.as_ref().map(|p| p.arch),
        "qemu": record.plan.as_ref().map(|p| p.program.clone()),
        "qemu_args": record.qemu_args,
        "kernel_cmdline": record.plan.as_ref().map(|p| p.cmdline.clone()),
        "boots": record.boots,
        "markers_seen": record.seen,
        "boot_seconds": boot_seconds,
        "elapsed_seconds": (started.elapsed().as_millis() as f64) / 1000.0,
        "collected": record.collected,
        "skipped": record.skipped,
        "missing": record.missing,
        "error": error,
    });
    atomic::write(
        &dir.join("summary.json"),
        to_canonical_json(&summary)?.as_bytes(),
    )?;
    match &result {
        Ok(()) => atomic::write(
            &dir.join("smoke-success.json"),
            to_canonical_json(&json!({ "status": "pass" }))?.as_bytes(),
        )?,
        Err(e) => atomic::write(
            &dir.join("error.json"),
            to_canonical_json(&json!({ "error": format!("{e:#}") }))?.as_bytes(),
        )?,
    }
    let outcome = Outcome {
        status: status.into(),
        machine: record.plan.as_ref().map(|p| p.machine),
        boot_seconds,
        artifacts_dir: dir.clone(),
        error,
    };
    // The report is published either way; a failed boot still fails the step.
    gha.publish(&outcome)?;
    result.map(|()| outcome)
}

/// smoke's private directory (in `RUNNER_TEMP`), removed when dropped.
fn scratch_dir() -> anyhow::Result<tempfile::TempDir> {
    let parent = std::env::var_os("RUNNER_TEMP").map_or_else(std::env::temp_dir, PathBuf::from);
    tempfile::Builder::new()
        .prefix("pi-image-smoke-")
        .tempdir_in(&parent)
        .with_context(|| {
            format!(
                "cannot create a scratch directory in `{}`",
                parent.display()
            )
        })
}

/// `--print-plan`: reads the image as a boot would (through the same private copy, in a
/// scratch directory removed on return), prints the plan, and writes nothing else: no
/// artifacts directory, no serial log, no QEMU.
fn print_plan(gha: &Gha, input: &Input) -> anyhow::Result<()> {
    require_tool("mdir", "mtools")?;
    require_tool("debugfs", "e2fsprogs")?;
    let scratch = scratch_dir()?;
    let copy = scratch.path().join("disk.img");
    disk::sparse_copy(&input.image, &copy)?;
    let facts = gather(input, &copy, scratch.path())?;
    gha.print_plan(&plan(input, &facts)?)?;
    Ok(())
}

fn boot_and_collect(gha: &Gha, input: &Input, record: &mut Record) -> anyhow::Result<()> {
    require_tool("mdir", "mtools")?;
    require_tool("debugfs", "e2fsprogs")?;
    let scratch = scratch_dir()?;
    let copy = scratch.path().join("disk.img");
    boot_copy(gha, input, record, scratch.path(), &copy).map_err(|e| {
        // The copy is private; the user knows the image by the name they gave.
        let user = format!("{} (smoke's working copy of it)", input.image.display());
        crate::error::naming_input(e, &copy.display().to_string(), &user)
    })
}

fn boot_copy(
    gha: &Gha,
    input: &Input,
    record: &mut Record,
    scratch: &Path,
    copy: &Path,
) -> anyhow::Result<()> {
    let copy = copy.to_path_buf();
    {
        let _g = gha.group(&format!(
            "smoke: preparing a private copy of {}",
            input.image.display()
        ));
        let digest = disk::sparse_copy(&input.image, &copy)?;
        record.input_sha256 = Some(digest.sha256);
    }
    let facts = gather(input, &copy, scratch)?;
    let plan = plan(input, &facts)?;
    tracing::info!("machine {}: {}", plan.machine.name(), plan.reason);
    tracing::info!("kernel command line: {}", plan.cmdline);
    record.facts = Some(facts.clone());
    record.plan = Some(plan.clone());

    if plan.machine != Machine::Virt {
        let (from, to) = disk::pad_to_power_of_two(&copy)?;
        if from != to {
            tracing::info!(
                "padded the SD card copy from {from} to {to} bytes (QEMU's SD model needs a power of two)"
            );
        }
    }
    let mut staged = Vec::new();
    for (i, inj) in input.inject.iter().enumerate() {
        // A fixed scratch name keeps host paths out of debugfs' command syntax. What
        // --inject may read: a regular file, through no symlink that leaves the
        // directory it was named in (the workspace for a relative path).
        let safe = scratch.join(format!("inject-{i}"));
        let (mut from, _) = crate::input::open("--inject", &inj.host, None)?;
        let mut to = std::fs::File::create(&safe)
            .with_context(|| format!("cannot create `{}`", safe.display()))?;
        std::io::copy(&mut from, &mut to)
            .with_context(|| format!("cannot read --inject `{}`", inj.host.display()))?;
        staged.push(Injection {
            host: safe,
            ..inj.clone()
        });
    }
    rootfs::inject(&copy, facts.root.start, &staged, scratch)?;

    for f in &plan.extract {
        bootfs::extract(&copy, facts.boot.start, &format!("/{}", f.name), &f.dest)?;
    }
    let args = plan.qemu_args.clone();
    record.qemu_args.clone_from(&args);

    let serial_path = input.artifacts_dir.join("serial.log");
    let mut serial = std::fs::File::create(&serial_path)
        .with_context(|| format!("cannot create `{}`", serial_path.display()))?;
    let epoch = Instant::now();
    let watch = Watch {
        success: &input.success,
        failure: &input.failure,
        epoch,
        deadline: epoch + input.timeout,
        grace: input.grace,
    };
    let ending = {
        let _g = gha.group(&format!(
            "smoke: booting on {} (serial console)",
            plan.machine.name()
        ));
        let mut ending;
        loop {
            record.boots += 1;
            ending = qemu::boot(
                gha,
                &plan.program,
                &args,
                &mut serial,
                &watch,
                &mut record.seen,
            )?;
            if ending == Ending::Rebooted && record.boots <= input.max_reboots {
                tracing::info!(
                    "the guest rebooted (Pi OS resizes its root filesystem on first boot); starting QEMU again on the same disk"
                );
                continue;
            }
            break;
        }
        ending
    };
    let tail = last_lines(&serial_path, 12);
    match ending {
        Ending::Pass => {
            let first = record.seen.first().map(|s| s.seconds).unwrap_or_default();
            tracing::info!("success marker after {first:.1} s");
        }
        Ending::Failure { marker, line } => bail!(
            "boot failed: the console printed `{line}` (failure marker `{marker}`); last lines:\n{tail}"
        ),
        Ending::Rebooted => bail!(
            "the guest rebooted more than {} time(s) without a success marker; last lines:\n{tail}",
            input.max_reboots
        ),
        Ending::Exited { status, stderr } => bail!(
            "QEMU exited ({status}) before any success marker{}; last console lines:\n{tail}",
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            }
        ),
        Ending::TimedOut => bail!(
            "timed out after {}s waiting for a success marker ({}); last console lines:\n{tail}",
            input.timeout.as_secs(),
            input
                .success
                .iter()
                .map(Regex::as_str)
                .collect::<Vec<_>>()
                .join(" | ")
        ),
    }

    let collected_dir = input.artifacts_dir.join("collected");
    if !input.collect.is_empty() {
        collect::fresh_dir(&collected_dir)?;
    }
    if input
        .collect
        .iter()
        .any(|g| !g.starts_with("/boot/firmware/"))
    {
        rootfs::recover(&copy, facts.root.start);
    }
    for (i, guest) in input.collect.iter().enumerate() {
        // Each guest path is dumped into a fresh private directory, then copied out by
        // code that never follows or makes a symlink (collect.rs).
        let private = scratch.join(format!("collect-{i}"));
        std::fs::create_dir(&private)
            .with_context(|| format!("cannot create `{}`", private.display()))?;
        let found = if let Some(rel) = guest.strip_prefix("/boot/firmware/") {
            let dest = private.join(guest.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().unwrap_or(&private))?;
            match firmware::find(&bootfs::list(&copy, facts.boot.start)?, rel) {
                Some(found) => {
                    bootfs::extract(&copy, facts.boot.start, found, &dest)?;
                    true
                }
                None => false,
            }
        } else {
            rootfs::collect(&copy, facts.root.start, guest, &private)?
        };
        if found {
            let dumped = private.join(guest.trim_start_matches('/'));
            let skipped = collect::copy_out(&dumped, &collected_dir, guest)?;
            for s in &skipped {
                tracing::warn!("--collect: skipped {s}");
            }
            record.skipped.extend(skipped);
            record.collected.push(guest.clone());
        } else {
            record.missing.push(guest.clone());
        }
    }
    if !record.missing.is_empty() {
        tracing::warn!("not in the guest after boot: {}", record.missing.join(", "));
    }
    Ok(())
}

/// The last `n` lines of the guest's console, indented for a message.
fn last_lines(path: &Path, n: usize) -> String {
    crate::buildlog::tail_lines(path, n)
        .lines()
        .map(|l| format!("  {}", l.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Entry point: parse → run (gather and plan happen inside, on the private copy).
pub fn main(gha: &Gha, args: Args) -> anyhow::Result<()> {
    atomic::install_signal_handlers()?;
    let input = Input::from_args(args)?;
    if gha.is_plan_only() {
        return print_plan(gha, &input);
    }
    run(gha, &input).map(|_| ())
}
