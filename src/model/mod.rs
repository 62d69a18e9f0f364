//! The files steps hand to each other: build metadata and the release manifest.
//! Both are written as deterministic JSON (sorted keys, 2-space indent, final newline).

pub mod manifest;
pub mod metadata;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

/// Current version of both file formats.
pub const SCHEMA_VERSION: u32 = 1;

/// Serialises with sorted keys (through `serde_json::Value`, whose maps are ordered),
/// 2-space indentation and a final newline.
pub fn to_canonical_json<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let value = serde_json::to_value(value).context("cannot serialise to JSON")?;
    let mut text = serde_json::to_string_pretty(&value).context("cannot serialise to JSON")?;
    text.push('\n');
    Ok(text)
}

/// `#[serde(serialize_with = "crate::model::lossy_path")]`: a path as text even when it
/// is not UTF-8 (a file name found on disk is whatever bytes it is), undecodable bytes
/// shown as U+FFFD. For what is shown, never for a path read back.
pub fn lossy_path<S: serde::Serializer>(path: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

/// [`lossy_path`] for an optional path.
pub fn lossy_opt_path<S: serde::Serializer>(
    path: &Option<std::path::PathBuf>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => s.serialize_some(&p.to_string_lossy()),
        None => s.serialize_none(),
    }
}

/// RFC 3339 UTC with seconds precision and a `Z` suffix: `2026-11-26T08:35:07Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `SOURCE_DATE_EPOCH` when set (reproducible builds), else the current time.
pub fn now() -> anyhow::Result<DateTime<Utc>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => parse_epoch(v.trim()).ok_or_else(|| {
            crate::error::usage(format!(
                "SOURCE_DATE_EPOCH `{v}` is not a Unix timestamp (whole seconds since 1970)"
            ))
        }),
        _ => Ok(Utc::now().with_nanosecond_zero()),
    }
}

fn parse_epoch(v: &str) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(v.parse::<i64>().ok()?, 0)
}

/// Parses a time given on the command line: RFC 3339 or Unix seconds.
pub fn parse_time(v: &str) -> Result<DateTime<Utc>, String> {
    let v = v.trim();
    if let Some(t) = parse_epoch(v) {
        return Ok(t);
    }
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!("`{v}` is not a time: use RFC 3339 (2026-11-26T08:35:07Z) or Unix seconds")
        })
}

trait NanoZero {
    fn with_nanosecond_zero(self) -> Self;
}

impl NanoZero for DateTime<Utc> {
    fn with_nanosecond_zero(self) -> Self {
        DateTime::from_timestamp(self.timestamp(), 0).unwrap_or(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys() {
        #[derive(Serialize)]
        struct S {
            zeta: u8,
            alpha: Vec<u8>,
        }
        let text = to_canonical_json(&S {
            zeta: 1,
            alpha: vec![2],
        })
        .unwrap();
        assert_eq!(text, "{\n  \"alpha\": [\n    2\n  ],\n  \"zeta\": 1\n}\n");
    }

    #[test]
    fn unix_seconds_and_offsets_become_utc_rfc3339() {
        let t = parse_time("1700000000").unwrap();
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
        assert_eq!(
            rfc3339(parse_time("2025-10-14T12:02:03+02:00").unwrap()),
            "2025-10-14T10:02:03Z"
        );
        assert!(parse_time("yesterday").is_err());
    }
}
