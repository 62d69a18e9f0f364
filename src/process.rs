//! External commands, each with a sentence saying what it was for, so a failure reads
//! "failed to <summary>" with the command, its exit code and its stderr.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;

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
    /// Start from an empty environment (then only `env` is set).
    pub env_clear: bool,
    /// Variables the child does not inherit.
    pub env_remove: Vec<String>,
    /// Of [`SECRET_ENV`], those the child keeps ([`pass_secrets`]): only when the child
    /// is this tool.
    pub pass_secrets: Vec<String>,
    /// Run in a process group of its own, so that the whole tree can be signalled.
    pub own_group: bool,
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
            env_clear: false,
            env_remove: Vec::new(),
            pass_secrets: Vec::new(),
            own_group: false,
            summary: summary.to_owned(),
        }
    }

    pub fn args<I: Into<OsString>>(mut self, args: impl IntoIterator<Item = I>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The child sees only the variables given with [`CmdSpec::env`].
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self
    }

    /// The child keeps these of [`SECRET_ENV`] (for a child that is this tool).
    pub fn pass_secrets(mut self, names: &[&str]) -> Self {
        self.pass_secrets
            .extend(names.iter().map(|n| (*n).to_owned()));
        self
    }

    /// The child does not inherit `name`.
    pub fn env_remove(mut self, name: &str) -> Self {
        self.env_remove.push(name.to_owned());
        self
    }

    /// Replaces this process with the command (same pid, same stdio): returns only if
    /// that failed.
    pub fn exec(&self) -> anyhow::Error {
        let err = std::os::unix::process::CommandExt::exec(&mut self.command());
        anyhow::Error::new(err).context(format!(
            "failed to {}: cannot run `{}`",
            self.summary, self.program
        ))
    }

    pub fn own_group(mut self) -> Self {
        self.own_group = true;
        self
    }

    fn command(&self) -> Command {
        let mut cmd = command(&self.program);
        if self.env_clear {
            cmd.env_clear();
        }
        let keep: Vec<&str> = self.pass_secrets.iter().map(String::as_str).collect();
        pass_secrets(&mut cmd, &keep);
        for name in &self.env_remove {
            cmd.env_remove(name);
        }
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        if self.own_group {
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        }
        cmd
    }

    /// Starts the command with stdout and stderr delivered line by line ([`Streaming`]);
    /// stdin is empty.
    pub fn stream(&self) -> anyhow::Result<Streaming> {
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tracing::debug!("running `{}` to {}", display_command(&cmd), self.summary);
        let mut child = cmd.spawn().with_context(|| {
            format!("failed to {}: cannot run `{}`", self.summary, self.program)
        })?;
        // Bounded: a child that writes faster than it is read waits for the reader
        // instead of filling this process's memory.
        let (tx, rx) = mpsc::sync_channel(64);
        let pipes: [(Pipe, Option<Box<dyn Read + Send>>); 2] = [
            (
                Pipe::Stdout,
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
            ),
            (
                Pipe::Stderr,
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
            ),
        ];
        let mut open = 0;
        for (pipe, reader) in pipes {
            let Some(mut reader) = reader else { continue };
            open += 1;
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tx.send((pipe, Some(buf[..n].to_vec()))).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = tx.send((pipe, None));
            });
        }
        Ok(Streaming {
            child,
            rx,
            open,
            pending: [Vec::new(), Vec::new()],
            ready: std::collections::VecDeque::new(),
            tee: [None, None],
            tee_error: None,
        })
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

    /// The command line for a log line, quoted as a shell would need it; never the
    /// environment.
    pub fn display(&self) -> String {
        display_command(&self.command())
    }

    /// Runs the command and returns its trimmed stdout; the exact exit code is reported.
    pub fn output(&self) -> anyhow::Result<String> {
        tracing::debug!("running `{}` to {}", self.display(), self.summary);
        let out = self.command().output().with_context(|| {
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

/// The longest line [`Streaming`] holds; longer ones are handed out in pieces this long.
pub const MAX_LINE: usize = 64 << 10;

/// Which output of the child a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipe {
    Stdout,
    Stderr,
}

/// What [`Streaming::next`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete line, without its `\n`.
    Line(Pipe, Vec<u8>),
    /// Bytes that end no line yet arrived ([`Streaming::pending`] holds them): a prompt
    /// such as `login: ` never ends its line.
    Partial(Pipe),
    /// Nothing arrived within the wait.
    Idle,
    /// Both pipes are closed: the child has exited, or closed them.
    Closed,
}

/// A running child whose stdout and stderr are read by two threads and handed out as
/// lines, so that the caller can keep its own clock (deadlines, stall checks,
/// interruption) between lines. The one reading loop for pi-gen and QEMU.
pub struct Streaming {
    pub child: std::process::Child,
    rx: mpsc::Receiver<(Pipe, Option<Vec<u8>>)>,
    open: usize,
    pending: [Vec<u8>; 2],
    ready: std::collections::VecDeque<Event>,
    tee: [Option<Box<dyn std::io::Write + Send>>; 2],
    tee_error: Option<std::io::Error>,
}

impl Streaming {
    fn slot(pipe: Pipe) -> usize {
        match pipe {
            Pipe::Stdout => 0,
            Pipe::Stderr => 1,
        }
    }

    /// Every byte of `pipe`, as it arrives and before it is split into lines, also goes
    /// to `sink` (smoke's serial.log keeps the console exactly as the guest wrote it).
    pub fn tee(&mut self, pipe: Pipe, sink: impl std::io::Write + Send + 'static) {
        self.tee[Self::slot(pipe)] = Some(Box::new(sink));
    }

    /// The first error writing to a [`Streaming::tee`] sink, if any.
    pub fn take_tee_error(&mut self) -> Option<std::io::Error> {
        self.tee_error.take()
    }

    /// The next line (or partial line), waiting at most `wait` for one.
    pub fn next(&mut self, wait: std::time::Duration) -> Event {
        if let Some(e) = self.ready.pop_front() {
            return e;
        }
        if self.open == 0 {
            return Event::Closed;
        }
        match self.rx.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => Event::Idle,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.open = 0;
                self.flush_all();
                self.ready.pop_front().unwrap_or(Event::Closed)
            }
            Ok((pipe, None)) => {
                self.open -= 1;
                self.flush(pipe);
                self.ready.pop_front().unwrap_or(Event::Idle)
            }
            Ok((pipe, Some(bytes))) => {
                if let Some(sink) = &mut self.tee[Self::slot(pipe)]
                    && let Err(e) = sink.write_all(&bytes)
                {
                    self.tee_error.get_or_insert(e);
                }
                let buf = &mut self.pending[Self::slot(pipe)];
                for b in bytes {
                    if b == b'\n' {
                        self.ready.push_back(Event::Line(pipe, std::mem::take(buf)));
                    } else {
                        buf.push(b);
                        // A child that never ends its line (a hostile guest) costs no
                        // more than this much memory: the text goes on as a new line.
                        if buf.len() >= MAX_LINE {
                            self.ready.push_back(Event::Line(pipe, std::mem::take(buf)));
                        }
                    }
                }
                if !buf.is_empty() {
                    self.ready.push_back(Event::Partial(pipe));
                }
                self.ready.pop_front().unwrap_or(Event::Idle)
            }
        }
    }

    /// The unfinished line of `pipe` so far.
    pub fn pending(&self, pipe: Pipe) -> &[u8] {
        &self.pending[Self::slot(pipe)]
    }

    /// At a pipe's end, its unfinished last line is a line.
    fn flush(&mut self, pipe: Pipe) {
        let buf = std::mem::take(&mut self.pending[Self::slot(pipe)]);
        // A Partial queued for it is spent: the Line below carries the bytes.
        self.ready.retain(|e| *e != Event::Partial(pipe));
        if !buf.is_empty() {
            self.ready.push_back(Event::Line(pipe, buf));
        }
    }

    fn flush_all(&mut self) {
        self.flush(Pipe::Stdout);
        self.flush(Pipe::Stderr);
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

    /// Lines of both pipes arrive whole, split however the child wrote them; a
    /// trailing partial line is announced, then handed out as a line at the end.
    #[test]
    fn streamed_lines_arrive_whole_from_both_pipes() {
        let mut s = CmdSpec::new("sh", "test streaming")
            .args([
                "-c",
                "printf 'a'; sleep 0.2; printf 'b\\nc\\n'; echo err >&2; printf 'login: '",
            ])
            .stream()
            .unwrap();
        let mut lines = Vec::new();
        let mut partial_seen = false;
        loop {
            match s.next(std::time::Duration::from_millis(50)) {
                Event::Line(p, l) => lines.push((p, String::from_utf8(l).unwrap())),
                Event::Partial(Pipe::Stdout) => {
                    partial_seen |= s.pending(Pipe::Stdout) == b"login: ";
                }
                Event::Partial(Pipe::Stderr) | Event::Idle => {}
                Event::Closed => break,
            }
        }
        assert!(s.child.wait().unwrap().success());
        assert!(partial_seen, "{lines:?}");
        let out: Vec<&str> = lines
            .iter()
            .filter(|(p, _)| *p == Pipe::Stdout)
            .map(|(_, l)| l.as_str())
            .collect();
        assert_eq!(out, ["ab", "c", "login: "]);
        assert!(
            lines.contains(&(Pipe::Stderr, "err".to_owned())),
            "{lines:?}"
        );
    }

    /// Output without a newline is handed out in bounded pieces, none of it lost.
    #[test]
    fn an_endless_line_is_cut_into_bounded_pieces() {
        let mut s = CmdSpec::new("sh", "test long lines")
            .args(["-c", "head -c 300000 /dev/zero | tr '\\0' x"])
            .stream()
            .unwrap();
        let mut total = 0;
        loop {
            match s.next(std::time::Duration::from_millis(50)) {
                Event::Line(_, l) => {
                    assert!(l.len() <= MAX_LINE);
                    total += l.len();
                }
                Event::Partial(p) => assert!(s.pending(p).len() < MAX_LINE),
                Event::Idle => {}
                Event::Closed => break,
            }
        }
        s.child.wait().unwrap();
        assert_eq!(total, 300_000);
    }

    #[test]
    fn output_returns_the_trimmed_stdout() {
        let out = CmdSpec::new("sh", "echo")
            .arg("-c")
            .arg("echo hi")
            .output()
            .unwrap();
        assert_eq!(out, "hi");
    }
}
