//! GitHub Actions I/O, encoded once: step outputs, the step summary, log groups,
//! annotations and masks. Outside Actions the same calls print plain lines.
//!
//! Everything a step prints goes to one stream (stdout in Actions, where the runner
//! reads workflow commands, stderr elsewhere) so groups and the lines inside them can
//! never be reordered by the runner's separate pipes.

pub mod escape;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// What every subcommand reports when it ends.
pub trait StepReport {
    /// The step's outputs: a struct of `String` fields with kebab-case names. Its JSON
    /// Schema (names and doc comments) is what `pi-image action generate` writes into
    /// the actions' `outputs:`, so the binary and action.yml cannot disagree.
    type Outputs: serde::Serialize + schemars::JsonSchema;
    fn outputs(&self) -> Self::Outputs;
    /// Markdown appended to the job summary.
    fn summary(&self) -> String;
}

/// A typed outputs struct as (key, value) pairs, in field order. Every field is a
/// string (`None` is the empty string): anything else is a bug in the struct.
pub fn output_pairs(outputs: &impl serde::Serialize) -> anyhow::Result<Vec<(String, String)>> {
    let serde_json::Value::Object(fields) = serde_json::to_value(outputs)? else {
        bail!("internal: step outputs are not a struct");
    };
    fields
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Null => Ok((k, String::new())),
            other => bail!("internal: step output `{k}` is not a string: {other}"),
        })
        .collect()
}

/// Severity of an annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Notice,
}

impl Level {
    fn command(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Notice => "notice",
        }
    }
}

/// The Actions environment as seen by one process.
#[derive(Debug, Clone, Default)]
pub struct Gha {
    actions: bool,
    output_file: Option<PathBuf>,
    summary_file: Option<PathBuf>,
    workspace: Option<PathBuf>,
    quiet: bool,
    plan_only: bool,
}

