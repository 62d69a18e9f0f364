use super::*;
use serde_json::json;

fn input(assets: &[(&str, &str, u64)], prune: bool, mode: Mode) -> Input {
    let manifest: Manifest = serde_json::from_value(json!({
        "schema_version": 1, "generated_at": "2026-01-01T00:00:00Z",
        "release": { "channel": "stable", "tag": "v1", "name": "N", "prerelease": false, "make_latest": true },
        "source": { "repository": "o/r", "server_url": "https://github.com", "ref": null, "commit": null, "workflow": null, "run_id": null, "run_attempt": null },
        "build": null, "options": {}, "artifacts": [], "smoke": null, "verifier": { "status": "not_run" }
    }))
    .unwrap();
    Input {
        manifest: Some(manifest),
        tag: "v1".into(),
        name: "N".into(),
        notes: "notes\n".into(),
        prerelease: false,
        make_latest: true,
        target_commitish: None,
        assets: assets
            .iter()
            .map(|(n, sha, size)| LocalAsset {
                name: (*n).into(),
                path: PathBuf::from(n),
                size: *size,
                sha256: Some((*sha).into()),
            })
            .collect(),
        mode,
        prune,
        token: None,
        repository: "o/r".into(),
        api_url: String::new(),
        upload_url: String::new(),
        attempts: 1,
    }
}

fn remote(name: &str, id: u64, digest: Option<&str>, size: u64, state: &str) -> Asset {
    Asset {
        id,
        name: name.into(),
        label: None,
        state: state.into(),
        size,
        digest: digest.map(|d| format!("sha256:{d}")),
        content_type: None,
    }
}

fn release(draft: bool) -> Release {
    Release {
        id: 7,
        tag_name: "v1".into(),
        name: Some("N".into()),
        body: Some("notes".into()),
        draft,
        prerelease: false,
        published_at: None,
        html_url: String::new(),
        upload_url: String::new(),
        assets: vec![],
    }
}

#[test]
fn first_run_creates_uploads_and_publishes() {
    let i = input(
        &[("a.img.xz", "aa", 3), ("a.sha256", "bb", 1)],
        false,
        Mode::Publish,
    );
    let p = plan(&i, None, &[]);
    assert!(p.create && p.publish && !p.update_fields);
    assert_eq!(
        p.ops,
        vec![
            AssetOp::Upload("a.img.xz".into()),
            AssetOp::Upload("a.sha256".into())
        ]
    );
}

#[test]
fn rerun_changes_nothing() {
    let i = input(&[("a.img.xz", "aa", 3)], false, Mode::Publish);
    let p = plan(
        &i,
        Some(&release(false)),
        &[remote("a.img.xz", 1, Some("aa"), 3, "uploaded")],
    );
    assert!(!p.create && !p.publish && !p.update_fields);
    assert_eq!(p.ops, vec![AssetOp::Keep("a.img.xz".into())]);
}

#[test]
fn changed_partial_and_undigested_assets_are_replaced() {
    let i = input(
        &[
            ("a", "aa", 3),
            ("b", "bb", 3),
            ("c", "cc", 3),
            ("d", "dd", 3),
        ],
        false,
        Mode::Publish,
    );
    let p = plan(
        &i,
        Some(&release(true)),
        &[
            remote("a", 1, Some("zz"), 3, "uploaded"),
            remote("b", 2, Some("bb"), 1, "starter"),
            remote("c", 3, None, 3, "uploaded"),
            remote("d", 4, Some("dd"), 4, "uploaded"),
        ],
    );
    assert!(p.publish, "an existing draft is published");
    for (op, id) in p.ops.iter().zip(1..) {
        assert!(
            matches!(op, AssetOp::Replace { asset_id, .. } if *asset_id == id),
            "{op:?}"
        );
    }
}

#[test]
fn stale_assets_need_prune() {
    let remote = [remote("old.img.xz", 9, Some("00"), 1, "uploaded")];
    let p = plan(
        &input(&[], false, Mode::Publish),
        Some(&release(false)),
        &remote,
    );
    assert_eq!(p.ops, vec![AssetOp::Leave("old.img.xz".into())]);
    let p = plan(
        &input(&[], true, Mode::Publish),
        Some(&release(false)),
        &remote,
    );
    assert_eq!(
        p.ops,
        vec![AssetOp::Delete {
            name: "old.img.xz".into(),
            asset_id: 9
        }]
    );
}

#[test]
fn drafts_stay_drafts_and_notes_changes_update() {
    let i = input(&[], false, Mode::Draft);
    assert!(!plan(&i, None, &[]).publish);
    let mut r = release(false);
    r.body = Some("old notes".into());
    assert!(plan(&i, Some(&r), &[]).update_fields);
}
