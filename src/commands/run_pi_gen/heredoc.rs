//! Settings that pi-gen pastes into shell text. Some pi-gen scripts expand settings
//! inside *unquoted* heredocs fed to the chroot's shell, e.g. in
//! `stage1/01-sys-tweaks/00-run.sh`:
//!
//! ```text
//! on_chroot << EOF
//! echo "${FIRST_USER_NAME}:${FIRST_USER_PASS}" | chpasswd
//! EOF
//! ```
//!
//! The build host's bash substitutes the value into the script text, and the chroot's
//! shell then parses that text: a `"` or `$(…)` in the value becomes code. Quoting in
//! `config` cannot help. So the checkout's scripts are scanned for such expansions, and a
//! setting that lands in one must not hold the characters that its quoting context
//! would interpret.

use std::collections::BTreeMap;

use crate::error::usage;

/// How the chroot's shell will read the substituted text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Inside `'…'`: only `'` ends it.
    Single,
    /// Inside `"…"`: `$`, backquote, `\` and `"` are live.
    Double,
    /// Unquoted: the word must be plain (no spaces, globs, quotes, expansions).
    Bare,
    /// Inside a `sed` s-command with this delimiter, in a host-side script: the delimiter
    /// (or a `\` or newline) would end the command early, and GNU sed's `e` runs a program.
    Sed(char),
}

/// One `$NAME` / `${NAME…}` inside an unquoted heredoc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub var: String,
    /// The script, relative to the pi-gen root.
    pub file: String,
    /// 1-based.
    pub line: usize,
    pub context: Context,
}

/// One heredoc started on a command line: `<<[-] WORD`.
struct Start {
    strip_tabs: bool,
    quoted: bool,
    delimiter: String,
}

/// The heredocs a command line starts, in order: `<<` outside quotes and comments (not
/// the here-string `<<<`), with the delimiter word and whether any of it is quoted.
fn starts(line: &str) -> Vec<Start> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let (mut single, mut double) = (false, false);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\\' if !single => i += 2,
            b'\'' if !double => {
                single = !single;
                i += 1;
            }
            b'"' if !single => {
                double = !double;
                i += 1;
            }
            b'#' if !single && !double && (i == 0 || b[i - 1].is_ascii_whitespace()) => break,
            b'<' if !single && !double && b.get(i + 1) == Some(&b'<') => {
                if b.get(i + 2) == Some(&b'<') {
                    i += 3;
                    continue;
                }
                let mut j = i + 2;
                let strip_tabs = b.get(j) == Some(&b'-');
                if strip_tabs {
                    j += 1;
                }
                while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
                    j += 1;
                }
                // The word: up to a blank or an operator; quotes or `\` anywhere in it quote it.
                let mut word = String::new();
                let mut quoted = false;
                let mut q: Option<u8> = None;
                while j < b.len() {
                    let d = b[j];
                    match q {
                        Some(open) if d == open => {
                            q = None;
                        }
                        Some(_) => word.push(d as char),
                        None if d == b'\'' || d == b'"' => {
                            quoted = true;
                            q = Some(d);
                        }
                        None if d == b'\\' => {
                            quoted = true;
                            if let Some(&n) = b.get(j + 1) {
                                word.push(n as char);
                                j += 1;
                            }
                        }
                        None if d.is_ascii_whitespace() || b"|&;<>()".contains(&d) => break,
                        None => word.push(d as char),
                    }
                    j += 1;
                }
                if !word.is_empty() {
                    out.push(Start {
                        strip_tabs,
                        quoted,
                        delimiter: word,
                    });
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    out
}

/// The expansions in unquoted heredocs of one script.
pub fn scan(file: &str, text: &str) -> Vec<Expansion> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((_, line)) = lines.next() {
        for start in starts(line) {
            // Quote state carries across the body's lines, as the chroot's shell reads it.
            let mut ctx = Context::Bare;
            // A heredoc inside the body: its text is not parsed for quotes by the inner
            // shell, and an unquoted one expands `$(...)` again: the strictest context.
            let mut nested = false;
            for (n, body) in lines.by_ref() {
                let end = if start.strip_tabs {
                    body.trim_start_matches('\t')
                } else {
                    body
                };
                if end == start.delimiter {
                    break;
                }
                if start.quoted {
                    continue;
                }
                if !nested && body.contains("<<") && !body.contains("<<<") {
                    nested = true;
                }
                scan_line(body, &mut ctx, |var, context| {
                    out.push(Expansion {
                        var,
                        file: file.to_owned(),
                        line: n + 1,
                        context: if nested { Context::Bare } else { context },
                    });
                });
            }
        }
    }
    out
}

