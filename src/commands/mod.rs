//! One module per subcommand, all with the same shape:
//! `Args` → `Input` → `gather` → `plan()` (`plan.rs`, pure) → `run()` → `Outcome`.

pub mod collect_artifacts;
pub mod doctor;
pub mod manifest;
pub mod pipeline;
pub mod prepare_mirrors;
pub mod release;
pub mod run_pi_gen;
pub mod sign;
pub mod smoke;
pub mod verify;

use crate::cli::Command;
use crate::gha::Gha;

/// Runs one subcommand and publishes its outcome.
pub fn dispatch(gha: &Gha, command: Command) -> anyhow::Result<()> {
    match command {
        Command::CollectArtifacts(args) => collect_artifacts::main(gha, args),
        Command::Manifest(args) => manifest::main(gha, args),
        Command::Smoke(args) => smoke::main(gha, args),
        Command::Release(args) => release::main(gha, args),
        Command::PrepareMirrors(args) => prepare_mirrors::main(gha, args),
        Command::RunPiGen(args) => run_pi_gen::main(gha, args),
        Command::Pipeline(args) => pipeline::main(gha, args),
        Command::Doctor(args) => doctor::main(gha, args),
        Command::Sign(args) => sign::main(gha, args),
        Command::Verify(args) => verify::main(gha, args),
        Command::Action(args) => crate::action::main(gha, args),
    }
}
