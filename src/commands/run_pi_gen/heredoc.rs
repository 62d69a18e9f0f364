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

static START: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r#"<<(-?)[ \t]*(\\?)(['"]?)([A-Za-z_][A-Za-z0-9_]*)(['"]?)"#)
        .expect("valid regex")
});

/// The expansions in unquoted heredocs of one script.
pub fn scan(file: &str, text: &str) -> Vec<Expansion> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((_, line)) = lines.next() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        let Some(c) = START.captures(line) else {
            continue;
        };
        // `<<<` is a here-string, not a heredoc.
        let at = c.get(0).map_or(0, |m| m.start());
        if line[at..].starts_with("<<<") {
            continue;
        }
        let strip_tabs = &c[1] == "-";
        let quoted = !c[2].is_empty() || !c[3].is_empty();
        let delimiter = c[4].to_owned();
        for (n, body) in lines.by_ref() {
            let end = if strip_tabs {
                body.trim_start_matches('\t')
            } else {
                body
            };
            if end == delimiter {
                break;
            }
            if !quoted {
                scan_line(body, |var, context| {
                    out.push(Expansion {
                        var,
                        file: file.to_owned(),
                        line: n + 1,
                        context,
                    });
                });
            }
        }
    }
    out
}

/// Calls `found` for each parameter expansion in a heredoc body line, with the quoting
/// context the *inner* shell will see around the substituted text.
fn scan_line(line: &str, mut found: impl FnMut(String, Context)) {
    let b = line.as_bytes();
    let mut ctx = Context::Bare;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            // In a heredoc, `\` escapes `$`, backquote, `\` and newline for the outer
            // shell whatever the quotes.
            b'\\' => i += 2,
            b'"' if ctx != Context::Single => {
                ctx = if ctx == Context::Double {
                    Context::Bare
                } else {
                    Context::Double
                };
                i += 1;
            }
            b'\'' if ctx != Context::Double => {
                ctx = if ctx == Context::Single {
                    Context::Bare
                } else {
                    Context::Single
                };
                i += 1;
            }
            b'$' => {
                let rest = &line[i + 1..];
                let name: String = rest
                    .strip_prefix('{')
                    .unwrap_or(rest)
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                    i += 1 + name.len() + usize::from(rest.starts_with('{'));
                    found(name, ctx);
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
}

/// The characters a value may not hold in `ctx` (a description for messages), or `None`
/// when it is safe there.
fn unsafe_in(value: &str, ctx: Context) -> Option<&'static str> {
    let control = value.chars().any(char::is_control);
    match ctx {
        Context::Single => {
            (control || value.contains('\'')).then_some("`'` or a control character")
        }
        Context::Double => (control || value.contains(['$', '`', '\\', '"']))
            .then_some("`$`, a backquote, `\\`, `\"` or a control character"),
        Context::Bare => (!value.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '.' | '_' | '+' | ':' | ',' | '/' | '@' | '%' | '^' | '=' | '-'
                )
        }))
        .then_some("anything but letters, digits and `._+:,/@%^=-`"),
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
            let ctx = match e.context {
                Context::Single => "inside single quotes",
                Context::Double => "inside double quotes",
                Context::Bare => "unquoted",
            };
            return Err(usage(format!(
                "{name}{shown} would run as code: this pi-gen pastes it into a script for the image's chroot ({} line {}, {ctx}), where it must not contain {what}. Choose a value without them{}",
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
    fn secrets_are_recognised() {
        assert!(is_secret("FIRST_USER_PASS") && is_secret("WPA_PASSWORD"));
        assert!(is_secret("PUBKEY_SSH_FIRST_USER"));
        assert!(!is_secret("KEYBOARD_KEYMAP") && !is_secret("TARGET_HOSTNAME"));
    }
}