/// Calls `found` for each parameter expansion in a heredoc body line, with the quoting
/// context the *inner* shell will see around the substituted text; `ctx` carries the
/// quote state from line to line.
fn scan_line(line: &str, ctx: &mut Context, mut found: impl FnMut(String, Context)) {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            // The outer shell's heredoc escapes (`\$`, `\``, `\\`) apply whatever the
            // quotes; inside single quotes any other `\` is literal to the inner shell.
            b'\\' if *ctx == Context::Single => {
                i += if matches!(b.get(i + 1), Some(b'$' | b'`' | b'\\')) {
                    2
                } else {
                    1
                };
            }
            b'\\' => i += 2,
            b'"' if *ctx != Context::Single => {
                *ctx = if *ctx == Context::Double {
                    Context::Bare
                } else {
                    Context::Double
                };
                i += 1;
            }
            b'\'' if *ctx != Context::Double => {
                *ctx = if *ctx == Context::Single {
                    Context::Bare
                } else {
                    Context::Single
                };
                i += 1;
            }
            b'$' => match parameter(&line[i + 1..]) {
                Some((name, len)) => {
                    i += 1 + len;
                    found(name, *ctx);
                }
                None => i += 1,
            },
            _ => i += 1,
        }
    }
}

static SED_S: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"(?:^|;|\s)s([/|#,:@!%])").expect("valid regex")
});

/// Settings expanded into `sed` s-commands (`sed -i "s/RELEASE/${RELEASE}/g" …`,
/// `sed … -e "s|APT_PROXY|${APT_PROXY}|"`): each double-quoted argument of a line that runs
/// sed, with the delimiter of the s-command the expansion is in.
pub fn scan_sed(file: &str, text: &str) -> Vec<Expansion> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if !line.contains("sed ") || line.trim_start().starts_with('#') {
            continue;
        }
        for (k, arg) in line.split('"').enumerate() {
            if k % 2 == 0 {
                continue;
            }
            let commands: Vec<(usize, char)> = SED_S
                .captures_iter(arg)
                .filter_map(|c| {
                    let m = c.get(1)?;
                    Some((m.start(), m.as_str().chars().next()?))
                })
                .collect();
            for (at, _) in arg.match_indices('$') {
                let Some(&(_, delim)) = commands.iter().rev().find(|(start, _)| *start < at) else {
                    continue;
                };
                if let Some((name, _)) = parameter(&arg[at + 1..]) {
                    out.push(Expansion {
                        var: name,
                        file: file.to_owned(),
                        line: n + 1,
                        context: Context::Sed(delim),
                    });
                }
            }
        }
    }
    out
}

/// The parameter named right after a `$` (`NAME` or `{NAME…`), and how many bytes its
/// name takes; `None` for `$(`, `$1`, `$$` and the like.
fn parameter(rest: &str) -> Option<(String, usize)> {
    let name: String = rest
        .strip_prefix('{')
        .unwrap_or(rest)
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        .then(|| {
            let len = name.len() + usize::from(rest.starts_with('{'));
            (name, len)
        })
}

/// The characters a value may not hold in `ctx` (a description for messages), or `None`
/// when it is safe there.
fn unsafe_in(value: &str, ctx: Context) -> Option<String> {
    let control = value.chars().any(char::is_control);
    match ctx {
        Context::Sed(d) => (control || value.contains(['\\', d]))
            .then(|| format!("`{d}`, `\\` or a control character")),
        Context::Single => {
            (control || value.contains('\'')).then(|| "`'` or a control character".to_owned())
        }
        Context::Double => (control || value.contains(['$', '`', '\\', '"']))
            .then(|| "`$`, a backquote, `\\`, `\"` or a control character".to_owned()),
        Context::Bare => (!value.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '.' | '_' | '+' | ':' | ',' | '/' | '@' | '%' | '^' | '=' | '-'
                )
        }))
        .then(|| "anything but letters, digits and `._+:,/@%^=-`".to_owned()),
    }
}

