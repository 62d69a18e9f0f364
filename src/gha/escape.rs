//! Escaping for everything the runner reads. Workflow commands are escaped exactly as
//! actions/toolkit does (`packages/core/src/command.ts`), so a message can never end a
//! command early or smuggle in a second one; plain lines are made inert
//! ([`plain_line`]); output the tool does not control is fenced ([`stop_token`]).
//!
//! What the runner treats as a command (actions/runner, `ActionCommand.cs` and
//! `ProcessInvoker.cs`): it splits a step's stdout *and* stderr into lines at `\n`, `\r`
//! or `\r\n`; a line is a command when, after `TrimStart()` (all Unicode white space),
//! it starts with `::name` (compared culture-aware, so default-ignorable characters
//! such as U+200B may be skipped), or when it contains the legacy `##[name]` anywhere.

use std::fmt::Write as _;

/// Escapes the message part of `::name props::message`, as the toolkit does, and one
/// step more: `##[` becomes `##%5B`, so the line never holds the legacy syntax even for a
/// reader that does not parse the `::` command first.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
        .replace("##[", "##%5B")
}

/// Escapes a property value (`file=`, `title=`): data escaping plus `:` and `,`.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Formats one workflow command line (without the trailing newline). URL credentials
/// in the message or a property are shown as `***@` (masks hide them too; this does
/// not depend on the runner).
pub fn command(name: &str, props: &[(&str, &str)], message: &str) -> String {
    let message = &redact_credentials(message);
    let props: Vec<String> = props
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", escape_property(&redact_credentials(v))))
        .collect();
    if props.is_empty() {
        format!("::{name}::{}", escape_data(message))
    } else {
        format!("::{name} {}::{}", props.join(","), escape_data(message))
    }
}

/// Characters a reader of the log cannot see, or that a culture-aware comparison may
/// skip: C0/C1 controls, line and paragraph separators, and Unicode's default-ignorable
/// and other format characters (`DerivedCoreProperties` 16.0 and category Cf).
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c as u32,
            0x00AD
                | 0x034F
                | 0x0600..=0x0605
                | 0x061C
                | 0x06DD
                | 0x070F
                | 0x0890..=0x0891
                | 0x08E2
                | 0x115F..=0x1160
                | 0x17B4..=0x17B5
                | 0x180B..=0x180F
                | 0x200B..=0x200F
                | 0x2028..=0x202E
                | 0x2060..=0x206F
                | 0x3164
                | 0xFE00..=0xFE0F
                | 0xFEFF
                | 0xFFA0
                | 0xFFF0..=0xFFFB
                | 0x110BD
                | 0x110CD
                | 0x13430..=0x1343F
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0000..=0xE0FFF
        )
}

