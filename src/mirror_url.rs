//! http(s) URLs of apt mirrors and proxies, checked once for every place they go: apt's
//! sources, the hook's data file and pi-gen's bash scripts (prepare-mirrors), and the
//! container's environment (run-pi-gen's `APT_PROXY`).

use crate::error::usage;

/// Characters allowed in a mirror URL. The URL ends up in apt sources, in a data file the
/// hook reads, and in pi-gen's bash scripts, so anything a shell or apt could
/// misread (quotes, spaces, `$`, `;`, backslashes...) is refused rather than escaped.
pub fn url_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~' | ':' | '/' | '@' | '%' | '+')
}

/// `url` for a message: any `user:password@` replaced by `***@`.
pub fn redact_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://***{}", &rest[at..]),
                None => url.to_owned(),
            }
        }
        None if url.contains('@') => "***".to_owned(),
        None => url.to_owned(),
    }
}

/// Validates a mirror URL and returns it without trailing slashes. Messages never show
/// the credentials a proxy URL may hold.
pub fn normalize_url(var: &str, raw: &str) -> anyhow::Result<String> {
    let shown = redact_userinfo(raw.trim());
    let url = raw.trim();
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
    else {
        return Err(usage(format!(
            "{var}: `{}` is not an http:// or https:// URL; apt mirrors must be http(s), e.g. https://mirror.example.org/raspbian/raspbian",
            shown.escape_debug()
        )));
    };
    let host = rest.split('/').next().unwrap_or_default();
    let host_only = host.rsplit('@').next().unwrap_or_default();
    let host_only = host_only.split(':').next().unwrap_or_default();
    if host_only.is_empty() {
        return Err(usage(format!(
            "{var}: `{}` has no host name",
            shown.escape_debug()
        )));
    }
    if let Some(bad) = url.chars().find(|c| !url_char_ok(*c)) {
        return Err(usage(format!(
            "{var}: `{}` contains `{}`, which is not allowed in a mirror URL (letters, digits and . - _ ~ : / @ % + only)",
            shown.escape_debug(),
            bad.escape_debug()
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// The host of an http(s) URL, without user info and port.
pub fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or_default();
    let host = hostport.rsplit('@').next().unwrap_or_default();
    host.split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_never_in_messages() {
        assert_eq!(
            redact_userinfo("http://u:p@proxy:3128/x"),
            "http://***@proxy:3128/x"
        );
        assert_eq!(redact_userinfo("http://proxy/a@b"), "http://proxy/a@b");
        let err = normalize_url("APT_PROXY", "http://user:s3cret@proxy:3128/\"x").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let err = normalize_url("APT_PROXY", "ftp://user:s3cret@proxy").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn hosts_are_lowercase_without_userinfo_or_port() {
        assert_eq!(host_of("http://u:p@Example.org:8080/x"), "example.org");
        assert_eq!(
            host_of("https://archive.raspberrypi.com/debian"),
            "archive.raspberrypi.com"
        );
    }
}
