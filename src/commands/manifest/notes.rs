//! `RELEASE_NOTES.md`: artifacts, stage timings (table and Mermaid gantt chart), the
//! smoke result and the exact commands users run to verify what they downloaded.

use std::fmt::Write as _;

use crate::buildlog::StageTimings;
use crate::gha::{md_cell, md_text};
use crate::model::manifest::{ArtifactKind, Manifest};
use crate::model::metadata::InventoryInfo;
use crate::sbom::lock::Changes;
use crate::units::{human_duration, human_size};

/// `text` as a Markdown code span, whatever backticks it holds (`CommonMark`: a fence
/// longer than any run of backticks inside, padded with spaces).
fn code(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    if longest == 0 {
        return format!("`{text}`");
    }
    let fence = "`".repeat(longest + 1);
    format!("{fence} {text} {fence}")
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// What the notes say besides the manifest.
pub struct Extra<'a> {
    /// From the build log, when there was one.
    pub timings: Option<&'a StageTimings>,
    pub build_start_epoch: Option<i64>,
    /// The SBOM and lock collect-artifacts wrote, or why not.
    pub inventory: Option<&'a InventoryInfo>,
    /// Against `--previous-lock`.
    pub changes: Option<&'a Changes>,
}

/// Renders the notes.
pub fn render(m: &Manifest, extra: &Extra<'_>) -> String {
    let (timings, build_start_epoch) = (extra.timings, extra.build_start_epoch);
    let mut o = String::new();
    let _ = writeln!(o, "# {}\n", m.release.name);
    let _ = writeln!(
        o,
        "- Release: `{}` ({} channel)",
        m.release.tag,
        serde_json::to_value(m.release.channel)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    );
    let repo_url = m
        .source
        .repository
        .as_ref()
        .map(|r| format!("{}/{r}", m.source.server_url));
    match (&m.source.commit, &repo_url) {
        (Some(c), Some(url)) => {
            let _ = write!(o, "- Source: [`{}`]({url}/commit/{c})", short(c));
        }
        (Some(c), None) => {
            let _ = write!(o, "- Source: `{}`", short(c));
        }
        _ => o.push_str("- Source: (unknown)"),
    }
    if let Some(r) = &m.source.git_ref {
        let _ = write!(o, " on {}", code(r));
    }
    o.push('\n');
    if let Some(b) = &m.build {
        let url = b.pi_gen.url.trim_end_matches(".git");
        let _ = write!(
            o,
            "- pi-gen: {}",
            code(b.pi_gen.git_ref.as_deref().unwrap_or(&b.pi_gen.branch))
        );
        match &b.pi_gen.commit {
            Some(c) => {
                let _ = writeln!(
                    o,
                    " @ [`{}`]({url}/commit/{c}), stages `{}`",
                    short(c),
                    b.pi_gen.stages.join(" ")
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    " @ (unknown commit), stages `{}`",
                    b.pi_gen.stages.join(" ")
                );
            }
        }
        if let Some(d) = b.duration_seconds {
            let _ = writeln!(o, "- Build duration: `{}`", human_duration(d));
        }
    }
    if let (Some(url), Some(run)) = (&repo_url, &m.source.run_id) {
        let _ = writeln!(o, "- Workflow run: [{run}]({url}/actions/runs/{run})");
    }

    o.push_str("\n## Artifacts\n\n| Artifact | Size | SHA-256 |\n| --- | --- | --- |\n");
    for a in &m.artifacts {
        let _ = writeln!(
            o,
            "| `{}` | {} | `{}` |",
            md_cell(&a.name),
            human_size(a.size_bytes),
            a.sha256
        );
    }
    if let Some(img) = m.artifacts.iter().find(|a| a.kind == ArtifactKind::Image)
        && let (Some(raw), Some(size)) = (&img.raw_sha256, img.raw_size_bytes)
    {
        let _ = writeln!(
            o,
            "\nThe disk image inside `{}` is {size} bytes with SHA-256 `{raw}`: the digest to compare \
             with a card you flashed (`head -c {size} /dev/sdX | sha256sum`).",
            img.name
        );
    }
    if let Some(b) = m.artifacts.iter().find(|a| a.kind == ArtifactKind::Bmap)
        && let Some(img) = m.artifacts.iter().find(|a| a.kind == ArtifactKind::Image)
    {
        let q = crate::shell::quote;
        let _ = writeln!(
            o,
            "\nFlash faster with bmaptool, which writes only the blocks the file systems use and checks \
             each: `bmaptool copy --bmap {} {} /dev/sdX`.",
            q(&b.name),
            q(&img.name)
        );
    }
    if let Some(r) = m
        .artifacts
        .iter()
        .find(|a| a.kind == ArtifactKind::RpiImager)
        && let Some(repo) = &m.source.repository
    {
        let url = super::imager::asset_url(&m.source.server_url, repo, &m.release.tag, &r.name);
        let _ = writeln!(
            o,
            "\nInstall it from Raspberry Pi Imager, with Imager's OS customisation: start \
             `rpi-imager --repo {}`, or in Imager choose App Options, Content Repository, Edit, \
             Use custom URL, and give that URL. `{}` lists this image and the boards it runs on.",
            crate::shell::quote(&url),
            md_cell(&r.name)
        );
    }
    let _ = writeln!(
        o,
        "\nThe attached manifest (`{}.manifest.json`) holds the full provenance record.",
        m.artifacts.first().map_or("image", |a| a.name.as_str())
    );

    software_section(&mut o, m, extra);

    o.push_str("\n## Stage timings\n\n");
    match timings.filter(|t| !t.spans.is_empty()) {
        None => o.push_str("No stage timing data was captured.\n"),
        Some(t) => stage_section(&mut o, t, build_start_epoch),
    }

    o.push_str("\n## QEMU smoke test\n\n");
    match &m.smoke {
        None => o.push_str("Not run: this image was not booted in QEMU before this release.\n"),
        Some(s) => {
            let _ = writeln!(o, "- Status: `{}`", s.status);
            let key: Vec<_> = s
                .artifacts
                .iter()
                .filter(|a| a.path.ends_with("serial.log") || a.path.ends_with("summary.json"))
                .collect();
            if key.is_empty() {
                o.push_str("- Evidence: see the manifest for the full listing\n");
            } else {
                o.push_str("- Evidence:\n");
                for a in key {
                    let _ = writeln!(
                        o,
                        "  - `{}`: `{}` ({} bytes)",
                        md_cell(&a.path),
                        a.sha256,
                        a.size_bytes
                    );
                }
            }
        }
    }

    verify_section(&mut o, m);
    o
}