/// Settings whose values must never be printed.
pub fn is_secret(name: &str) -> bool {
    ["PASS", "PASSWORD", "SECRET", "TOKEN", "KEY"]
        .iter()
        .any(|s| name.contains(s))
        && name != "KEYBOARD_KEYMAP"
        && name != "KEYBOARD_LAYOUT"
}

/// Refuses settings whose values would be interpreted where pi-gen pastes them. The
/// message names the setting, the script and what to do; never the value of a secret.
pub fn check(settings: &BTreeMap<String, String>, found: &[Expansion]) -> anyhow::Result<()> {
    for (name, value) in settings {
        // Every place the setting lands must be safe; the first that is not is named.
        for e in found.iter().filter(|e| &e.var == name) {
            let Some(what) = unsafe_in(value, e.context) else {
                continue;
            };
            let shown = if is_secret(name) {
                String::new()
            } else {
                format!(" (`{}`)", value.escape_debug())
            };
            let (into, ctx) = match e.context {
                Context::Single => ("a script for the image's chroot", "inside single quotes"),
                Context::Double => ("a script for the image's chroot", "inside double quotes"),
                Context::Bare => ("a script for the image's chroot", "unquoted"),
                Context::Sed(_) => ("a sed program on the build host", "an s-command"),
            };
            return Err(usage(format!(
                "{name}{shown} would run as code: this pi-gen pastes it into {into} ({} line {}, {ctx}), where it must not contain {what}. Choose a value without them{}",
                e.file,
                e.line,
                if name.contains("PASS") {
                    ", or set the password at first boot (cloud-init `chpasswd`, or Raspberry Pi Imager's customisation)"
                } else {
                    ""
                }
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAGE1: &str = "#!/bin/bash -e\n\ninstall -v -m 644 files/fstab \"${ROOTFS_DIR}/etc/fstab\"\n\non_chroot << EOF\nif ! id -u ${FIRST_USER_NAME} >/dev/null 2>&1; then\n\tadduser --disabled-password --gecos \"\" ${FIRST_USER_NAME}\nfi\nif [ -n \"${FIRST_USER_PASS}\" ]; then\n\techo \"${FIRST_USER_NAME}:${FIRST_USER_PASS}\" | chpasswd\nfi\necho \"root:root\" | chpasswd\nEOF\n\non_chroot <<- \\EOF\n\techo \"$QUOTED\"\nEOF\ncat <<'X'\n$ALSO_QUOTED\nX\necho '$NOT_A_HEREDOC'\non_chroot <<EOF\nsed 's/x/$SINGLE/' f \\$ESCAPED\nEOF\n";

    #[test]
    fn finds_expansions_in_unquoted_heredocs_only() {
        let found = scan("stage1/01-sys-tweaks/00-run.sh", STAGE1);
        let got: Vec<(&str, usize, Context)> = found
            .iter()
            .map(|e| (e.var.as_str(), e.line, e.context))
            .collect();
        assert_eq!(
            got,
            [
                ("FIRST_USER_NAME", 6, Context::Bare),
                ("FIRST_USER_NAME", 7, Context::Bare),
                ("FIRST_USER_PASS", 9, Context::Double),
                ("FIRST_USER_NAME", 10, Context::Double),
                ("FIRST_USER_PASS", 10, Context::Double),
                ("SINGLE", 23, Context::Single),
            ]
        );
    }

    #[test]
    fn refuses_what_the_context_would_interpret_without_printing_secrets() {
        let found = scan("stage1/01-sys-tweaks/00-run.sh", STAGE1);
        let mut s = BTreeMap::new();
        s.insert(
            "FIRST_USER_PASS".to_owned(),
            "p@ss:w0rd! with spaces".to_owned(),
        );
        assert!(check(&s, &found).is_ok());
        for evil in ["a\"; touch /x; echo \"", "$(id)", "`id`", "a\\", "a\nb"] {
            s.insert("FIRST_USER_PASS".to_owned(), evil.to_owned());
            let err = check(&s, &found).unwrap_err().to_string();
            assert!(err.contains("FIRST_USER_PASS would run as code"), "{err}");
            assert!(
                err.contains("stage1/01-sys-tweaks/00-run.sh line 9"),
                "{err}"
            );
            assert!(!err.contains(evil), "the password is printed: {err}");
        }
        let mut s = BTreeMap::new();
        s.insert("FIRST_USER_NAME".to_owned(), "pi user".to_owned());
        let err = check(&s, &found).unwrap_err().to_string();
        assert!(
            err.contains("unquoted") && err.contains("`pi user`"),
            "{err}"
        );
        s.insert("SINGLE".to_owned(), "it's".to_owned());
        s.insert("FIRST_USER_NAME".to_owned(), "pi".to_owned());
        assert!(
            check(&s, &found)
                .unwrap_err()
                .to_string()
                .contains("SINGLE")
        );
    }

    #[test]
    fn tricky_heredocs_are_read_as_the_shells_read_them() {
        let ctx = |text: &str, var: &str| -> Vec<Context> {
            scan("x.sh", text)
                .into_iter()
                .filter(|e| e.var == var)
                .map(|e| e.context)
                .collect()
        };
        // In single quotes `\` is literal: `'C:\'` ends the quotes.
        assert_eq!(
            ctx("on_chroot << EOF\necho 'C:\\' ${TZ_X}\nEOF\n", "TZ_X"),
            [Context::Bare]
        );
        // A heredoc in the body: its text is not quoted for the inner shell.
        assert_eq!(
            ctx(
                "on_chroot << EOF\ncat > f <<INNER\nkeymap '${KM}'\nINNER\nEOF\n",
                "KM"
            ),
            [Context::Bare]
        );
        // Two heredocs on one line: both bodies are read, in order.
        let two = "cat <<'Q' >/dev/null; on_chroot <<EOF\n$QX\nQ\necho $QY\nEOF\n";
        assert!(ctx(two, "QX").is_empty());
        assert_eq!(ctx(two, "QY"), [Context::Bare]);
        // `<<` in a comment starts nothing.
        assert_eq!(
            ctx(
                "true # use <<'EOF' for literal text\non_chroot << EOF\necho ${CM}\nEOF\n",
                "CM"
            ),
            [Context::Bare]
        );
        // Quotes carry across lines.
        assert_eq!(
            ctx("on_chroot << EOF\necho \"don't\n'${PK}'\"\nEOF\n", "PK"),
            [Context::Double]
        );
        // A here-string is not a heredoc.
        assert!(ctx("cat <<< \"$HS\"\necho $HS2\n", "HS2").is_empty());
    }

    #[test]
    fn settings_in_sed_programs() {
        let text = "sed -i \"s/RELEASE/${RELEASE}/g\" \"${ROOTFS_DIR}/etc/apt/sources.list\"\n\tsed \"${ROOTFS_DIR}/etc/apt/apt.conf.d/51cache\" -i -e \"s|APT_PROXY|${APT_PROXY}|\"\nsed -i \"s/^pi /$FIRST_USER_NAME /\" f\n# sed \"s/x/$COMMENTED/\"\n";
        let found = scan_sed("stage0/00-configure-apt/00-run.sh", text);
        let got: Vec<(&str, Context)> = found.iter().map(|e| (e.var.as_str(), e.context)).collect();
        assert_eq!(
            got,
            [
                ("RELEASE", Context::Sed('/')),
                ("APT_PROXY", Context::Sed('|')),
                ("FIRST_USER_NAME", Context::Sed('/')),
            ]
        );
        let mut s = BTreeMap::new();
        s.insert(
            "APT_PROXY".to_owned(),
            "http://proxy:3128|;e touch /x;#".to_owned(),
        );
        let err = check(&s, &found).unwrap_err().to_string();
        assert!(
            err.contains("a sed program on the build host") && err.contains("`|`"),
            "{err}"
        );
        s.insert("APT_PROXY".to_owned(), "http://proxy:3128/".to_owned());
        assert!(check(&s, &found).is_ok());
    }

    #[test]
    fn secrets_are_recognised() {
        assert!(is_secret("FIRST_USER_PASS") && is_secret("WPA_PASSWORD"));
        assert!(is_secret("PUBKEY_SSH_FIRST_USER"));
        assert!(!is_secret("KEYBOARD_KEYMAP") && !is_secret("TARGET_HOSTNAME"));
    }
}
