use std::process::ExitCode;

use pi_image::{cli, commands, error, gha::Gha, logging};

fn main() -> ExitCode {
    // Credentials in URLs are masked before anything, clap's errors included, is printed.
    let gha = Gha::from_env();
    gha.mask_url_credentials();
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap's message quotes the offending value: its URL credentials are hidden
            // and (Actions reads stderr for workflow commands too) no line of it can
            // read as a command.
            let help = matches!(
                err.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            );
            if help {
                let _ = err.print();
            } else {
                use pi_image::gha::escape::{plain_line, plain_lines};
                let mut text = err.render().to_string();
                // The values clap quotes are shown escaped, so none starts a line.
                for (_, v) in err.context() {
                    if let clap::error::ContextValue::String(v) = v
                        && v.contains(['\n', '\r'])
                    {
                        text = text.replace(v.as_str(), &plain_line(v));
                    }
                }
                eprintln!("{}", plain_lines(text.trim_end()));
            }
            return match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    let gha = gha.quiet(cli.quiet).plan_only(cli.print_plan);
    logging::init(gha.in_actions(), cli.verbosity());
    match commands::dispatch(&gha, cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error::report(&gha, &err);
            error::exit_code(&err)
        }
    }
}
