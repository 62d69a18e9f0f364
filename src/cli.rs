//! The command line: one subcommand per workflow step.

use std::ffi::OsString;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::commands::{
    collect_artifacts, doctor, manifest, pipeline, prepare_mirrors, release, run_pi_gen, sign,
    smoke, verify,
};

/// Build, verify, sign and publish Raspberry Pi OS images.
#[derive(Debug, Parser)]
#[command(name = "pi-image", version, about, propagate_version = true)]
pub struct Cli {
    /// More detail in the log (-v debug, -vv trace)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Read what the step needs, print its plan (every file it would write, command it
    /// would run and request it would send) as JSON, and stop before changing anything.
    /// Exits 0 once the plan is made, whatever it says (doctor's missing count, verify's
    /// checks). A missing pi-gen checkout is still cloned: the plan is read from it; smoke
    /// reads the image through its private copy, in a scratch directory it removes.
    #[arg(long, global = true)]
    pub print_plan: bool,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// -1 quiet, 0 normal, 1+ verbose.
    pub fn verbosity(&self) -> i8 {
        if self.quiet {
            -1
        } else {
            i8::try_from(self.verbose).unwrap_or(i8::MAX)
        }
    }
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once at start-up")]
pub enum Command {
    /// Point every apt call of the build at a healthy mirror (probe, rewrite, rotate, restore at export)
    PrepareMirrors(prepare_mirrors::Args),
    /// Check out pi-gen, configure it safely, run it natively or in a container, stream its log
    RunPiGen(run_pi_gen::Args),
    /// Turn pi-gen's deploy/ output into IMG_NAME.img.xz + .sha256, streaming, in one pass
    CollectArtifacts(collect_artifacts::Args),
    /// Write the build metadata, provenance manifest, in-toto statement and release notes
    Manifest(manifest::Args),
    /// Boot the image in QEMU and wait for first-boot success markers on the serial console
    Smoke(smoke::Args),
    /// Sign the artifacts with Sigstore (keyless or --key): cosign-compatible FILE.sigstore.json bundles
    Sign(sign::Args),
    /// Verify Sigstore bundles (cosign's flags), one file or every artifact of a manifest
    Verify(verify::Args),
    /// Create or update the GitHub release and upload its assets, idempotently
    Release(release::Args),
    /// Run every step in order (release is a dry run unless --publish); resumes after the last completed step
    Pipeline(pipeline::Args),
    /// Check this machine for what each subcommand needs, and say how to install what is missing
    Doctor(doctor::Args),
    /// What the GitHub Action runs (`action run`), and how its files are made (`action generate`)
    #[command(hide = true)]
    Action(crate::action::Args),
}

/// Environment variables whose empty value is an error rather than "unset".
const EMPTY_IS_AN_ERROR: &[&str] = &["PI_GEN_STAGES"];

/// Parses the process arguments. Environment variables set to the empty string count
/// as unset (GitHub passes unset action inputs as `""`), except [`EMPTY_IS_AN_ERROR`].
pub fn parse() -> Result<Cli, clap::Error> {
    parse_from(std::env::args_os(), |name| std::env::var_os(name))
}

/// [`parse`] with an injectable environment lookup, for tests.
pub fn parse_from(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Cli, clap::Error> {
    let command = drop_empty_env(Cli::command(), &env);
    let matches = command.try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

fn drop_empty_env(
    mut command: clap::Command,
    env: &impl Fn(&str) -> Option<OsString>,
) -> clap::Command {
    let empty: Vec<clap::Id> = command
        .get_arguments()
        .filter(|arg| {
            arg.get_env().is_some_and(|name| {
                let name = name.to_string_lossy();
                !EMPTY_IS_AN_ERROR.contains(&name.as_ref())
                    && env(&name).is_some_and(|v| v.is_empty())
            })
        })
        .map(|arg| arg.get_id().clone())
        .collect();
    for id in empty {
        command = command.mut_arg(id, |arg| arg.env(None));
    }
    // A later flag overrides an earlier one, so generated command lines (the action,
    // the pipeline) can append settings without tracking what is already there.
    command = command.args_override_self(true);
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in subcommands {
        command = command.mut_subcommand(name, |sub| drop_empty_env(sub, env));
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn empty_env_counts_as_unset() {
        let cli = parse_from(args(&["pi-image", "collect-artifacts"]), |name| {
            (name == "IMG_NAME").then(OsString::new)
        })
        .unwrap();
        let Command::CollectArtifacts(a) = cli.command else {
            panic!("wrong subcommand")
        };
        assert_eq!(a.image.img_name, "sugarkube");
    }

    #[test]
    fn empty_is_an_error_vars_keep_their_binding() {
        let cmd = drop_empty_env(Cli::command(), &|_| Some(OsString::new()));
        let manifest = cmd.find_subcommand("manifest").unwrap();
        let env_of = |id: &str| {
            manifest
                .get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_env().map(std::borrow::ToOwned::to_owned))
        };
        assert_eq!(
            env_of("pi_gen_stages"),
            Some(OsString::from("PI_GEN_STAGES"))
        );
        assert_eq!(env_of("img_name"), None);
        assert_eq!(env_of("pi_gen_branch"), None);
    }
}