fn non_empty_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Gha {
    /// Reads `GITHUB_ACTIONS`, `GITHUB_OUTPUT`, `GITHUB_STEP_SUMMARY`, `GITHUB_WORKSPACE`.
    pub fn from_env() -> Self {
        Self {
            actions: std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"),
            output_file: non_empty_path("GITHUB_OUTPUT"),
            summary_file: non_empty_path("GITHUB_STEP_SUMMARY"),
            workspace: non_empty_path("GITHUB_WORKSPACE"),
            quiet: false,
            plan_only: false,
        }
    }

    /// Masks every credential found in a URL among this process's arguments and
    /// environment before anything is printed (`::add-mask::`), so no later line, the
    /// summary included, can show it.
    pub fn mask_url_credentials(&self) {
        if !self.actions {
            return;
        }
        let values = std::env::args_os()
            .chain(std::env::vars_os().map(|(_, v)| v))
            .map(|v| v.to_string_lossy().into_owned());
        let mut seen = std::collections::BTreeSet::new();
        for v in values {
            for secret in escape::url_credentials(&v) {
                if seen.insert(secret.clone()) {
                    self.mask(&secret);
                }
            }
        }
    }

    /// Outside Actions, `--quiet` drops the informational lines (groups, outputs).
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// `--print-plan`: subcommands print their plan ([`Gha::print_plan`]) and stop.
    pub fn plan_only(mut self, plan_only: bool) -> Self {
        self.plan_only = plan_only;
        self
    }

    /// True under `--print-plan`.
    pub fn is_plan_only(&self) -> bool {
        self.plan_only
    }

    /// Under `--print-plan`, prints `plan` as JSON on stdout and returns true: the caller
    /// stops before its effects. Otherwise does nothing and returns false. The JSON is
    /// shown like any text the tool does not control (fenced), since it quotes inputs.
    pub fn print_plan(&self, plan: &impl serde::Serialize) -> anyhow::Result<bool> {
        if !self.plan_only {
            return Ok(false);
        }
        // A plan quotes mirror and proxy URLs: their credentials are never shown.
        let json = serde_json::to_string_pretty(plan).map_err(|e| {
            crate::error::usage(format!(
                "cannot print the plan: {e} (a path given on the command line that is not UTF-8 cannot be shown; run without --print-plan, or use a UTF-8 path)"
            ))
        })?;
        let json = escape::redact_credentials(&json);
        if self.actions {
            self.block(&json);
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{json}");
            let _ = out.flush();
        }
        Ok(true)
    }

    fn info_line(&self, text: &str) {
        if self.actions || !self.quiet {
            self.line(text);
        }
    }

    /// True when running as an Actions step (workflow commands are understood).
    pub fn in_actions(&self) -> bool {
        self.actions
    }

    /// Writes one line of the tool's own text to the step log. Values inside may hold
    /// anything: line breaks and invisible characters are shown escaped and nothing in
    /// it can read as a workflow command ([`escape::plain_line`]).
    pub fn line(&self, text: &str) {
        console_line(self.actions, &escape::plain_line(text));
    }

    /// Writes text the tool does not control (a build log's tail, a guest's console)
    /// verbatim, fenced so the runner executes nothing in it.
    pub fn block(&self, text: &str) {
        let fence = self.fence();
        for l in text.lines() {
            fence.line(l);
        }
    }

    /// Starts fencing: until the guard is dropped, the runner ignores workflow commands
    /// (`::stop-commands::<random token>`), so output streamed from a child can be shown
    /// as it is. The tool's own commands still work: each one briefly lifts the fence.
    pub fn fence(&self) -> Fence<'_> {
        let mut owner = false;
        if self.actions {
            let mut state = lock_fence();
            // A fence inside a fence (a log tail printed while streaming) is the outer one.
            if state.is_none() {
                let token = escape::stop_token();
                emit(&format!("::stop-commands::{token}"));
                *state = Some(token);
                owner = true;
            }
        }
        Fence { gha: self, owner }
    }

    fn command(&self, name: &str, props: &[(&str, &str)], message: &str) {
        if self.actions {
            emit_command(&escape::command(name, props, message));
        } else {
            self.line(&escape::command(name, props, message));
        }
    }

    /// Publishes step outputs: the `GITHUB_OUTPUT` file when set, readable lines always.
    pub fn set_outputs(&self, outputs: &[(&str, String)]) -> anyhow::Result<()> {
        // Under --print-plan nothing was done: there is nothing to report.
        if self.plan_only {
            return Ok(());
        }
        // No output carries a URL's credentials (a proxy's, a mirror's).
        let outputs: Vec<(&str, String)> = outputs
            .iter()
            .map(|(k, v)| (*k, escape::redact_credentials(v)))
            .collect();
        let outputs = outputs.as_slice();
        if let Some(path) = &self.output_file {
            let text = format_outputs(outputs)?;
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .with_context(|| {
                    format!("failed to open GITHUB_OUTPUT file `{}`", path.display())
                })?;
            file.write_all(text.as_bytes())
                .with_context(|| format!("failed to write step outputs to `{}`", path.display()))?;
        }
        for (key, value) in outputs {
            let shown = if value.contains('\n') {
                "(multi-line)"
            } else {
                value.as_str()
            };
            self.info_line(&format!("output {key}: {shown}"));
        }
        Ok(())
    }

    /// Appends Markdown to the job summary. Best effort: a summary is never worth
    /// failing a step that did its work.
    pub fn summary(&self, markdown: &str) {
        // Under --print-plan nothing was done: there is nothing to report.
        let Some(path) = self.summary_file.as_ref().filter(|_| !self.plan_only) else {
            return;
        };
        let markdown = escape::redact_credentials(markdown);
        let result = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .and_then(|mut f| f.write_all(markdown.as_bytes()));
        if let Err(err) = result {
            tracing::debug!(
                "could not append to the step summary `{}`: {err}",
                path.display()
            );
        }
    }

    /// Publishes a finished step's outputs and summary.
    pub fn publish(&self, report: &impl StepReport) -> anyhow::Result<()> {
        let pairs = output_pairs(&report.outputs())?;
        let pairs: Vec<(&str, String)> =
            pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        self.set_outputs(&pairs)?;
        self.summary(&report.summary());
        Ok(())
    }

    /// Starts a collapsible log group; it ends when the guard is dropped.
    pub fn group(&self, title: &str) -> Group<'_> {
        if self.actions {
            self.command("group", &[], title);
        } else {
            self.info_line(&format!("==> {title}"));
        }
        Group { gha: self }
    }

    /// An annotation, attached to a file (relative to the workspace) and line when known.
    pub fn annotate(&self, level: Level, message: &str, file: Option<&Path>, line: Option<u32>) {
        if self.actions {
            let file = file.map(|f| self.workspace_relative(f)).unwrap_or_default();
            let line = line.map(|l| l.to_string()).unwrap_or_default();
            self.command(
                level.command(),
                &[("file", &file), ("line", &line)],
                message,
            );
        } else {
            let place = match (file, line) {
                (Some(f), Some(l)) => format!(" ({}:{l})", f.display()),
                (Some(f), None) => format!(" ({})", f.display()),
                _ => String::new(),
            };
            self.line(&format!("{}{place}: {message}", level.command()));
        }
    }

    /// Hides a secret from every later line of the job log.
    pub fn mask(&self, secret: &str) {
        if self.actions && !secret.is_empty() {
            for part in secret.lines().filter(|l| !l.trim().is_empty()) {
                self.command("add-mask", &[], part);
            }
        }
    }

    fn workspace_relative(&self, file: &Path) -> String {
        let rel = self
            .workspace
            .as_deref()
            .and_then(|ws| file.strip_prefix(ws).ok())
            .unwrap_or(file);
        rel.display().to_string()
    }
}

