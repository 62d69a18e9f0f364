//! `release --fetch-previous-lock FILE`: the package lock of the previous published
//! release of the same channel, for `manifest --previous-lock` (the notes' "Changed
//! since"). It runs before `manifest`, so it reads no manifest: the channel and the
//! image name say which release and which asset.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::github::{GitHub, Release};
use crate::model::manifest::Channel;

/// The largest lock read: a Pi image has some thousands of packages, 40 bytes each.
const MAX_LOCK: usize = 32 << 20;

/// What to fetch, checked.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: PathBuf,
    pub channel: Channel,
    /// `IMG_NAME.packages.lock`.
    pub asset: String,
    /// This build's tag, when known: a re-run does not compare a release with itself.
    pub current_tag: Option<String>,
}

/// What was fetched, or why nothing was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    pub tag: Option<String>,
    pub path: Option<PathBuf>,
    pub why_not: Option<String>,
}

/// Whether a release belongs to `channel`, by the tags and flags `manifest` gives them.
fn in_channel(r: &Release, channel: Channel) -> bool {
    match channel {
        Channel::Stable => !r.prerelease && r.tag_name.starts_with('v'),
        Channel::Nightly => r.prerelease && r.tag_name.starts_with("nightly-"),
    }
}

/// The previous release of `channel`: the most recently published one that is not
/// `current`. Pure.
pub fn pick<'a>(
    releases: &'a [Release],
    channel: Channel,
    current: Option<&str>,
) -> Option<&'a Release> {
    releases
        .iter()
        .filter(|r| !r.draft && r.published_at.is_some() && in_channel(r, channel))
        // A tag outside git's grammar (GitHub allows some) is not one `manifest` made;
        // the one picked goes into the notes and the manifest.
        .filter(|r| crate::validate::git_ref("a release tag", &r.tag_name).is_ok())
        .filter(|r| Some(r.tag_name.as_str()) != current)
        .max_by(|a, b| a.published_at.cmp(&b.published_at).then(a.id.cmp(&b.id)))
}

/// Finds the previous release and writes its lock to `req.path` (atomically), or removes
/// a file left there by an earlier run and says why there is none.
pub async fn fetch(gh: &GitHub, req: &Request) -> anyhow::Result<Fetched> {
    let releases = gh.list_releases().await?;
    let none = |why: String| -> anyhow::Result<Fetched> {
        // A lock left by an earlier run would make the notes compare with the wrong release.
        if crate::atomic::remove_if_present(&req.path)? {
            tracing::info!("removed `{}` of an earlier run", req.path.display());
        }
        tracing::warn!("{why}: the notes will have no \"Changed since\" section");
        Ok(Fetched {
            why_not: Some(why),
            ..Fetched::default()
        })
    };
    let channel = serde_json::to_value(req.channel)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let Some(previous) = pick(&releases, req.channel, req.current_tag.as_deref()) else {
        return none(format!("no earlier published {channel} release"));
    };
    let tag = previous.tag_name.clone();
    let Some(asset) = previous
        .assets
        .iter()
        .find(|a| a.name == req.asset && a.state == "uploaded")
    else {
        return none(format!(
            "the previous {channel} release `{tag}` has no `{}`",
            req.asset
        ));
    };
    if asset.size > MAX_LOCK as u64 {
        return none(format!(
            "`{}` of release `{tag}` is {} bytes, more than a package lock",
            req.asset, asset.size
        ));
    }
    let bytes = gh
        .download_asset(asset.id, MAX_LOCK)
        .await
        .with_context(|| format!("cannot download `{}` of release `{tag}`", req.asset))?;
    // Exactly what `manifest` will read: UTF-8, and a lock by its grammar.
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return none(format!(
            "`{}` of release `{tag}` is not UTF-8 text",
            req.asset
        ));
    };
    if let Err(e) = crate::sbom::lock::parse(text) {
        return none(format!(
            "`{}` of release `{tag}` is not a package lock ({e})",
            req.asset
        ));
    }
    crate::atomic::write(&req.path, &bytes)?;
    tracing::info!(
        "previous {channel} release `{tag}`: its `{}` is in `{}`",
        req.asset,
        req.path.display()
    );
    Ok(Fetched {
        tag: Some(tag),
        path: Some(req.path.clone()),
        why_not: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: u64, tag: &str, prerelease: bool, draft: bool, at: Option<&str>) -> Release {
        Release {
            id,
            tag_name: tag.into(),
            name: None,
            body: None,
            draft,
            prerelease,
            published_at: at.map(str::to_owned),
            html_url: String::new(),
            upload_url: String::new(),
            assets: vec![],
        }
    }

    #[test]
    fn the_previous_release_is_the_newest_published_one_of_the_channel() {
        let all = [
            r(
                1,
                "v2026.11.01+gaaaaaaa",
                false,
                false,
                Some("2026-11-01T00:00:00Z"),
            ),
            r(
                2,
                "nightly-20261102",
                true,
                false,
                Some("2026-11-02T00:00:00Z"),
            ),
            r(
                3,
                "v2026.11.03+gbbbbbbb",
                false,
                false,
                Some("2026-11-03T00:00:00Z"),
            ),
            r(4, "v2026.11.04+gccccccc", false, true, None),
            r(5, "tools-v1", false, false, Some("2026-11-05T00:00:00Z")),
        ];
        let tag = |c, cur| pick(&all, c, cur).map(|r| r.tag_name.as_str());
        assert_eq!(tag(Channel::Stable, None), Some("v2026.11.03+gbbbbbbb"));
        assert_eq!(
            tag(Channel::Stable, Some("v2026.11.03+gbbbbbbb")),
            Some("v2026.11.01+gaaaaaaa")
        );
        assert_eq!(tag(Channel::Nightly, None), Some("nightly-20261102"));
        assert_eq!(tag(Channel::Nightly, Some("nightly-20261102")), None);
    }
}
