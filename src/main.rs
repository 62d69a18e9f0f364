use std::process::ExitCode;

use pi_image::{cli, commands, error, gha::Gha, logging};

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    let gha = Gha::from_env().quiet(cli.quiet);
    logging::init(gha.in_actions(), cli.verbosity());
    match commands::dispatch(&gha, cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error::report(&gha, &err);
            error::exit_code(&err)
        }
    }
}