/// The packages: the SBOM and lock, and what changed since the previous release.
fn software_section(o: &mut String, m: &Manifest, extra: &Extra<'_>) {
    let Some(inv) = extra.inventory else { return };
    o.push_str("\n## Software\n\n");
    match (&inv.sbom, &inv.lock) {
        (Some(sbom), Some(lock)) => {
            let _ = writeln!(
                o,
                "{} packages are installed ({}). `{}` lists each (SPDX 2.3: version, architecture, \
                 source package, purl){}; `{}` is the build's input set: those packages, the apt sources, \
                 the mirrors and the pi-gen commit.",
                inv.packages.unwrap_or_default(),
                md_text(inv.os.as_deref().unwrap_or("unknown distribution")),
                md_cell(&sbom.path),
                inv.cyclonedx
                    .as_ref()
                    .map(|c| format!(", as does `{}` (CycloneDX 1.6)", md_cell(&c.path)))
                    .unwrap_or_default(),
                md_cell(&lock.path)
            );
        }
        _ => {
            let _ = writeln!(
                o,
                "No SBOM: {}.",
                md_text(inv.reason.as_deref().unwrap_or("not read"))
            );
        }
    }
    let Some(c) = extra.changes else { return };
    let since = m
        .previous
        .as_ref()
        .and_then(|p| p.tag.as_deref())
        .map_or_else(|| "the previous release".to_owned(), code);
    let _ = writeln!(o, "\n### Changed since {since}\n");
    if c.is_empty() {
        o.push_str("No package was added, removed or changed.\n");
        return;
    }
    let _ = writeln!(
        o,
        "{} added, {} removed, {} upgraded, {} downgraded.\n",
        c.added.len(),
        c.removed.len(),
        c.upgraded.len(),
        c.downgraded.len()
    );
    o.push_str("| Package | Change | Before | After |\n| --- | --- | --- | --- |\n");
    // The lock's grammar keeps `|` out; escaped anyway, as GFM splits a table row at a
    // `|` even inside a code span.
    let cell = |t: &str| code(&md_cell(t));
    let pkg = |n: &str, a: &str| cell(&format!("{n}:{a}"));
    for (n, a, v) in &c.added {
        let _ = writeln!(o, "| {} | added | | {} |", pkg(n, a), cell(v));
    }
    for (n, a, v) in &c.removed {
        let _ = writeln!(o, "| {} | removed | {} | |", pkg(n, a), cell(v));
    }
    for (kind, list) in [("upgraded", &c.upgraded), ("downgraded", &c.downgraded)] {
        for (n, a, from, to) in list {
            let _ = writeln!(
                o,
                "| {} | {kind} | {} | {} |",
                pkg(n, a),
                cell(from),
                cell(to)
            );
        }
    }
}