/// Output fenced from the runner's command processing; see [`Gha::fence`].
pub struct Fence<'a> {
    gha: &'a Gha,
    owner: bool,
}

impl Fence<'_> {
    /// One line of foreign output, verbatim: inside the fence only the (secret) token
    /// means anything to the runner.
    pub fn line(&self, text: &str) {
        console_line(self.gha.actions, text);
    }
}

impl Drop for Fence<'_> {
    fn drop(&mut self) {
        if self.owner
            && let Some(token) = lock_fence().take()
        {
            emit(&format!("::{token}::"));
        }
    }
}

/// The token of the fence in force, if any.
static FENCE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn lock_fence() -> std::sync::MutexGuard<'static, Option<String>> {
    FENCE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes a workflow command the tool means (Actions only). While a fence is up, it is
/// lifted for this one line and raised again under a fresh token: a fenced child that
/// saw the old token in the log still cannot end the fence.
pub fn emit_command(line: &str) {
    let mut state = lock_fence();
    match state.as_mut() {
        None => emit(line),
        Some(token) => {
            let fresh = escape::stop_token();
            emit(&format!("::{token}::\n{line}\n::stop-commands::{fresh}"));
            *token = fresh;
        }
    }
}

fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// RAII guard for `::group::`; groups are never nested.
pub struct Group<'a> {
    gha: &'a Gha,
}

impl Drop for Group<'_> {
    fn drop(&mut self) {
        if self.gha.actions {
            self.gha.command("endgroup", &[], "");
        }
    }
}

/// Writes a line to the console stream used for this run.
pub fn console_line(actions: bool, text: &str) {
    // A closed stdout/stderr (e.g. `| head`) must not turn into a panic.
    if actions {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    } else {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }
}

/// Formats outputs in the `GITHUB_OUTPUT` file syntax: `key=value` for one-line values,
/// the heredoc form with a random delimiter for multi-line ones.
pub fn format_outputs(outputs: &[(&str, String)]) -> anyhow::Result<String> {
    let mut text = String::new();
    for (key, value) in outputs {
        if key.is_empty() || key.contains(['=', '\n', '\r']) {
            bail!("invalid step output name `{key}`");
        }
        if value.contains(['\n', '\r']) {
            let delimiter = escape::random_delimiter();
            if key.contains(&delimiter) || value.contains(&delimiter) {
                bail!("step output `{key}` contains its own delimiter; refusing to write it");
            }
            let _ = write!(text, "{key}<<{delimiter}\n{value}\n{delimiter}\n");
        } else {
            let _ = writeln!(text, "{key}={value}");
        }
    }
    Ok(text)
}

