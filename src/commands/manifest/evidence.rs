//! Reading the evidence other steps leave: the smoke-test directory and an optional
//! verifier report.

use std::path::Path;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::checksum::sha256_file;
use crate::model::manifest::{Smoke, SmokeFile};

/// Every file under the smoke artifacts directory (sorted, `/`-separated relative
/// paths, digests) and the status it reports: `smoke-success.json`'s `status`, else
/// `error` when `error.json` exists, else `unknown`.
pub fn smoke(dir: &Path) -> anyhow::Result<Smoke> {
    if !dir.is_dir() {
        return Err(crate::error::usage(format!(
            "smoke artifacts directory `{}` (--smoke-dir) does not exist",
            dir.display()
        )));
    }
    let mut artifacts = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot scan `{}`", dir.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = crate::config::posix_relative(dir, entry.path());
        let digest = sha256_file(entry.path())?;
        artifacts.push(SmokeFile {
            path: rel,
            sha256: digest.sha256,
            size_bytes: digest.size,
        });
    }
    let (status, details) = smoke_status(dir);
    Ok(Smoke {
        status,
        directory: dir.display().to_string(),
        artifacts,
        details,
    })
}

fn smoke_status(dir: &Path) -> (String, Option<Value>) {
    let success = dir.join("smoke-success.json");
    if success.is_file() {
        return match read_json(&success) {
            Ok(v) => {
                let status = v
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_owned();
                (status, Some(v))
            }
            Err(e) => (
                "invalid".into(),
                Some(json!({ "error": e, "path": "smoke-success.json" })),
            ),
        };
    }
    let error = dir.join("error.json");
    if error.is_file() {
        let details = read_json(&error).unwrap_or_else(|_| {
            let raw = crate::input::read_text("error.json", &error, Some(dir)).unwrap_or_default();
            json!({ "error": raw.trim(), "path": "error.json" })
        });
        return ("error".into(), Some(details));
    }
    ("unknown".into(), None)
}

fn read_json(path: &Path) -> Result<Value, String> {
    // Through no symlink out of its directory, never a FIFO (evidence is copied into
    // the published manifest).
    let text =
        crate::input::read_text("evidence file", path, None).map_err(|e| format!("{e:#}"))?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// The `verifier` block: `not_run`, `not_found`, `invalid` or `ok`.
pub fn verifier(path: Option<&Path>) -> Value {
    let Some(path) = path else {
        return json!({ "status": "not_run" });
    };
    let shown = path.display().to_string();
    if !path.is_file() {
        return json!({ "status": "not_found", "path": shown });
    }
    match read_json(path) {
        Ok(data) => json!({ "status": "ok", "data": data, "path": shown }),
        Err(error) => json!({ "status": "invalid", "error": error, "path": shown }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke_status_comes_from_success_then_error_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(smoke_status(dir.path()).0, "unknown");
        std::fs::write(dir.path().join("error.json"), "{\"error\": \"timed out\"}").unwrap();
        let (s, d) = smoke_status(dir.path());
        assert_eq!(
            (s.as_str(), d.unwrap()["error"].as_str()),
            ("error", Some("timed out"))
        );
        std::fs::write(dir.path().join("smoke-success.json"), "{not json").unwrap();
        assert_eq!(smoke_status(dir.path()).0, "invalid");
        std::fs::write(
            dir.path().join("smoke-success.json"),
            "{\"status\": \"pass\"}",
        )
        .unwrap();
        assert_eq!(smoke_status(dir.path()).0, "pass");
    }

    #[test]
    fn smoke_files_are_listed_recursively() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("first-boot-report")).unwrap();
        std::fs::write(dir.path().join("first-boot-report/summary.json"), "{}").unwrap();
        std::fs::write(dir.path().join("serial.log"), "abc").unwrap();
        let s = smoke(dir.path()).unwrap();
        let paths: Vec<_> = s.artifacts.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(paths, vec!["first-boot-report/summary.json", "serial.log"]);
        assert_eq!(
            s.artifacts[1].sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(smoke(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_verifier_report_is_not_run_not_found_invalid_or_ok() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(verifier(None)["status"], "not_run");
        let p = dir.path().join("v.json");
        assert_eq!(verifier(Some(&p))["status"], "not_found");
        std::fs::write(&p, "nope").unwrap();
        assert_eq!(verifier(Some(&p))["status"], "invalid");
        std::fs::write(&p, "{\"checks\": []}").unwrap();
        assert_eq!(verifier(Some(&p))["data"]["checks"], json!([]));
    }
}
