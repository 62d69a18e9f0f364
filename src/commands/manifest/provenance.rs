//! The in-toto Statement v1 with a SLSA v1 provenance predicate whose subjects are the
//! artifacts: what `sign` signs as DSSE, and what `actions/attest-build-provenance`
//! users can attest instead.

use serde_json::{Value, json};

use crate::model::manifest::{Artifact, Source};
use crate::model::metadata::Metadata;

/// Identifies how this toolkit builds: pi-gen driven by `pi-image`.
pub const BUILD_TYPE: &str = "https://github.com/sugarkube/pi-image-action/pi-gen/v1";

pub fn statement(subjects: &[Artifact], meta: &Metadata, source: &Source) -> Value {
    let subject: Vec<Value> = subjects
        .iter()
        .map(|a| json!({ "name": a.name, "digest": { "sha256": a.sha256 } }))
        .collect();
    let build = meta.build.clone().unwrap_or_default();
    let mut deps = Vec::new();
    if !build.pi_gen.url.is_empty() {
        let git_ref = build
            .pi_gen
            .git_ref
            .clone()
            .unwrap_or_else(|| build.pi_gen.branch.clone());
        let mut dep =
            json!({ "uri": format!("git+{}@{git_ref}", build.pi_gen.url), "name": "pi-gen" });
        if let Some(c) = &build.pi_gen.commit {
            dep["digest"] = json!({ "gitCommit": c });
        }
        deps.push(dep);
    }
    if let Some(repo) = &source.repository {
        let mut dep = json!({ "uri": format!("git+{}/{repo}@{}", source.server_url, source.git_ref.as_deref().unwrap_or("HEAD")) });
        if let Some(c) = &source.commit {
            dep["digest"] = json!({ "gitCommit": c });
        }
        deps.push(dep);
    }
    let invocation = match (&source.repository, &source.run_id) {
        (Some(repo), Some(run)) => Some(format!(
            "{}/{repo}/actions/runs/{run}/attempts/{}",
            source.server_url,
            source.run_attempt.as_deref().unwrap_or("1")
        )),
        _ => None,
    };
    let builder = match &source.repository {
        Some(repo) => format!("{}/{repo}/.github/workflows", source.server_url),
        None => format!(
            "https://github.com/sugarkube/pi-image-action@v{}",
            env!("CARGO_PKG_VERSION")
        ),
    };
    let mut metadata = json!({ "finishedOn": build.end });
    if let Some(start) = &build.start {
        metadata["startedOn"] = json!(start);
    }
    if let Some(id) = invocation {
        metadata["invocationId"] = json!(id);
    }
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subject,
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "pi_gen": {
                        "url": build.pi_gen.url,
                        "branch": build.pi_gen.branch,
                        "ref": build.pi_gen.git_ref,
                        "stages": build.pi_gen.stages,
                    },
                    "options": meta.options,
                    "workflow": {
                        "repository": source.repository,
                        "ref": source.git_ref,
                        "name": source.workflow,
                    },
                },
                "internalParameters": {
                    "runner": { "os": build.runner.os, "arch": build.runner.arch },
                    "compression": meta.image.compression,
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": { "id": builder, "version": { "pi-image": env!("CARGO_PKG_VERSION") } },
                "metadata": metadata,
                "byproducts": [{
                    "name": meta.image.path.trim_end_matches(".xz"),
                    "digest": { "sha256": meta.image.raw_sha256 },
                    "annotations": { "size_bytes": meta.image.raw_size_bytes, "description": "raw disk image inside the .img.xz" },
                }],
            },
        },
    })
}
