//! `doctor`: what each subcommand needs on this machine, and how to get what is
//! missing (Debian/Ubuntu packages, Homebrew formulae, Windows notes). `--apply`
//! installs the missing Debian packages. Stands in for the seed design's
//! `sugarkube-setup` wizard and `just mac-setup`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;

mod plan;

pub use self::plan::{Plan, plan};
use crate::gha::{Gha, StepReport, md_cell};
use crate::process::find_program;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Install the missing Debian packages with apt-get (Linux only)
    #[arg(long)]
    pub apply: bool,
    /// Free disk wanted for a pi-gen build, in GB
    #[arg(long, env = "REQUIRED_SPACE_GB", default_value_t = 30)]
    pub min_free_gb: u64,
    /// pi-gen checkout whose `depends` lists the tools a native build needs
    #[arg(long, env = "PI_GEN_DIR", default_value = "pi-gen")]
    pub pi_gen_dir: PathBuf,
}

/// One thing a subcommand needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub needed_by: &'static str,
    pub what: String,
    pub ok: bool,
    pub detail: String,
    /// Debian package that provides it, if any.
    pub apt: Option<String>,
    /// Homebrew formula, if any.
    pub brew: Option<&'static str>,
}

fn output(program: &Path, args: &[&str]) -> Option<String> {
    let out = crate::process::command(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn tool(needed_by: &'static str, name: &str, apt: &str, brew: Option<&'static str>) -> Check {
    let found = find_program(name);
    Check {
        needed_by,
        what: format!("`{name}`"),
        ok: found.is_some(),
        detail: found.map_or_else(|| "not found".into(), |p| p.display().to_string()),
        apt: Some(apt.to_owned()),
        brew,
    }
}

fn qemu(binary: &'static str, machine: &str, needed_by: &'static str) -> Check {
    let (ok, detail) = match find_program(binary) {
        None => (false, "not found".to_owned()),
        Some(p) => {
            let version = output(&p, &["--version"])
                .and_then(|v| v.lines().next().map(str::to_owned))
                .unwrap_or_default();
            let has = output(&p, &["-machine", "help"]).is_some_and(|m| {
                m.lines()
                    .any(|l| l.split_whitespace().next() == Some(machine))
            });
            (
                has,
                if has {
                    version
                } else {
                    format!("{version}: no `{machine}` machine (QEMU 7.2 or newer has it)")
                },
            )
        }
    };
    Check {
        needed_by,
        what: format!("`{binary}` with `-M {machine}`"),
        ok,
        detail,
        apt: Some("qemu-system-arm".to_owned()),
        brew: Some("qemu"),
    }
}

/// Everything the subcommands need. Looks at the machine; changes nothing.
pub fn checks(min_free_gb: u64, pi_gen_dir: &Path) -> Vec<Check> {
    let mut c = vec![
        qemu("qemu-system-aarch64", "raspi3b", "smoke"),
        qemu("qemu-system-arm", "raspi2b", "smoke (armhf images)"),
        tool("smoke", "mdir", "mtools", Some("mtools")),
        tool("smoke", "mcopy", "mtools", Some("mtools")),
        tool("smoke", "debugfs", "e2fsprogs", Some("e2fsprogs")),
        tool("smoke", "e2fsck", "e2fsprogs", Some("e2fsprogs")),
        tool("run-pi-gen", "git", "git", Some("git")),
    ];
    let docker = crate::host::docker_blocker();
    c.push(Check {
        needed_by: "run-pi-gen (container strategies)",
        what: "Docker daemon".into(),
        ok: docker.is_none(),
        detail: docker.unwrap_or_else(|| "`docker info` answers".into()),
        apt: Some("docker.io".to_owned()),
        brew: Some("--cask docker"),
    });
    if cfg!(target_os = "linux") {
        for (arm64, entry) in [(true, "qemu-aarch64"), (false, "qemu-arm")] {
            let present = crate::host::missing_binfmt(arm64).is_none();
            c.push(Check {
                needed_by: "run-pi-gen (native)",
                what: format!("binfmt_misc `{entry}`"),
                ok: present,
                detail: if present {
                    "registered".into()
                } else {
                    format!("not registered: update-binfmts --enable {entry}")
                },
                apt: Some("qemu-user-static".to_owned()),
                brew: None,
            });
        }
        let root = rustix::process::geteuid().is_root();
        c.push(Check {
            needed_by: "run-pi-gen (native)",
            what: "root or sudo".into(),
            ok: root || find_program("sudo").is_some(),
            detail: if root {
                "running as root".into()
            } else if find_program("sudo").is_some() {
                "sudo available".into()
            } else {
                "Run as root or install sudo".into()
            },
            apt: Some("sudo".to_owned()),
            brew: None,
        });
        // The checkout's own list, read as run-pi-gen reads it: branches differ.
        if pi_gen_dir.join("depends").is_file() {
            for (t, pkg) in crate::host::pi_gen_depends(pi_gen_dir) {
                c.push(tool("run-pi-gen (native)", &t, &pkg, None));
            }
        } else {
            c.push(Check {
                needed_by: "run-pi-gen (native)",
                what: "pi-gen's `depends`".into(),
                ok: true,
                detail: format!(
                    "not checked: no pi-gen checkout at `{}` (pass --pi-gen-dir); run-pi-gen checks them after checking pi-gen out",
                    pi_gen_dir.display()
                ),
                apt: None,
                brew: None,
            });
        }
        // pi-gen's export: loop devices with partition scanning, then vfat.
        for (what, known) in [
            (
                "loop devices with MBR partition scanning",
                crate::host::loop_partitions(),
            ),
            ("vfat in the kernel", crate::host::vfat()),
        ] {
            c.push(Check {
                needed_by: "run-pi-gen (export, every strategy)",
                what: what.into(),
                ok: !known.is_no(),
                detail: match &known {
                    crate::host::Known::Yes(d) => d.clone(),
                    crate::host::Known::No(d) => format!("{d}: pi-gen's export fails on this kernel; build on a host whose kernel has it (run-pi-gen stops before building unless --skip-kernel-check)"),
                    crate::host::Known::Unknown(d) => format!("unknown: {d}"),
                },
                apt: None,
                brew: None,
            });
        }
    }
    let free = crate::host::free_gb(Path::new("."));
    c.push(Check {
        needed_by: "run-pi-gen",
        what: format!("{min_free_gb} GB free here"),
        ok: free.is_some_and(|f| f >= min_free_gb as f64),
        detail: free.map_or_else(|| "unknown".into(), |f| format!("{f:.1} GB free")),
        apt: None,
        brew: None,
    });
    c
}

/// Which advice applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Linux,
    Macos,
    Windows,
    Other,
}

/// What `doctor` found.
#[derive(Debug, Clone)]
pub struct Facts {
    pub checks: Vec<Check>,
    pub platform: Platform,
    pub root: bool,
}

/// Looks at the machine.
pub fn gather(args: &Args) -> Facts {
    Facts {
        checks: checks(args.min_free_gb, &args.pi_gen_dir),
        platform: if cfg!(target_os = "linux") {
            Platform::Linux
        } else if cfg!(target_os = "macos") {
            Platform::Macos
        } else if cfg!(windows) {
            Platform::Windows
        } else {
            Platform::Other
        },
        root: rustix::process::geteuid().is_root(),
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub checks: Vec<Check>,
    pub plan: Plan,
}

/// doctor's step outputs.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Outputs {
    /// Number of missing requirements
    pub missing: String,
    /// Debian packages that would install them, space-separated
    pub apt_packages: String,
}

impl StepReport for Outcome {
    type Outputs = Outputs;
    fn outputs(&self) -> Outputs {
        Outputs {
            missing: self.plan.missing.to_string(),
            apt_packages: self.plan.apt.join(" "),
        }
    }

    fn summary(&self) -> String {
        let mut s = String::from(
            "### doctor\n\n| Needed by | What | OK | Detail |\n| --- | --- | --- | --- |\n",
        );
        for c in &self.checks {
            s.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                c.needed_by,
                md_cell(&c.what),
                if c.ok { "yes" } else { "**no**" },
                md_cell(&c.detail)
            ));
        }
        s.push('\n');
        s
    }
}

