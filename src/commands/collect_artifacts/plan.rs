//! `collect-artifacts`' decision: which export becomes the image, and how it gets there.
//! Pure: it works only on what [`super::gather`] found.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::bail;

use super::discover::{Candidate, Format};
use super::{Facts, Input};
use crate::error::usage;

/// How the image gets to its final name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Stream-compress a `.zip` entry, `.img.gz` or `.img` into xz.
    Compress,
    /// Copy an `.img.xz`, verifying it.
    CopyXz,
    /// Verify an `.img.xz`, then rename it into place.
    MoveXz,
    /// The source already is the output: verify it and write the checksum.
    InPlace,
}

/// Everything `run` will do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    pub source: Candidate,
    pub action: Action,
    /// Older exports of the same image that were passed over.
    pub ignored: Vec<Candidate>,
    /// Entries with an image's name that were not taken, each `rel: why`.
    pub skipped: Vec<String>,
    #[serde(serialize_with = "crate::model::lossy_opt_path")]
    pub build_log: Option<PathBuf>,
    /// What the user should know about the choice (logged by `run`).
    pub notes: Vec<String>,
    /// The files `run` writes, each atomically and all or none: the image, its checksum
    /// file, the copy of the build log when there is one, the metadata.
    #[serde(serialize_with = "lossy_paths")]
    pub outputs: Vec<PathBuf>,
    /// An earlier run's build log copy, removed when this build has none (it is not this
    /// image's).
    #[serde(serialize_with = "crate::model::lossy_opt_path")]
    pub removes: Option<PathBuf>,
    /// `--chown`: the outputs and the directories made for them get this owner.
    pub chown: Option<(u32, u32)>,
    /// The bmap pi-gen's export made beside the image (`IMG_DATE-IMG_NAME.bmap`, when
    /// bmaptool was installed), checked during the pass and used when it holds.
    #[serde(serialize_with = "crate::model::lossy_opt_path")]
    pub pi_gen_bmap: Option<PathBuf>,
}

fn lossy_paths<S: serde::Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(paths.iter().map(|p| p.to_string_lossy()))
}

/// Chooses the source image. Pure: works only on what `facts` holds.
pub fn plan(input: &Input, facts: &Facts) -> anyhow::Result<Plan> {
    let is_output = |c: &Candidate| facts.output_is.as_deref() == Some(c.path.as_path());
    let mut cands: Vec<&Candidate> = facts.candidates.iter().collect();
    if cands.iter().any(|c| !is_output(c)) {
        // A previous run's output in the deploy dir is not a pi-gen export.
        cands.retain(|c| !is_output(c));
    }
    if cands.is_empty() {
        let mut msg = format!(
            "no image found under `{}` (looked for *.img.xz, *.zip, *.img.gz, *.img up to {} levels deep)",
            input.deploy_dir.display(),
            input.max_depth
        );
        if facts.all_files.is_empty() {
            msg.push_str("; there are no files at all there: did pi-gen's export stage run?");
        } else {
            let shown: Vec<_> = facts
                .all_files
                .iter()
                .take(20)
                .map(|f| format!("  {f}"))
                .collect();
            msg.push_str(&format!("; files there:\n{}", shown.join("\n")));
        }
        if !facts.skipped.is_empty() {
            msg.push_str(&format!("\nskipped:\n  {}", facts.skipped.join("\n  ")));
        }
        bail!(msg);
    }
    if let Some(sel) = &input.select {
        let matching: Vec<&Candidate> = cands
            .iter()
            .copied()
            .filter(|c| {
                c.rel == *sel
                    || c.file_name() == sel
                    || c.name == *sel
                    || c.name.ends_with(sel.as_str())
            })
            .collect();
        if matching.is_empty() {
            return Err(usage(format!(
                "--image `{sel}` matches none of the images under `{}`:\n{}",
                input.deploy_dir.display(),
                list(&cands)
            )));
        }
        cands = matching;
    }
    // Group the formats and dates of one image; several images need a choice.
    let mut groups: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in &cands {
        groups.entry(c.name.as_str()).or_default().push(c);
    }
    if groups.len() > 1 {
        return Err(usage(format!(
            "several images found under `{}`; choose one with --image (a path as listed, a name, or a suffix such as -lite):\n{}",
            input.deploy_dir.display(),
            list(&cands)
        )));
    }
    let mut group = groups.into_values().next().unwrap_or_default();
    // Newest pi-gen date first (an undated name counts as oldest), then the preferred
    // format, then the shallowest path.
    group.sort_by(|a, b| {
        b.date
            .cmp(&a.date)
            .then(a.format.cmp(&b.format))
            .then(a.depth.cmp(&b.depth))
            .then(a.rel.cmp(&b.rel))
    });
    let source = group[0].clone();
    let ignored = group[1..]
        .iter()
        .filter(|c| c.date != source.date)
        .map(|c| (*c).clone())
        .collect();
    let action = match source.format {
        _ if is_output(&source) => Action::InPlace,
        Format::Xz if input.move_source => Action::MoveXz,
        Format::Xz => Action::CopyXz,
        _ => Action::Compress,
    };
    let mut notes = Vec::new();
    if input.move_source && source.format != Format::Xz {
        notes.push(format!(
            "--move applies to .img.xz sources only; `{}` is compressed instead",
            source.rel
        ));
    }
    let paths = &input.paths;
    let mut outputs = vec![paths.image.clone(), paths.checksum.clone()];
    if facts.build_log.is_some() {
        outputs.push(paths.build_log.clone());
    }
    outputs.push(paths.metadata.clone());
    // pi-gen's export names its bmap after IMG_FILENAME (date and name, no `image_`)
    // and copies it beside the archive.
    let bmap_rel = format!(
        "{}{}{}.bmap",
        source
            .rel
            .rsplit_once('/')
            .map(|(dir, _)| format!("{dir}/"))
            .unwrap_or_default(),
        source
            .date
            .as_ref()
            .map(|d| format!("{d}-"))
            .unwrap_or_default(),
        source.name
    );
    let pi_gen_bmap = (!input.no_bmap && facts.all_files.contains(&bmap_rel))
        .then(|| input.deploy_dir.join(&bmap_rel));
    if let Some(b) = &pi_gen_bmap {
        notes.push(format!(
            "pi-gen's bmap `{}`: checked while the image streams",
            b.display()
        ));
    }
    Ok(Plan {
        pi_gen_bmap,
        source,
        action,
        ignored,
        skipped: facts.skipped.clone(),
        build_log: facts.build_log.clone(),
        notes,
        outputs,
        removes: facts.build_log.is_none().then(|| paths.build_log.clone()),
        chown: input.chown,
    })
}

fn list(cands: &[&Candidate]) -> String {
    cands
        .iter()
        .map(|c| format!("  {} (image `{}`, {})", c.rel, c.name, c.format.as_str()))
        .collect::<Vec<_>>()
        .join("\n")
}
