//! Values with a grammar, checked against it before they are used anywhere (names on
//! GitHub, file names, commits): a value that passes cannot carry shell, Markdown or
//! path syntax into what is built from it.

use crate::error::usage;

/// A GitHub repository, `OWNER/REPO`, in GitHub's own character set: an owner of 1-39
/// letters, digits and inner single hyphens; a name of 1-100 letters, digits, `.`,
/// `-` and `_`, and not `.` or `..`.
pub fn repository(what: &str, value: &str) -> anyhow::Result<()> {
    let ok = value.split_once('/').is_some_and(|(owner, name)| {
        let owner_ok = (1..=39).contains(&owner.len())
            && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !owner.starts_with('-')
            && !owner.ends_with('-')
            && !owner.contains("--");
        let name_ok = (1..=100).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            && name != "."
            && name != "..";
        owner_ok && name_ok
    });
    if ok {
        Ok(())
    } else {
        Err(usage(format!(
            "{what} `{}` is not a GitHub repository: give OWNER/REPO (letters, digits, `-` in the owner; letters, digits, `.`, `-`, `_` in the name)",
            value.escape_debug()
        )))
    }
}

/// A git branch, tag or commit name (`git check-ref-format` rules, ASCII only), and not
/// a name for "wherever the checkout is" (`HEAD` and friends), which would vouch for
/// any checkout.
pub fn git_ref(what: &str, r: &str) -> anyhow::Result<()> {
    let bad = r.is_empty()
        || r.len() > 200
        || r.starts_with(['-', '/', '.'])
        || r.ends_with(['/', '.'])
        || r.ends_with(".lock")
        || r.contains("..")
        || r.contains("@{")
        || r.contains("//")
        || r.split('/').any(|c| c.starts_with('.'))
        || r.chars().any(|c| {
            !c.is_ascii_graphic() || matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\')
        })
        || ["@", "HEAD", "FETCH_HEAD", "ORIG_HEAD", "MERGE_HEAD"].contains(&r);
    if bad {
        return Err(usage(format!(
            "{what} `{}` is not a git branch, tag or commit name",
            r.escape_debug()
        )));
    }
    Ok(())
}

/// A git commit: 7 to 64 hex digits (SHA-1 or SHA-256, abbreviated or not).
pub fn commit(what: &str, value: &str) -> anyhow::Result<()> {
    if (7..=64).contains(&value.len()) && value.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(usage(format!(
            "{what} `{}` is not a git commit: give 7 to 64 hex digits",
            value.escape_debug()
        )))
    }
}

/// A plain file name for a file next to the others in one directory: no `/`, not `.`
/// or `..`, no leading `-` (it would read as an option) and no control characters.
pub fn file_name(what: &str, value: &str) -> anyhow::Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value != "."
        && value != ".."
        && !value.starts_with('-')
        && !value.contains(['/', '\\'])
        && !value.chars().any(crate::gha::escape::is_invisible);
    if ok {
        Ok(())
    } else {
        Err(usage(format!(
            "{what} `{}` is not a plain file name: no `/`, `..`, leading `-`, control or invisible characters (U+200B, U+202E, …)",
            value.escape_debug()
        )))
    }
}

/// The web address of a GitHub server (`GITHUB_SERVER_URL`): `https://` or `http://`,
/// a host and maybe a port, nothing else.
pub fn server_url(what: &str, value: &str) -> anyhow::Result<()> {
    let host = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .map(|h| h.trim_end_matches('/'));
    let ok = host.is_some_and(|h| {
        !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    });
    if ok {
        Ok(())
    } else {
        Err(usage(format!(
            "{what} `{}` is not a server address: give https://HOST[:PORT]",
            value.escape_debug()
        )))
    }
}

/// A number the runner hands out (`GITHUB_RUN_ID`, `GITHUB_RUN_ATTEMPT`).
pub fn digits(what: &str, value: &str) -> anyhow::Result<()> {
    if !value.is_empty() && value.len() <= 20 && value.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(usage(format!(
            "{what} `{}` is not a number",
            value.escape_debug()
        )))
    }
}

/// Text shown as one line (a release title): no control characters.
pub fn one_line(what: &str, value: &str) -> anyhow::Result<()> {
    if value.len() <= 200 && !value.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(usage(format!(
            "{what} must be one line of at most 200 characters without control characters"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_follow_githubs_rules() {
        for ok in [
            "o/r",
            "sugarkube/pi-image-action",
            "a-b/c.d_e",
            "O1/.github",
        ] {
            assert!(repository("r", ok).is_ok(), "{ok}");
        }
        for bad in [
            "o/$(touch x)",
            "o",
            "o/r/x",
            "-o/r",
            "o-/r",
            "o--p/r",
            "o/..",
            "o/.",
            "/r",
            "o/",
            "o/r;ls",
            "o/r\n",
            "ö/r",
            "o/r r",
        ] {
            assert!(repository("r", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_names_are_plain() {
        assert!(file_name("a", "pi.img.xz").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "-rf",
            "a\nb",
            "a\\b",
            "a\u{202e}gpj.exe",
            "a\u{200b}",
            "a\u{2028}b",
        ] {
            assert!(file_name("a", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn commits_servers_and_numbers() {
        assert!(commit("c", "89abcde").is_ok());
        assert!(commit("c", "89abcdg").is_err());
        assert!(commit("c", "$(x)").is_err());
        assert!(server_url("s", "https://github.com").is_ok());
        assert!(server_url("s", "https://ghe.example:8443/").is_ok());
        assert!(server_url("s", "https://x/'$(y)'").is_err());
        assert!(server_url("s", "javascript:alert(1)").is_err());
        assert!(digits("n", "123").is_ok());
        assert!(digits("n", "1 2").is_err());
    }
}
