//! External commands, each with a sentence saying what it was for, so a failure reads
//! "failed to <summary>" with the command, its exit code and its stderr.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

/// Credentials a runner or a user may have in the environment. No child process gets
/// them (pi-gen and its scripts run as root; apt, git, QEMU and debugfs never need
/// them); the one step that does (`release` run by `pipeline`) is handed its own.
pub const SECRET_ENV: &[&str] = &[
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "GH_ENTERPRISE_TOKEN",
    "GITHUB_ENTERPRISE_TOKEN",
    "INPUT_GITHUB_TOKEN",
    "INPUT_GITHUB-TOKEN",
    "INPUT_IDENTITY_TOKEN",
    "INPUT_IDENTITY-TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_RUNTIME_URL",
    "ACTIONS_RESULTS_URL",
    "ACTIONS_CACHE_URL",
    "SIGSTORE_ID_TOKEN",
    "COSIGN_PASSWORD",
    "COSIGN_PRIVATE_KEY",
];

/// A [`Command`] for `program` whose environment holds none of [`SECRET_ENV`]. Every
/// child process of this tool starts here.
#[allow(clippy::disallowed_methods)] // The one place a Command is made.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for name in SECRET_ENV {
        cmd.env_remove(name);
    }
    cmd
}

/// Hands `names` from this process's environment to `cmd` (after [`command`] removed
/// them): only for a child that is itself this tool and needs the credential.
pub fn pass_secrets(cmd: &mut Command, names: &[&str]) {
    for name in names {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
}

/// Runs `cmd` with its stdout and stderr merged into one pipe and shown line by line,
/// fenced ([`crate::gha::Gha::fence`]): for tools whose output carries third-party text
/// (apt's package lists). Returns the exit status.
pub fn run_fenced(
    gha: &crate::gha::Gha,
    mut cmd: Command,
    summary: &str,
) -> anyhow::Result<std::process::ExitStatus> {
    use std::io::BufRead as _;
    let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
    let writer2 = writer.try_clone().context("cannot duplicate a pipe")?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(writer2);
    tracing::debug!("running `{}` to {summary}", display_command(&cmd));
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "failed to {summary}: cannot run `{}`",
            display_command(&cmd)
        )
    })?;
    // The parent's copies of the write end must go, or the reader never sees EOF.
    drop(cmd);
    let fence = gha.fence();
    for line in std::io::BufReader::new(reader).split(b'\n') {
        let Ok(line) = line else { break };
        fence.line(&String::from_utf8_lossy(&line));
    }
    drop(fence);
    child
        .wait()
        .with_context(|| format!("failed to {summary}: cannot wait for it"))
}

/// Where `tool` is on PATH, or in /usr/sbin or /sbin (which a non-root PATH often lacks,
/// and where mkfs, debugfs and friends live).
pub fn find_program(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A command line for a log line: program and arguments (quoted where a shell would need
/// it), never the environment, which may hold credentials.
pub fn display_command(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| crate::shell::quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Clone)]
pub struct CmdSpec {
    pub program: String,
    pub args: Vec<OsString>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    /// What the command is for, e.g. "read the pi-gen commit".
    pub summary: String,
}

impl CmdSpec {
    pub fn new(program: &str, summary: &str) -> Self {
        Self {
            program: program.to_owned(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            summary: summary.to_owned(),
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    fn display(&self) -> String {
        let mut s = self.program.clone();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Runs the command and returns its trimmed stdout; the exact exit code is reported.
    pub fn output(&self) -> anyhow::Result<String> {
        tracing::debug!("running `{}` to {}", self.display(), self.summary);
        let mut cmd = command(&self.program);
        cmd.args(&self.args);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let out = cmd.output().with_context(|| {
            format!("failed to {}: cannot run `{}`", self.summary, self.program)
        })?;
        if !out.status.success() {
            let code = out.status.code().map_or_else(
                || "killed by a signal".to_owned(),
                |c| format!("exit code {c}"),
            );
            bail!(
                "failed to {}: `{}` ended with {code}: {}",
                self.summary,
                self.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_real_exit_code() {
        let err = CmdSpec::new("sh", "test exit codes")
            .arg("-c")
            .arg("echo oops >&2; exit 2")
            .output()
            .unwrap_err()
            .to_string();
        assert!(err.contains("failed to test exit codes"), "{err}");
        assert!(err.contains("exit code 2"), "{err}");
        assert!(err.contains("oops"), "{err}");
    }

    #[test]
    fn command_lines_are_shown_without_the_environment() {
        let mut c = command("docker");
        c.args(["run", "--env", "APT_PROXY", "a b", "it's"])
            .env("APT_PROXY", "http://user:secret@proxy");
        let shown = display_command(&c);
        assert_eq!(shown, "docker run --env APT_PROXY 'a b' 'it'\\''s'");
        assert!(!shown.contains("secret"));
    }

    #[test]
    fn returns_stdout() {
        let out = CmdSpec::new("sh", "echo")
            .arg("-c")
            .arg("echo hi")
            .output()
            .unwrap();
        assert_eq!(out, "hi");
    }
}
