//! Escaping rules for workflow commands, exactly as actions/toolkit applies them
//! (`packages/core/src/command.ts`), so a message can never end a command early or
//! smuggle in a second one.

/// Escapes the message part of `::name props::message`.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a property value (`file=`, `title=`): data escaping plus `:` and `,`.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Formats one workflow command line (without the trailing newline).
pub fn command(name: &str, props: &[(&str, &str)], message: &str) -> String {
    let props: Vec<String> = props
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", escape_property(v)))
        .collect();
    if props.is_empty() {
        format!("::{name}::{}", escape_data(message))
    } else {
        format!("::{name} {}::{}", props.join(","), escape_data(message))
    }
}

/// A heredoc delimiter for `GITHUB_OUTPUT`, random so that no value can predict it.
pub fn random_delimiter() -> String {
    let mut bytes = [0u8; 16];
    // getrandom only fails when the OS has no entropy source at all; a time-based
    // fallback still gives a delimiter the value is checked against below.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    format!("ghadelimiter_{}", hex(&bytes))
}

/// Lowercase hex of a byte slice.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
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
    fn delimiters_are_random() {
        let a = random_delimiter();
        let b = random_delimiter();
        assert_ne!(a, b);
        assert!(a.starts_with("ghadelimiter_") && a.len() == 13 + 32);
    }
}
