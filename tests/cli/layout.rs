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