fn stage_section(o: &mut String, t: &StageTimings, start_epoch: Option<i64>) {
    o.push_str("| Stage | Duration |\n| --- | --- |\n");
    for (name, secs) in t.table_rows() {
        let indent = if name.contains('/') { "↳ " } else { "" };
        let _ = writeln!(
            o,
            "| {indent}`{}` | {} |",
            md_cell(&name),
            human_duration(secs)
        );
    }
    for i in t
        .incomplete
        .iter()
        .filter(|i| i.name != crate::buildlog::WHOLE_BUILD)
    {
        let _ = writeln!(
            o,
            "| `{}` | incomplete (began at +{}s, never ended) |",
            md_cell(&i.name),
            i.start_offset_seconds
        );
    }
    let stages = t.stages();
    if stages.is_empty() {
        return;
    }
    // Mermaid reads both ends in the `dateFormat`; Unix seconds keep it exact.
    let base = start_epoch.unwrap_or(0);
    o.push_str("\n```mermaid\ngantt\n    title pi-gen stage timeline\n    dateFormat X\n    axisFormat %H:%M:%S\n    section stages\n");
    for (i, s) in stages.iter().enumerate() {
        let label: String = s
            .name
            .chars()
            .map(|c| if matches!(c, ':' | ';' | '#') { '_' } else { c })
            .collect();
        let start = base + i64::try_from(s.start_offset_seconds).unwrap_or(0);
        let end =
            base + i64::try_from(s.end_offset_seconds.max(s.start_offset_seconds + 1)).unwrap_or(0);
        let _ = writeln!(o, "    {label} : s{i}, {start}, {end}");
    }
    o.push_str("```\n");
}

fn verify_section(o: &mut String, m: &Manifest) {
    let image = m
        .artifacts
        .iter()
        .find(|a| a.kind == ArtifactKind::Image)
        .map_or_else(|| "IMAGE.img.xz".into(), |a| a.name.clone());
    let checksum = m
        .artifacts
        .iter()
        .find(|a| a.kind == ArtifactKind::Checksum)
        .map_or_else(|| format!("{image}.sha256"), |a| a.name.clone());
    let repo = m
        .source
        .repository
        .clone()
        .unwrap_or_else(|| "OWNER/REPO".into());
    let server = &m.source.server_url;
    // People paste these: every value is one shell word, however it was spelled.
    let q = crate::shell::quote;
    let identity = format!(
        "^{}/{}/\\.github/workflows/",
        regex::escape(server),
        regex::escape(&repo)
    );
    let _ = write!(
        o,
        "\n## Verify\n\nDownload the image and its checksum into one directory, then:\n\n```sh\nsha256sum -c {checksum}\n```\n\n\
         Check the signature (keyless Sigstore, signed by this repository's workflow):\n\n```sh\n\
         pi-image verify {image} --bundle {bundle} --repository {repo}\n\
         cosign verify-blob {image} --bundle {bundle} \\\n  \
         --certificate-identity-regexp {identity} \\\n  \
         --certificate-oidc-issuer https://token.actions.githubusercontent.com\n```\n",
        checksum = q(&checksum),
        image = q(&image),
        bundle = q(&format!("{image}.sigstore.json")),
        repo = q(&repo),
        identity = q(&identity),
    );
    // What `sign` signs by default besides the image and the manifest; the metadata and
    // the build log are covered by the manifest's digests.
    let signed: Vec<_> = m
        .artifacts
        .iter()
        .filter(|a| {
            matches!(
                a.kind,
                ArtifactKind::Checksum
                    | ArtifactKind::Sbom
                    | ArtifactKind::Cyclonedx
                    | ArtifactKind::PackagesLock
                    | ArtifactKind::Provenance
                    | ArtifactKind::Bmap
                    | ArtifactKind::RpiImager
                    | ArtifactKind::Sha256sums
            )
        })
        .map(|a| q(&a.name))
        .collect();
    if !signed.is_empty() {
        let _ = write!(
            o,
            "\n`SHA256SUMS` lists every artifact (`sha256sum -c --ignore-missing SHA256SUMS` checks those \
             you downloaded). It, the checksum, the SBOMs, the package lock, the bmap, the Imager repository and the \
             provenance statement have bundles of their own; `verify --manifest` checks every artifact's digest against the \
             signed manifest:\n\n\
             ```sh\nfor f in {}; do\n  pi-image verify \"$f\" --bundle \"$f.sigstore.json\" --repository {repo}\n\
             done\npi-image verify --manifest {manifest} --repository {repo}\n```\n",
            signed.join(" "),
            repo = q(&repo),
            manifest = q(&format!("{image}.manifest.json")),
        );
    }
}