fn print(gha: &Gha, o: &Outcome) {
    for c in &o.checks {
        gha.line(&format!(
            "{} {:<34} {:<34} {}",
            if c.ok { "ok     " } else { "MISSING" },
            c.needed_by,
            c.what,
            c.detail
        ));
    }
    if let Some(advice) = &o.plan.advice {
        gha.line(advice);
    }
}

pub fn main(gha: &Gha, args: Args) -> anyhow::Result<()> {
    let facts = gather(&args);
    let decided = plan(args.apply, &facts)?;
    if gha.print_plan(&decided)? {
        return Ok(());
    }
    let mut outcome = Outcome {
        checks: facts.checks,
        plan: decided,
    };
    print(gha, &outcome);
    if let Some(argv) = &outcome.plan.install {
        let (program, rest) = argv.split_first().context("an empty install command")?;
        let mut cmd = crate::process::command(program);
        cmd.env("DEBIAN_FRONTEND", "noninteractive").args(rest);
        // apt prints what the mirror says (package names, descriptions): fenced.
        let status =
            crate::process::run_fenced(gha, cmd, "install the missing packages with apt-get")?;
        anyhow::ensure!(
            status.success(),
            "apt-get install {} failed ({status})",
            outcome.plan.apt.join(" ")
        );
        let after = gather(&args);
        outcome = Outcome {
            plan: plan(false, &after)?,
            checks: after.checks,
        };
        print(gha, &outcome);
    }
    gha.publish(&outcome)?;
    let missing = outcome.plan.missing;
    anyhow::ensure!(
        missing == 0,
        "{missing} requirement(s) missing on this machine (see above)"
    );
    Ok(())
}
