//! The shape the tree promises (src/lib.rs): each subcommand's module uses shared
//! modules, never another subcommand's internals (only `commands/mod.rs`, which
//! dispatches, and `pipeline`, which runs the others as child processes, name them).

use std::fs;
use std::path::Path;

#[test]
fn no_subcommand_imports_another_subcommands_internals() {
    let commands = crate::support::repo_root().join("src/commands");
    let mut found = Vec::new();
    for e in walkdir::WalkDir::new(&commands) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(&commands).unwrap();
        if !e.file_type().is_file() || rel == Path::new("mod.rs") || rel == Path::new("pipeline.rs")
        {
            continue;
        }
        let text = fs::read_to_string(e.path()).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.contains("crate::commands::") {
                found.push(format!(
                    "src/commands/{}:{}: {}",
                    rel.display(),
                    i + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "move what is shared out of the subcommand (e.g. into src/):\n{}",
        found.join("\n")
    );
}

/// What a pure file may not name: the file system, processes, the environment, the
/// network, the clock, the console and the Actions runner. `plan` decides from what
/// `gather` read; `apply`/`run` does what it decided.
const EFFECTS: &[&str] = &[
    "std::fs",
    "fs::",
    "File::",
    "OpenOptions",
    "std::process",
    "Command",
    "CmdSpec",
    "std::env",
    "env::var",
    "current_dir",
    "std::io::stdin",
    "std::io::stdout",
    "println!",
    "eprintln!",
    "print!",
    "tracing::",
    "Gha",
    "tokio",
    "octocrab",
    "reqwest",
    "ureq",
    "hyper",
    "tempfile",
    "walkdir",
    "rustix",
    ".exists()",
    ".is_file()",
    ".is_dir()",
    ".metadata()",
    "symlink_metadata",
    "read_dir",
    "canonicalize",
    "read_link",
    "SystemTime::now",
    "Instant::now",
    "Utc::now",
    "Timestamp::now",
    "thread::",
];

/// Functions of shared modules a pure file may call (types and constants of any module
/// are data and always allowed).
const PURE_FUNCTIONS: &[&str] = &[
    "crate::error::",
    "crate::shell::",
    "crate::units::",
    "crate::mirror_url::",
    "crate::validate::",
    "crate::gha::md_cell",
    "crate::gha::md_text",
    "crate::gha::escape::",
    "crate::checksum::hex",
    "crate::checksum::of_bytes",
    "crate::checksum::checksum_line",
    "crate::sigstore::bundle_path_for",
    "crate::model::rfc3339",
    "crate::model::lossy_",
    "crate::config::file_name",
    "crate::model::to_canonical_json",
    "crate::config::posix_relative",
    "crate::config::default_pi_gen_ref",
];

/// The code of a file without its tests and comments.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| l.split(" // ").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `crate::` and `super::` paths a file names, with grouped imports expanded.
fn paths_in(code: &str, root: &str) -> Vec<String> {
    let grouped = regex::Regex::new(&format!(r"\b{root}::((?:\w+::)*)\{{([^{{}}]*)\}}")).unwrap();
    let single = regex::Regex::new(&format!(r"\b{root}::((?:\w+::)*\w+)")).unwrap();
    let mut out = Vec::new();
    for c in grouped.captures_iter(code) {
        for item in c[2].split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let item = item.split(" as ").next().unwrap_or(item).trim();
            out.push(format!("{root}::{}{item}", &c[1]));
        }
    }
    for c in single.captures_iter(&grouped.replace_all(code, "")) {
        out.push(format!("{root}::{}", &c[1]));
    }
    out
}

fn is_lower(segment: &str) -> bool {
    segment.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Every subcommand decides in a pure `plan()`: it lives in the subcommand's `plan.rs`,
/// and that file, with every sibling module it calls, names no effect ([`EFFECTS`]) and
/// calls no function outside [`PURE_FUNCTIONS`] and its own pure siblings. Method calls
/// on what was gathered cannot reach an effect because `Input` and the gathered facts
/// are plain data.
#[test]
fn every_plan_is_pure() {
    let commands = crate::support::repo_root().join("src/commands");
    let mut problems = Vec::new();
    let mut dirs: Vec<_> = fs::read_dir(&commands)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "one directory per subcommand: {dirs:?}");
    let mut checked = 0;
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let plan = dir.join("plan.rs");
        checked += 1;
        let Ok(text) = fs::read_to_string(&plan) else {
            problems.push(format!("src/commands/{name}: no plan.rs"));
            continue;
        };
        if !code_of(&text).contains("pub fn plan(") {
            problems.push(format!("src/commands/{name}/plan.rs: no `pub fn plan(`"));
        }
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p != plan
                && p.extension().is_some_and(|x| x == "rs")
                && code_of(&fs::read_to_string(&p).unwrap()).contains("fn plan(")
            {
                problems.push(format!("{}: `fn plan(` outside plan.rs", p.display()));
            }
        }
        let mut pure = vec!["plan".to_owned()];
        let mut i = 0;
        while i < pure.len() {
            let module = pure[i].clone();
            i += 1;
            let file = dir.join(format!("{module}.rs"));
            let code = code_of(&fs::read_to_string(&file).unwrap());
            let shown = format!("src/commands/{name}/{module}.rs");
            for effect in EFFECTS {
                // Word-bounded where the pattern starts with a name (`fs::` is not
                // `bootfs::`).
                let named = effect.starts_with(|c: char| c.is_ascii_alphabetic())
                    && regex::Regex::new(&format!(r"\b{}", regex::escape(effect)))
                        .unwrap()
                        .is_match(&code);
                let found = if effect.starts_with(|c: char| c.is_ascii_alphabetic()) {
                    named
                } else {
                    code.contains(effect)
                };
                if found {
                    problems.push(format!("{shown}: names `{effect}`"));
                }
            }
            for path in paths_in(&code, "crate") {
                let last = path.rsplit("::").next().unwrap_or_default();
                if is_lower(last) && !PURE_FUNCTIONS.iter().any(|f| path.starts_with(f)) {
                    problems.push(format!("{shown}: calls `{path}`, which is not known pure"));
                }
            }
            for path in paths_in(&code, "super") {
                // Types and constants are data; a function or a module is code to check.
                let first = path.split("::").nth(1).unwrap_or_default();
                let last = path.rsplit("::").next().unwrap_or_default();
                if !is_lower(last) || last == "self" && !is_lower(first) {
                    continue;
                }
                if dir.join(format!("{first}.rs")).is_file() {
                    if !pure.iter().any(|m| m == first) {
                        pure.push(first.to_owned());
                    }
                } else {
                    problems.push(format!(
                        "{shown}: calls `{path}` in the subcommand's effectful code"
                    ));
                }
            }
        }
    }
    assert!(checked >= 7, "checked {checked} subcommands");
    assert!(
        problems.is_empty(),
        "plans must only decide (move the reading into gather, the doing into apply):\n{}",
        problems.join("\n")
    );
}

