//! pi-gen's `config` file. pi-gen *sources it with bash*, so every value is
//! single-quoted and values that cannot be quoted safely (newlines, NUL) are refused:
//! an `IMG_NAME` or hostname containing `$(…)`, backticks or `;` is inert text.

use std::collections::BTreeMap;

use crate::error::usage;

/// Quotes a value for bash: `'…'`, with embedded `'` as `'\''`.
pub fn shell_quote(value: &str) -> String {
    crate::shell::single_quote(value)
}

/// Checks a variable name and value for the sourced config.
pub fn check(name: &str, value: &str) -> anyhow::Result<()> {
    let name_ok = name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !name_ok {
        return Err(usage(format!(
            "pi-gen setting name `{}` is not a shell variable name (A-Z, 0-9, _)",
            name.escape_debug()
        )));
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err(usage(format!(
            "pi-gen setting {name} contains a newline or NUL, which a sourced config cannot hold safely"
        )));
    }
    Ok(())
}

/// Renders `config`: a header and one `NAME='value'` line per setting, sorted.
pub fn render(settings: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut out = String::from(
        "# Written by pi-image run-pi-gen. pi-gen sources this file with bash:\n# every value is single-quoted, so nothing in it is ever executed.\n",
    );
    for (k, v) in settings {
        check(k, v)?;
        out.push_str(&format!("{k}={}\n", shell_quote(v)));
    }
    Ok(out)
}

/// Settings pi-gen used to read but no longer does, with when and why.
pub const REMOVED: &[(&str, &str)] = &[
    (
        "USE_QCOW2",
        "removed from pi-gen in 2024 (commit 502e5fa0, PR #648); only the bullseye branches still read it",
    ),
    (
        "WPA_ESSID",
        "removed from pi-gen in 2023 (commit 8dd23cbc); configure Wi-Fi with cloud-init network-config",
    ),
    (
        "WPA_PASSWORD",
        "no longer configures Wi-Fi (commit 8dd23cbc); configure Wi-Fi with cloud-init network-config",
    ),
    (
        "HOSTNAME",
        "renamed TARGET_HOSTNAME (bash sets HOSTNAME itself)",
    ),
    ("DEPLOY_ZIP", "deprecated; use DEPLOY_COMPRESSION"),
];

/// Names of settings that the checkout at hand never mentions: pi-gen would ignore them.
pub fn unsupported<'a>(names: impl Iterator<Item = &'a str>, checkout_text: &str) -> Vec<String> {
    names
        .filter(|n| !checkout_text.contains(*n))
        .map(|n| match REMOVED.iter().find(|(r, _)| r == &n) {
            Some((_, why)) => format!("{n}: {why}"),
            None => format!("{n}: not read anywhere in this pi-gen checkout"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_bash() {
        let evil = [
            "$(touch /tmp/pwned-pi-image)",
            "`id`",
            "a;b",
            "it's",
            "\\$HOME",
            "x' ; echo 'y",
            "ümlaut",
        ];
        let mut settings = BTreeMap::new();
        for (i, v) in evil.iter().enumerate() {
            settings.insert(format!("V{i}"), (*v).to_owned());
        }
        let text = render(&settings).unwrap();
        let mut script = text.clone();
        for i in 0..evil.len() {
            script.push_str(&format!("printf '%s\\n' \"$V{i}\"\n"));
        }
        let out = crate::process::command("bash")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(out.status.success());
        let printed: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            printed,
            evil.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()
        );
        assert!(!std::path::Path::new("/tmp/pwned-pi-image").exists());
    }

    #[test]
    fn values_a_sourced_config_cannot_hold_are_refused() {
        assert!(check("IMG_NAME", "a\nb").is_err());
        assert!(check("IMG_NAME", "a\0b").is_err());
        assert!(check("img_name", "x").is_err());
        assert!(check("A B", "x").is_err());
        assert!(check("$(x)", "x").is_err());
        assert!(
            check("TARGET_HOSTNAME", "pi; rm -rf /").is_ok(),
            "quoted, so harmless"
        );
    }

    #[test]
    fn removed_settings_are_named() {
        let text = "IMG_NAME RELEASE ENABLE_SSH";
        let found = unsupported(["IMG_NAME", "USE_QCOW2", "NO_SUCH"].into_iter(), text);
        assert_eq!(found.len(), 2);
        assert!(found[0].starts_with("USE_QCOW2: removed from pi-gen in 2024"));
        assert!(found[1].contains("not read anywhere"));
    }
}
