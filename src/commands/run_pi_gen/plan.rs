//! `run-pi-gen`'s decision: the pi-gen config, the generated sub-stages (cloud-init
//! seed, overlay, packages, chroot script), the export markers and, per strategy in the
//! order they are tried, what blocks it or the exact command lines it runs. Pure: it
//! works on the input and on what [`super::gather`] read from the checkout, the user's
//! files and the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::strategy::{self, ContainerSpec, Strategy};
use super::substage::{self, CloudInitPlacement, GeneratedFile};
use super::{BuildSh, Gathered, HostFacts, Input, config, heredoc};
use crate::error::usage;
use crate::host::Known;

/// One way to run pi-gen, and whether it can run here.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StrategyPlan {
    pub strategy: Strategy,
    pub blocker: Option<String>,
    /// The commands, in order (program first).
    pub commands: Vec<Vec<String>>,
    /// The environment the commands get (pi-gen's, or the docker client's: the values of
    /// the `--env NAME` the container receives).
    #[serde(skip)]
    pub env: Vec<(String, String)>,
}

/// Everything `run-pi-gen` will write and run. Built by the pure [`plan`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    #[serde(serialize_with = "files_as_paths")]
    pub files: Vec<GeneratedFile>,
    pub placement: Option<CloudInitPlacement>,
    /// The stages pi-gen builds, in order.
    pub stages: Vec<String>,
    pub config: String,
    pub strategies: Vec<StrategyPlan>,
    /// Export markers: `EXPORT_IMAGE` made for the last stage, `SKIP_IMAGES` for others.
    pub markers: Vec<(PathBuf, String)>,
    /// What could not be checked (logged by `run`).
    pub warnings: Vec<String>,
    /// What run-pi-gen keeps besides the files above: in the checkout, the record of what
    /// it wrote (undone by the next run) and of the stages that ended (for `--continue`);
    /// in the output directory, pi-gen's `deploy/` and the stage timeline.
    pub records: Vec<PathBuf>,
    /// `--install-deps`: the apt-get commands that install pi-gen's missing build
    /// dependencies (through `sudo -n` when not root), run before anything else.
    pub install: Vec<Vec<String>>,
}

fn files_as_paths<S: serde::Serializer>(files: &[GeneratedFile], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq as _;
    let mut seq = s.serialize_seq(Some(files.len()))?;
    for f in files {
        seq.serialize_element(&format!("{} {:04o}", f.path.display(), f.mode))?;
    }
    seq.end()
}

/// What `EXPORT_IMAGE` holds when run-pi-gen makes one for a stage without it.
pub const EXPORT_IMAGE: &str = "# Written by pi-image run-pi-gen: this stage is the last one built, so it exports.\nIMG_SUFFIX=\"\"\n";

/// What `SKIP_IMAGES` holds when run-pi-gen writes one.
pub const SKIP_IMAGES: &str =
    "written by pi-image run-pi-gen: only the last stage of PI_GEN_STAGES exports an image\n";