/// Reads what [`format_outputs`] writes (a `GITHUB_OUTPUT` file), e.g. a child step's.
pub fn parse_outputs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((k, delim)) = line.split_once("<<") {
            let mut v = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                v.push(l);
            }
            out.push((k.to_owned(), v.join("\n")));
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((k.to_owned(), v.to_owned()));
        }
    }
    out
}

/// Escapes text for a Markdown table cell.
pub fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// `s` as literal Markdown text on one line, in a table cell or not: every ASCII
/// punctuation character backslash-escaped (`CommonMark` allows it for each), so text
/// from an image (a reason quoting its files, an os-release name) makes no link, code
/// span, emphasis or HTML.
pub fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            c if c.is_ascii_punctuation() => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_text_makes_no_markup() {
        assert_eq!(
            md_text("a`b` [x](http://e) <i>|\nz"),
            "a\\`b\\` \\[x\\]\\(http\\:\\/\\/e\\) \\<i\\>\\| z"
        );
    }

    #[test]
    fn single_line_outputs_use_key_value() {
        let text = format_outputs(&[("sha256", "ab".into()), ("size", "3".into())]).unwrap();
        assert_eq!(text, "sha256=ab\nsize=3\n");
    }

    #[test]
    fn multi_line_outputs_use_a_random_heredoc() {
        let text = format_outputs(&[("notes", "a\nb".into())]).unwrap();
        let mut lines = text.lines();
        let head = lines.next().unwrap();
        let delim = head.strip_prefix("notes<<").unwrap();
        assert!(delim.starts_with("ghadelimiter_"));
        assert_eq!(lines.next(), Some("a"));
        assert_eq!(lines.next(), Some("b"));
        assert_eq!(lines.next(), Some(delim));
    }

    #[test]
    fn outputs_round_trip() {
        let outputs = [
            ("a", "1".to_owned()),
            ("notes", "x\ny=z".to_owned()),
            ("empty", String::new()),
        ];
        let parsed = parse_outputs(&format_outputs(&outputs).unwrap());
        let want: Vec<(String, String)> = outputs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        assert_eq!(parsed, want);
    }

    #[test]
    fn bad_output_names_are_refused() {
        assert!(format_outputs(&[("a=b", "x".into())]).is_err());
        assert!(format_outputs(&[("", "x".into())]).is_err());
    }

    #[test]
    fn outputs_and_summary_go_to_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let gha = Gha {
            actions: false,
            output_file: Some(dir.path().join("out")),
            summary_file: Some(dir.path().join("sum")),
            ..Gha::default()
        };
        gha.set_outputs(&[("k", "v".into())]).unwrap();
        gha.set_outputs(&[("k2", "v2".into())]).unwrap();
        gha.summary("# hi\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out")).unwrap(),
            "k=v\nk2=v2\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sum")).unwrap(),
            "# hi\n"
        );
    }

    #[test]
    fn a_summary_that_cannot_be_written_does_not_fail_the_step() {
        // The summary "file" is a directory: appending fails, the outputs still go out.
        let dir = tempfile::tempdir().unwrap();
        let gha = Gha {
            summary_file: Some(dir.path().to_path_buf()),
            output_file: Some(dir.path().join("out")),
            ..Gha::default()
        };
        let report = Fixed;
        gha.publish(&report).unwrap();
        assert!(dir.path().is_dir(), "left as it was");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out")).unwrap(),
            "k=v\n"
        );
    }

    struct Fixed;
    #[derive(serde::Serialize, schemars::JsonSchema)]
    struct FixedOutputs {
        k: String,
    }
    impl StepReport for Fixed {
        type Outputs = FixedOutputs;
        fn outputs(&self) -> FixedOutputs {
            FixedOutputs { k: "v".into() }
        }
        fn summary(&self) -> String {
            "# x\n".into()
        }
    }

    #[test]
    fn md_cells_escape_pipes() {
        assert_eq!(md_cell("a|b\nc"), "a\\|b c");
    }
}