/// The tiers `cargo test` alone leaves out (scripts/test.sh runs them with
/// `--include-ignored`). A test is ignored only with one of them as its reason, so none is
/// left out silently or for a reason nobody can act on.
const TIERS: &[&str] = &["tools", "venv", "node", "qemu", "pi-gen", "root"];

#[test]
fn a_test_is_left_out_only_for_a_named_tier() {
    let root = crate::support::repo_root();
    let ignore = regex::Regex::new(r"#\[ignore\b[^\]]*\]").unwrap();
    let tier = regex::Regex::new(r#"^#\[ignore = "tier ([a-z-]+): [^"]+"\]$"#).unwrap();
    let mut problems = Vec::new();
    let mut tiered = 0;
    for dir in ["src", "tests"] {
        for entry in walkdir::WalkDir::new(root.join(dir)) {
            let entry = entry.unwrap();
            if entry.path().extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let text = fs::read_to_string(entry.path()).unwrap();
            for m in ignore.find_iter(&text) {
                match tier.captures(m.as_str()) {
                    Some(c) if TIERS.contains(&&c[1]) => tiered += 1,
                    _ => problems.push(format!("{}: {}", entry.path().display(), m.as_str())),
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "ignored without a known tier:\n{}",
        problems.join("\n")
    );
    assert!(
        tiered > 50,
        "only {tiered} tiered tests: the heavy ones are the majority"
    );
    let script = fs::read_to_string(root.join("scripts/test.sh")).unwrap();
    assert!(
        script.contains("cargo test --locked -- --include-ignored"),
        "scripts/test.sh must run every tier"
    );
}
