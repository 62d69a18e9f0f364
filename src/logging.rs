//! One line per event on the step's console stream; warnings become `::warning::`
//! annotations in Actions. Level from `PI_IMAGE_LOG` (or `RUST_LOG`), default `info`.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

struct LineFormat {
    actions: bool,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        let mut message = String::new();
        ctx.field_format()
            .format_fields(Writer::new(&mut message), event)?;
        // Messages carry values from anywhere (paths, mirror answers, guest output):
        // in Actions a warning is an escaped annotation, every other line plain text
        // that cannot read as a workflow command.
        if self.actions && level == Level::WARN {
            crate::gha::emit_command(&crate::gha::escape::command("warning", &[], &message));
            return Ok(());
        }
        let line = match level {
            Level::WARN => format!("warning: {message}"),
            Level::ERROR => format!("error: {message}"),
            Level::DEBUG | Level::TRACE => format!("debug: {message}"),
            _ => message,
        };
        writeln!(writer, "{}", crate::gha::escape::plain_line(&line))
    }
}

#[derive(Clone, Copy)]
struct Console {
    actions: bool,
}

impl<'a> MakeWriter<'a> for Console {
    type Writer = Box<dyn std::io::Write + 'a>;
    fn make_writer(&'a self) -> Self::Writer {
        if self.actions {
            Box::new(std::io::stdout())
        } else {
            Box::new(std::io::stderr())
        }
    }
}

/// Installs the global subscriber. `verbosity`: -1 quiet, 0 info, 1 debug, 2+ trace.
pub fn init(actions: bool, verbosity: i8) {
    let default = match verbosity {
        i8::MIN..=-1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = std::env::var("PI_IMAGE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .filter(|v| !v.is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("pi_image={default},{}", "warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Console { actions })
        .event_format(LineFormat { actions })
        .try_init();
}