/// Decides everything from what was gathered. Pure.
pub fn plan(input: &Input, g: &Gathered) -> anyhow::Result<Plan> {
    for s in &input.source.stages {
        if !g.stage_dirs.contains(s) {
            return Err(usage(format!(
                "unknown pi-gen stage `{s}` (PI_GEN_STAGES); this checkout has: {}",
                g.stage_dirs.join(" ")
            )));
        }
    }
    match g.build_sh {
        BuildSh::Runnable => {}
        BuildSh::NotExecutable => {
            return Err(usage(format!(
                "`{}/build.sh` is not executable: pi-gen runs its scripts by their `#!/bin/bash -e` line so that a failing step stops the build; run `chmod +x build.sh` (a checkout that lost its file modes needs a fresh clone)",
                input.pi_gen_dir.display()
            )));
        }
        BuildSh::NoShebang => {
            return Err(usage(format!(
                "`{}/build.sh` does not start with `#!`: this is not pi-gen's build script",
                input.pi_gen_dir.display()
            )));
        }
    }
    let last = input.source.stages.last().cloned().unwrap_or_default();
    let inputs = substage::SubstageInputs {
        user_data: g.user_data.as_deref(),
        overlay: &g.overlay,
        owners: &input.owners,
        packages: &input.packages,
        chroot_script: g.chroot_script.as_deref(),
    };
    let (files, placement) = substage::files(
        &last,
        g.has_pi_gen_cloud_init,
        input.source.stages.iter().any(|s| s == "stage2"),
        &inputs,
    );
    let mut settings = input.settings.clone();
    settings.insert(
        "STAGE_LIST".to_owned(),
        input
            .source
            .stages
            .iter()
            .map(|s| input.pi_gen_dir.join(s).display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
    );
    if placement == Some(CloudInitPlacement::PiGenStage) {
        settings.insert("ENABLE_CLOUD_INIT".to_owned(), "1".to_owned());
    }
    // Without CLEAN=1 pi-gen re-runs a stage on the root filesystem an earlier run left
    // in its work directory: a package or overlay file taken out of the inputs would stay
    // in the image. Stages `--continue` skips (SKIP) keep theirs.
    settings.insert("CLEAN".to_owned(), "1".to_owned());
    let unsupported = config::unsupported(
        settings
            .keys()
            .map(String::as_str)
            .filter(|k| !["STAGE_LIST", "IMG_NAME", "DEPLOY_DIR", "CLEAN"].contains(k)),
        &g.checkout_text,
    );
    if !unsupported.is_empty() {
        return Err(usage(format!(
            "this pi-gen ({}) does not support these settings, so they would be silently ignored:\n  {}",
            g.checkout.git_ref,
            unsupported.join("\n  ")
        )));
    }
    for (_, pkg) in &g.host.depends {
        substage::check_package(pkg).map_err(|_| {
            usage(format!(
                "the checkout's `depends` names `{}`, which is not a Debian package name",
                pkg.escape_debug()
            ))
        })?;
    }
    heredoc::check(&settings, &g.expansions)?;
    // pi-gen reads a setting the config leaves unset from its environment: what
    // --pass-env hands it is checked the same way.
    let passed: BTreeMap<String, String> = g
        .pi_gen_env
        .iter()
        .filter(|(k, _)| input.pass_env.contains(k) && !settings.contains_key(k))
        .cloned()
        .collect();
    heredoc::check(&passed, &g.expansions)?;
    let mut warnings = preflight(input, g)?;
    if !g.host.bmaptool && !input.install_deps && input.strategy != Strategy::DebianContainer {
        // The container strategies install it inside the container; natively it is ours
        // to install, and without it pi-gen's export makes no bmap of its own.
        warnings.push(
            "bmaptool is not installed here: a native build's export makes no bmap of its own \
             (collect-artifacts then derives one from the file systems); apt-get install bmap-tools \
             or pass --install-deps"
                .to_owned(),
        );
    }
    let mut markers = Vec::new();
    for s in &input.source.stages {
        let export = Path::new(s).join("EXPORT_IMAGE");
        if s == &last {
            if !g.own_export.contains(s) {
                markers.push((export, EXPORT_IMAGE.to_owned()));
            }
        } else if g.own_export.contains(s) {
            markers.push((Path::new(s).join("SKIP_IMAGES"), SKIP_IMAGES.to_owned()));
        }
    }
    Ok(Plan {
        files,
        placement,
        stages: input.source.stages.clone(),
        config: config::render(&settings)?,
        strategies: strategies(input, g),
        markers,
        warnings,
        install: install_commands(input, &g.host),
        records: vec![
            input.pi_gen_dir.join(super::tree::LEDGER),
            input.pi_gen_dir.join(super::resume::RECORD),
            input.output_dir.join("deploy"),
            input
                .output_dir
                .join(format!("{}.stages.json", input.img_name)),
        ],
    })
}

/// The package with bmaptool, which pi-gen's export runs for the image's bmap.
pub const BMAP_TOOLS: &str = "bmap-tools";

/// `apt-get update` and `apt-get install` of the packages holding the missing tools of
/// pi-gen's `depends` (and bmaptool), or nothing when none is missing (or without `--install-deps`).
fn install_commands(input: &Input, h: &HostFacts) -> Vec<Vec<String>> {
    if !input.install_deps || input.dry_run || (h.missing_depends.is_empty() && h.bmaptool) {
        return Vec::new();
    }
    let mut pkgs: Vec<String> = h.missing_depends.iter().map(|(_, p)| p.clone()).collect();
    if !h.bmaptool {
        // Not in pi-gen's `depends`, but its export uses it when present (the bmap).
        pkgs.push(BMAP_TOOLS.to_owned());
    }
    pkgs.sort();
    pkgs.dedup();
    let apt_get = |args: &[&str]| -> Vec<String> {
        let sudo: &[&str] = if h.root { &[] } else { &["sudo", "-n"] };
        sudo.iter()
            .chain(std::iter::once(&"apt-get"))
            .chain(args)
            .map(|a| (*a).to_owned())
            .collect()
    };
    let mut install = apt_get(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.extend(pkgs);
    vec![apt_get(&["update", "-qq"]), install]
}

/// What pi-gen's export needs from the kernel, checked before any work.
fn preflight(input: &Input, g: &Gathered) -> anyhow::Result<Vec<String>> {
    for (dir, free) in &g.host.free_gb {
        if *free < input.min_free_gb as f64 {
            return Err(usage(format!(
                "Need at least {}GB free in {} (only {free:.2}GB available); set REQUIRED_SPACE_GB to change the limit",
                input.min_free_gb,
                dir.display()
            )));
        }
    }
    let mut missing = Vec::new();
    if let Some(k) = g.host.loop_partitions.as_ref().filter(|k| k.is_no()) {
        missing.push(format!(
            "loop devices with MBR partition scanning: {} (kernel option CONFIG_MSDOS_PARTITION, and CONFIG_BLK_DEV_LOOP)",
            k.detail()
        ));
    }
    if let Some(k) = g.host.vfat.as_ref().filter(|k| k.is_no()) {
        missing.push(format!(
            "vfat, to format and mount the boot partition: {} (kernel option CONFIG_VFAT_FS; `modprobe vfat` where it is a module)",
            k.detail()
        ));
    }
    let mut warnings = Vec::new();
    for k in [&g.host.loop_partitions, &g.host.vfat]
        .into_iter()
        .flatten()
        .filter(|k| matches!(k, Known::Unknown(_)))
    {
        warnings.push(format!(
            "could not check the kernel for pi-gen's export ({}); building anyway",
            k.detail()
        ));
    }
    if !missing.is_empty() {
        return Err(usage(format!(
            "this machine's kernel lacks what pi-gen's export needs, so the build would fail after all its stages:\n  - {}\nBuild on a host whose kernel has them (GitHub's ubuntu runners do; so do Debian's and Raspberry Pi OS's kernels), or, if this environment provides them another way, pass --skip-kernel-check (SKIP_KERNEL_CHECK=1)",
            missing.join("\n  - ")
        )));
    }
    Ok(warnings)
}

/// The strategies to try, in order, with what blocks each and its command lines.
fn strategies(input: &Input, g: &Gathered) -> Vec<StrategyPlan> {
    let order: Vec<Strategy> = match input.strategy {
        Strategy::Auto => vec![
            Strategy::Native,
            Strategy::Container,
            Strategy::DebianContainer,
        ],
        s => vec![s],
    };
    order
        .into_iter()
        .map(|s| {
            let blocker = match s {
                Strategy::Native => native_blocker(&g.host, input.install_deps),
                _ => g.host.docker.clone(),
            };
            let env = if s == Strategy::Native {
                g.pi_gen_env.clone()
            } else {
                // The docker client's own settings, never the job's credentials; and what
                // the container is given by name.
                g.docker_env
                    .iter()
                    .cloned()
                    .chain(container_env(input, g))
                    .collect()
            };
            StrategyPlan {
                strategy: s,
                commands: if blocker.is_some() {
                    Vec::new()
                } else {
                    commands(s, input, g)
                },
                blocker,
                env,
            }
        })
        .collect()
}

/// Why the native strategy cannot run here (missing `depends` do not count when
/// `--install-deps` installs them first).
fn native_blocker(h: &HostFacts, install_deps: bool) -> Option<String> {
    if !h.linux {
        return Some("native builds need Linux; use a container strategy".into());
    }
    if !h.root && !h.sudo {
        return Some("Run as root or install sudo".into());
    }
    if !h.missing_depends.is_empty() && !install_deps {
        let tools: Vec<_> = h.missing_depends.iter().map(|(t, _)| t.as_str()).collect();
        let pkgs: Vec<_> = h.missing_depends.iter().map(|(_, p)| p.as_str()).collect();
        return Some(format!(
            "pi-gen's tools {} are missing: apt-get install {} (or pass --install-deps)",
            tools.join(", "),
            pkgs.join(" ")
        ));
    }
    if let Some(binfmt) = h.missing_binfmt {
        return Some(format!(
            "no {binfmt} binfmt_misc entry: apt-get install qemu-user-static binfmt-support && update-binfmts --enable {binfmt}"
        ));
    }
    None
}

/// What the pi-gen container gets in its environment.
fn container_env(input: &Input, g: &Gathered) -> Vec<(String, String)> {
    let mut env = vec![("IMG_NAME".to_owned(), input.img_name.clone())];
    env.extend(g.container_env.iter().cloned());
    env
}

fn commands(s: Strategy, input: &Input, g: &Gathered) -> Vec<Vec<String>> {
    let docker = |args: Vec<String>| {
        let mut v = vec!["docker".to_owned()];
        v.extend(args);
        v
    };
    match s {
        Strategy::Native | Strategy::Auto => {
            // By its shebang: pi-gen's scripts rely on `#!/bin/bash -e` to stop at the
            // first failing step (`bash ./build.sh` would carry on past every error).
            let mut v = Vec::new();
            if !g.host.root {
                v.extend(["sudo".to_owned(), "-n".to_owned()]);
            }
            v.push("./build.sh".to_owned());
            vec![v]
        }
        Strategy::Container | Strategy::DebianContainer => {
            let debian = s == Strategy::DebianContainer;
            let mut out = Vec::new();
            if g.host.missing_binfmt.is_some() {
                // The build container emulates ARM through the host kernel's binfmt_misc.
                out.push(docker(
                    [
                        "run",
                        "--privileged",
                        "--rm",
                        strategy::BINFMT_IMAGE,
                        "--install",
                        "arm64,arm",
                    ]
                    .map(String::from)
                    .to_vec(),
                ));
            }
            let checkout = input.pi_gen_dir.display().to_string();
            let image = match (&input.container_image, debian) {
                (Some(i), false) => i.clone(),
                (None, false) => {
                    let tag = format!("pi-gen:{}", g.checkout.git_ref.replace(['/', ':'], "-"));
                    out.push(docker(strategy::docker_build(&tag, &checkout)));
                    tag
                }
                (_, true) => "debian:bookworm".into(),
            };
            let deploy = input.output_dir.join("deploy").display().to_string();
            let env = container_env(input, g);
            let name = strategy::container_name(&input.img_name);
            let spec = ContainerSpec {
                image: &image,
                checkout: &checkout,
                deploy: &deploy,
                env: &env,
                name: &name,
            };
            out.push(docker(if debian {
                let mut pkgs: Vec<String> = g.host.depends.iter().map(|(_, p)| p.clone()).collect();
                pkgs.sort();
                pkgs.dedup();
                strategy::debian_run(&spec, &pkgs)
            } else {
                strategy::container_run(&spec)
            }));
            out
        }
    }
}