/// One line of the tool's own text, safe for a log the runner reads: URL credentials
/// are shown as `***@`, line breaks and invisible characters are shown escaped (`\n`, `\u{200b}`), so no value inside can
/// start a line, and what would still read as a command is defused (a leading `::`
/// becomes `%3A:`, `##[` becomes `##%5B`).
pub fn plain_line(text: &str) -> String {
    let text = &redact_credentials(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            // A tab too: ICU's comparison may skip control characters, so `:\t::`
            // could start with `::` for the runner.
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if is_invisible(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    if out.contains("##[") {
        out = out.replace("##[", "##%5B");
    }
    let lead = out.len() - out.trim_start().len();
    if out[lead..].starts_with("::") {
        out.replace_range(lead..=lead, "%3A");
    }
    out
}

/// Text the tool laid out over several lines (a usage message): each line made safe as
/// by [`plain_line`].
pub fn plain_lines(text: &str) -> String {
    text.split('\n')
        .map(|l| plain_line(l.strip_suffix('\r').unwrap_or(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

// Greedy up to the authority's last `@`, as URL parsers read it: a password holding a
// raw `@` is still hidden whole.
static CREDENTIALS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"(?i)([a-z][a-z0-9+.-]*://)([^/?#\s]+)@")
        .unwrap_or_else(|e| unreachable!("a literal pattern: {e}"))
});

/// Every `user:password@` in URLs inside `text`, e.g. a proxy's, as `***@`.
pub fn redact_credentials(text: &str) -> String {
    CREDENTIALS.replace_all(text, "${1}***@").into_owned()
}

/// The credentials of the URLs inside `text`: each whole `user:password` and its
/// password, plain and percent-decoded, for `::add-mask::`.
pub fn url_credentials(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for c in CREDENTIALS.captures_iter(text) {
        let userinfo = &c[2];
        let mut parts = vec![userinfo.to_owned()];
        if let Some((_, password)) = userinfo.split_once(':')
            && !password.is_empty()
        {
            parts.push(password.to_owned());
        }
        for p in parts {
            let decoded = percent_encoding::percent_decode_str(&p)
                .decode_utf8_lossy()
                .into_owned();
            if decoded != p {
                found.push(decoded);
            }
            found.push(p);
        }
    }
    found
}

/// A token for `::stop-commands::` that nothing fenced can predict: 32 hex digits, so
/// it is never a registered command's name.
pub fn stop_token() -> String {
    crate::checksum::hex(&random_bytes())
}

fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    // getrandom only fails when the OS has no entropy source at all; a time-based
    // fallback still gives a value the callers check against what they fence.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    bytes
}

/// A heredoc delimiter for `GITHUB_OUTPUT`, random so that no value can predict it.
pub fn random_delimiter() -> String {
    format!("ghadelimiter_{}", crate::checksum::hex(&random_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_escapes_percent_first() {
        assert_eq!(escape_data("100%\r\nok"), "100%25%0D%0Aok");
        assert_eq!(escape_data("%0A"), "%250A");
    }

    #[test]
    fn property_escapes_colon_and_comma() {
        assert_eq!(escape_property("a:b,c\n"), "a%3Ab%2Cc%0A");
    }

    #[test]
    fn command_formats_like_the_toolkit() {
        assert_eq!(
            command(
                "error",
                &[("file", "src/a,b.rs"), ("line", "3")],
                "bad\nthing"
            ),
            "::error file=src/a%2Cb.rs,line=3::bad%0Athing"
        );
        assert_eq!(command("warning", &[("title", "")], "w"), "::warning::w");
        assert_eq!(command("group", &[], "::x"), "::group::::x");
    }

    #[test]
    fn plain_lines_cannot_be_commands() {
        assert_eq!(
            plain_line("wrote a\n::warning::x"),
            "wrote a\\n::warning::x"
        );
        assert_eq!(plain_line("::warning::x"), "%3A:warning::x");
        assert_eq!(plain_line(" \u{a0}::error::x"), " \u{a0}%3A:error::x");
        assert_eq!(plain_line("\u{200b}::error::x"), "\\u{200b}::error::x");
        assert_eq!(plain_line("a ##[error]b"), "a ##%5Berror]b");
        assert_eq!(plain_line("tab\tok \u{1b}[31m"), "tab\\tok \\u{001b}[31m");
        assert_eq!(plain_line(":\t::error::x"), ":\\t::error::x");
        assert_eq!(
            plain_lines("usage:\r\n::set-output name=a::b\nok"),
            "usage:\n%3A:set-output name=a::b\nok"
        );
    }

    #[test]
    fn a_raw_at_in_a_password_is_hidden_whole() {
        let url = "http://mu:p@ssSECRET@mirror.example/raspbian";
        assert_eq!(
            redact_credentials(url),
            "http://***@mirror.example/raspbian"
        );
        assert_eq!(url_credentials(url), ["mu:p@ssSECRET", "p@ssSECRET"]);
        assert!(!command("error", &[], url).contains("SECRET"));
        assert!(!plain_line(url).contains("SECRET"));
    }

    #[test]
    fn credentials_in_urls_are_found_and_redacted() {
        let text = "proxy http://bob:s%40cret@p:3128 and https://tok@h/x, plain http://h/a@b";
        assert_eq!(
            redact_credentials(text),
            "proxy http://***@p:3128 and https://***@h/x, plain http://h/a@b"
        );
        assert_eq!(
            url_credentials(text),
            ["bob:s@cret", "bob:s%40cret", "s@cret", "s%40cret", "tok"]
        );
    }

    /// Splits as the runner does (`StreamReader.ReadLine`: `\n`, `\r`, `\r\n`).
    fn runner_lines(s: &str) -> Vec<&str> {
        s.split(['\n', '\r']).collect()
    }

    /// Whether the runner could take `line` for a command: `::` after white space, or
    /// `##[` anywhere; characters a culture-aware comparison may skip are ignored.
    fn could_be_command(line: &str) -> bool {
        let visible: String = line.chars().filter(|c| !is_invisible(*c)).collect();
        visible.trim_start().starts_with("::") || visible.contains("##[")
    }

    /// Strings rich in what matters here: colons, `#[`, white space of every kind,
    /// line breaks and invisible characters, mixed with anything at all.
    fn hostile() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just("::".to_owned()),
            Just(":".to_owned()),
            Just("##[".to_owned()),
            Just("#".to_owned()),
            Just("[".to_owned()),
            Just("\n".to_owned()),
            Just("\r".to_owned()),
            Just("\r\n".to_owned()),
            Just(" ".to_owned()),
            Just("\t".to_owned()),
            Just("\u{a0}".to_owned()),
            Just("\u{2028}".to_owned()),
            Just("\u{200b}".to_owned()),
            Just("\u{feff}".to_owned()),
            Just("\u{85}".to_owned()),
            Just("%".to_owned()),
            Just("warning".to_owned()),
            any::<char>().prop_map(String::from),
            ".{0,4}",
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    proptest::proptest! {
        #[test]
        fn no_plain_line_reads_as_a_command(s in hostile()) {
            let out = plain_line(&s);
            let lines = runner_lines(&out);
            proptest::prop_assert_eq!(lines.len(), 1, "{:?} became {:?}", s, out);
            proptest::prop_assert!(!could_be_command(&out), "{:?} became {:?}", s, out);
        }

        #[test]
        fn no_line_of_plain_lines_reads_as_a_command(s in hostile()) {
            let out = plain_lines(&s);
            for line in runner_lines(&out) {
                proptest::prop_assert!(!could_be_command(line), "{:?} became {:?}", s, out);
            }
        }

        #[test]
        fn escaped_command_data_stays_on_one_line(s in hostile()) {
            let out = command("warning", &[("title", &s)], &s);
            proptest::prop_assert_eq!(runner_lines(&out).len(), 1);
        }

        #[test]
        fn redacted_text_holds_no_credential(user in "[a-z]{1,8}", pass in "[A-Za-z0-9%!]{1,12}", around in hostile()) {
            let url = format!("{around} https://{user}:{pass}@host/x {around}");
            let out = redact_credentials(&url);
            proptest::prop_assert!(!out.contains(&format!("{user}:{pass}@")), "{}", out);
            let whole = format!("{user}:{pass}");
            proptest::prop_assert!(url_credentials(&url).contains(&whole), "{}", url);
        }
    }

    #[test]
    fn delimiters_are_random() {
        let a = random_delimiter();
        let b = random_delimiter();
        assert_ne!(a, b);
        assert!(a.starts_with("ghadelimiter_") && a.len() == 13 + 32);
    }
}
