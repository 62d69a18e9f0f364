//! `release` against GitHub's real recordings (the Octokit fixtures, replayed strictly)
//! and against a stateful loopback fake for the flows they do not cover.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use pi_image::commands::release::{LocalAsset, upload};
use pi_image::github::GitHub;
use serde_json::json;

use crate::support::github::{FakeGitHub, Replay, TOKEN};
use crate::support::{hex_sha256, pi_image, read_outputs, run};

const FIXTURE_TOKEN: &str = "0000000000000000000000000000000000000001";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn fixture_file() -> PathBuf {
    crate::support::repo_root()
        .join("tests/fixtures/third-party/octokit-fixtures/release-assets/test-upload.txt")
}

#[test]
fn recorded_release_assets_flow() {
    let replay = Replay::start("release-assets");
    rt().block_on(async {
        let gh = GitHub::new(
            &replay.base,
            &replay.base,
            FIXTURE_TOKEN,
            "octokit-fixture-org/release-assets",
        )
        .unwrap();
        let r = gh.release_by_tag("v1.0.0").await.unwrap().expect("release");
        assert_eq!(r.id, 1000);
        let a = gh
            .upload_asset(r.id, &fixture_file(), "test-upload.txt", Some("test"))
            .await
            .unwrap();
        assert_eq!(
            (a.id, a.name.as_str(), a.state.as_str()),
            (1000, "test-upload.txt", "uploaded")
        );
        assert_eq!(gh.list_assets(r.id).await.unwrap().len(), 1);
        assert_eq!(
            gh.get_asset(1000).await.unwrap().label.as_deref(),
            Some("test")
        );
        let renamed = gh
            .update_asset(1000, "new-filename.txt", "new label")
            .await
            .unwrap();
        assert_eq!(renamed.name, "new-filename.txt");
        gh.delete_asset(1000).await.unwrap();
    });
    replay.assert_complete();
}

#[test]
fn recorded_conflict_is_recovered_by_delete_and_reupload() {
    let replay = Replay::start("release-assets-conflict");
    let asset = LocalAsset {
        name: "test-upload.txt".into(),
        path: fixture_file(),
        size: 14,
        sha256: None,
    };
    rt().block_on(async {
        let gh = GitHub::new(
            &replay.base,
            &replay.base,
            FIXTURE_TOKEN,
            "octokit-fixture-org/release-assets-conflict",
        )
        .unwrap();
        let r = gh.release_by_tag("v1.0.0").await.unwrap().expect("release");
        let a = upload(&gh, r.id, &asset, Some("test"), 3).await.unwrap();
        assert_eq!(a.id, 1001, "the re-upload after the 422");
    });
    replay.assert_complete();
}

/// A directory with a manifest, notes and small artifacts, as `manifest` leaves it.
struct ReleaseDir {
    tmp: tempfile::TempDir,
}

impl ReleaseDir {
    fn new(smoke: Option<&str>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let files = [
            ("sk.img.xz", b"not really xz, but bytes".to_vec()),
            ("sk.img.xz.sha256", b"00  sk.img.xz\n".to_vec()),
            ("sk.img.xz.metadata.json", b"{}\n".to_vec()),
            ("sk.intoto.json", b"{\"_type\":\"x\"}\n".to_vec()),
        ];
        let mut artifacts = Vec::new();
        for (name, data) in &files {
            fs::write(d.join(name), data).unwrap();
            artifacts.push(json!({ "name": name, "kind": "image", "size_bytes": data.len(), "sha256": hex_sha256(data) }));
        }
        let manifest = json!({
            "schema_version": 1, "generated_at": "2026-11-26T00:00:00Z",
            "release": { "channel": "stable", "tag": "v2026.11.26+g0123456", "name": "Sk Pi Image 2026-11-26", "prerelease": false, "make_latest": true },
            "source": { "repository": "o/r", "server_url": "https://github.com", "ref": "refs/heads/main", "commit": "0123456789abcdef0123456789abcdef01234567", "workflow": null, "run_id": null, "run_attempt": null },
            "build": null, "options": {}, "artifacts": artifacts,
            "smoke": smoke.map(|s| json!({ "status": s, "directory": "smoke", "artifacts": [] })),
            "verifier": { "status": "not_run" }
        });
        fs::write(
            d.join("sk.img.xz.manifest.json"),
            serde_json::to_string_pretty(&manifest).unwrap(),
        )
        .unwrap();
        fs::write(d.join("RELEASE_NOTES.md"), "# Sk Pi Image\n").unwrap();
        Self { tmp }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn cmd(&self, gh: &FakeGitHub) -> Command {
        let mut c = pi_image(self.dir());
        c.args(["release", "--img-name", "sk", "--attempts", "4"])
            .env("GITHUB_TOKEN", TOKEN)
            .env("GITHUB_REPOSITORY", "o/r")
            .env("GITHUB_API_URL", &gh.base)
            .env("GITHUB_OUTPUT", self.dir().join("gh-output"));
        c
    }
}

const TAG: &str = "v2026.11.26+g0123456";

#[test]
fn first_run_publishes_and_rerun_changes_nothing() {
    let gh = FakeGitHub::start();
    let d = ReleaseDir::new(Some("pass"));
    let (code, stdout, err) = run(d.cmd(&gh).arg("--publish"));
    assert_eq!(code, 0, "{stdout}{err}");
    let r = gh.release(TAG).expect("release created");
    assert!(!r.draft && r.make_latest.as_deref() == Some("true"));
    assert_eq!(r.body, "# Sk Pi Image\n");
    let mut names: Vec<_> = r.assets.iter().map(|a| a.name.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "sk.img.xz",
            "sk.img.xz.manifest.json",
            "sk.img.xz.metadata.json",
            "sk.img.xz.sha256",
            "sk.intoto.json"
        ]
    );
    for a in &r.assets {
        assert_eq!(
            a.sha256,
            hex_sha256(&fs::read(d.dir().join(&a.name)).unwrap()),
            "{}",
            a.name
        );
    }
    assert_eq!(
        r.assets
            .iter()
            .find(|a| a.name == "sk.img.xz")
            .unwrap()
            .content_type,
        "application/x-xz"
    );
    // Created as a draft, published only after the uploads.
    let log = gh.log();
    let create = log
        .iter()
        .position(|l| l == "POST /repos/o/r/releases")
        .unwrap();
    let publish = log
        .iter()
        .rposition(|l| l.starts_with("PATCH /repos/o/r/releases/"))
        .unwrap();
    let last_upload = log
        .iter()
        .rposition(|l| l.contains("/assets?name="))
        .unwrap();
    assert!(create < last_upload && last_upload < publish, "{log:#?}");
    let out = read_outputs(&d.dir().join("gh-output"));
    assert_eq!(out["tag"], TAG);
    assert_eq!(
        out["release-url"],
        format!("https://github.com/o/r/releases/tag/{TAG}")
    );
    assert_eq!(out["uploaded"].split(' ').count(), 5);

    gh.clear_log();
    let (code, _, err) = run(d.cmd(&gh).arg("--publish"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(gh.writes(), Vec::<String>::new(), "a re-run writes nothing");
    assert!(err.contains("already up to date"), "{err}");
    assert_eq!(
        read_outputs(&d.dir().join("gh-output"))["kept"]
            .split(' ')
            .count(),
        5
    );
}

#[test]
fn dry_run_writes_nothing_and_prints_the_plan() {
    let gh = FakeGitHub::start();
    let d = ReleaseDir::new(Some("pass"));
    let (code, _, err) = run(&mut d.cmd(&gh));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("create release")
            && err.contains("upload   sk.img.xz")
            && err.contains("dry run"),
        "{err}"
    );
    assert_eq!(gh.writes(), Vec::<String>::new());
    assert!(gh.release(TAG).is_none());
}

#[test]
fn a_failed_upload_and_a_rate_limit_are_retried() {
    let gh = FakeGitHub::start();
    gh.state.lock().unwrap().faults.break_upload = Some("sk.img.xz".into());
    gh.state.lock().unwrap().faults.rate_limit = true;
    let d = ReleaseDir::new(Some("pass"));
    let (code, _, err) = run(d.cmd(&gh).arg("--publish"));
    assert_eq!(code, 0, "{err}");
    let log = gh.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("DELETE /repos/o/r/releases/assets/")),
        "the starter asset was deleted: {log:#?}"
    );
    assert_eq!(
        log.iter()
            .filter(|l| l.ends_with("/assets?name=sk.img.xz"))
            .count(),
        2,
        "{log:#?}"
    );
    let r = gh.release(TAG).unwrap();
    assert!(r.assets.iter().all(|a| a.state == "uploaded"));
    assert!(err.contains("retrying"), "{err}");
}

#[test]
fn changed_stale_and_undigested_assets() {
    let gh = FakeGitHub::start();
    let d = ReleaseDir::new(Some("pass"));
    fs::write(d.dir().join("extra.txt"), "one").unwrap();
    assert_eq!(
        run(d.cmd(&gh).args(["--publish", "--assets", "extra.txt"])).0,
        0
    );
    // Changed: the extra asset's content.
    fs::write(d.dir().join("extra.txt"), "two!").unwrap();
    gh.clear_log();
    let (code, _, err) = run(d.cmd(&gh).args(["--publish", "--assets", "extra.txt"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        gh.writes().len(),
        2,
        "delete + upload of extra.txt only: {:?}",
        gh.writes()
    );
    let r = gh.release(TAG).unwrap();
    assert_eq!(
        r.assets
            .iter()
            .find(|a| a.name == "extra.txt")
            .unwrap()
            .sha256,
        hex_sha256(b"two!")
    );
    // Stale: extra.txt is no longer listed; kept without --prune, deleted with it.
    gh.clear_log();
    assert_eq!(run(d.cmd(&gh).arg("--publish")).0, 0);
    assert!(
        gh.release(TAG)
            .unwrap()
            .assets
            .iter()
            .any(|a| a.name == "extra.txt")
    );
    assert_eq!(run(d.cmd(&gh).args(["--publish", "--prune"])).0, 0);
    assert!(
        !gh.release(TAG)
            .unwrap()
            .assets
            .iter()
            .any(|a| a.name == "extra.txt")
    );
    // Without digests on GitHub's side nothing can be proven equal: everything is re-uploaded.
    gh.state.lock().unwrap().faults.no_digests = true;
    gh.clear_log();
    assert_eq!(run(d.cmd(&gh).arg("--publish")).0, 0);
    assert_eq!(
        gh.writes().iter().filter(|l| l.contains("?name=")).count(),
        5
    );
}

#[test]
fn an_existing_draft_is_reused_and_pagination_is_followed() {
    let gh = FakeGitHub::start();
    let d = ReleaseDir::new(Some("pass"));
    // Another run left a draft with three assets (more than one page of two).
    assert_eq!(run(d.cmd(&gh).args(["--publish", "--draft"])).0, 0);
    let draft = gh.release(TAG).unwrap();
    assert!(draft.draft);
    gh.clear_log();
    let (code, _, err) = run(d.cmd(&gh).arg("--publish"));
    assert_eq!(code, 0, "{err}");
    let log = gh.log();
    assert!(
        !log.contains(&"POST /repos/o/r/releases".to_owned()),
        "no second release: {log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains("/assets?page=3")),
        "pages followed: {log:#?}"
    );
    let r = gh.release(TAG).unwrap();
    assert_eq!(r.id, draft.id);
    assert!(!r.draft);
    assert_eq!(gh.state.lock().unwrap().releases.len(), 1);
    assert_eq!(gh.writes().len(), 1, "only the publish: {:?}", gh.writes());
}

#[test]
fn refusals_happen_before_any_request() {
    let gh = FakeGitHub::start();
    let d = ReleaseDir::new(None);
    let (code, _, err) = run(d.cmd(&gh).arg("--publish"));
    assert_eq!(code, 2);
    assert!(
        err.contains("QEMU smoke evidence is required when publish_release=true"),
        "{err}"
    );
    let d = ReleaseDir::new(Some("pass"));
    let (code, _, err) = run(d.cmd(&gh).arg("--publish").env_remove("GITHUB_TOKEN"));
    assert_eq!(code, 2);
    assert!(err.contains("no GitHub token"), "{err}");
    let big = d.dir().join("huge.img");
    fs::File::create(&big).unwrap().set_len(2 << 30).unwrap();
    let (code, _, err) = run(d.cmd(&gh).args(["--publish", "--assets", "huge.img"]));
    assert_eq!(code, 2);
    assert!(err.contains("2 GiB or more"), "{err}");
    fs::remove_file(d.dir().join("sk.img.xz.sha256")).unwrap();
    let (code, _, err) = run(d.cmd(&gh).arg("--publish"));
    assert_eq!(code, 2);
    assert!(
        err.contains("asset `sk.img.xz.sha256` is listed for the release but cannot be read"),
        "{err}"
    );
    fs::write(d.dir().join("sk.img.xz.manifest.json"), "{ not json").unwrap();
    let (code, _, err) = run(d.cmd(&gh).arg("--publish"));
    assert_eq!(code, 2);
    assert!(err.contains("is not a pi-image manifest"), "{err}");
    assert_eq!(gh.log(), Vec::<String>::new(), "nothing reached the server");
    // --allow-unsmoked publishes anyway.
    let d = ReleaseDir::new(None);
    assert_eq!(run(d.cmd(&gh).args(["--publish", "--allow-unsmoked"])).0, 0);
    assert!(!gh.release(TAG).unwrap().draft);
    assert!(!gh.log().is_empty());
}

#[test]
fn the_token_is_never_printed() {
    let gh = FakeGitHub::start();
    let d = ReleaseDir::new(Some("pass"));
    let (code, stdout, err) = run(d
        .cmd(&gh)
        .args(["--publish", "-vv"])
        .env("GITHUB_ACTIONS", "true"));
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains(&format!("::add-mask::{TOKEN}")),
        "masked in Actions"
    );
    let shown = stdout.replace(&format!("::add-mask::{TOKEN}"), "");
    assert!(
        !shown.contains(TOKEN) && !err.contains(TOKEN),
        "token leaked"
    );
}

#[test]
fn files_changed_after_the_manifest_are_not_published() {
    let gh = FakeGitHub::start();
    let d = ReleaseDir::new(Some("pass"));
    let image = d.dir().join("sk.img.xz");
    // Same size, other bytes: caught by the digest of the bytes as they were uploaded.
    let mut bytes = fs::read(&image).unwrap();
    bytes[0] ^= 1;
    fs::write(&image, &bytes).unwrap();
    let (code, _, err) = run(d.cmd(&gh).arg("--publish"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("changed after the manifest was written")
            && err.contains("the upload was removed"),
        "{err}"
    );
    let r = gh.release(TAG).unwrap();
    assert!(r.draft, "not published");
    assert!(!r.assets.iter().any(|a| a.name == "sk.img.xz"));
    // Another size: refused before any request.
    fs::write(&image, b"short").unwrap();
    gh.clear_log();
    let (code, _, err) = run(d.cmd(&gh).arg("--publish"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("changed after the manifest was written"),
        "{err}"
    );
    assert_eq!(gh.log(), Vec::<String>::new());
}

#[test]
fn without_server_digests_changed_files_are_caught_by_local_hashing() {
    let gh = FakeGitHub::start();
    gh.state.lock().unwrap().faults.no_digests = true;
    let d = ReleaseDir::new(Some("pass"));
    let image = d.dir().join("sk.img.xz");
    let mut bytes = fs::read(&image).unwrap();
    bytes[3] ^= 1;
    fs::write(&image, &bytes).unwrap();
    let (code, _, err) = run(d.cmd(&gh).arg("--publish"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("changed after the manifest was written"),
        "{err}"
    );
    assert!(
        !gh.release(TAG)
            .unwrap()
            .assets
            .iter()
            .any(|a| a.name == "sk.img.xz")
    );
}

/// A bundle for `file` as `sign` writes it, as far as `release` reads it: a message
/// signature naming the file's SHA-256 (release uploads bundles; `verify` checks them).
fn bundle_for(file: &Path) -> String {
    let digest = hex_sha256(&fs::read(file).unwrap());
    let bytes: Vec<u8> = (0..digest.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digest[i..i + 2], 16).unwrap())
        .collect();
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    };
    serde_json::to_string_pretty(&json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": { "publicKey": { "hint": "aGludA==" }, "tlogEntries": [] },
        "messageSignature": {
            "messageDigest": { "algorithm": "SHA2_256", "digest": b64 },
            "signature": "c2ln"
        }
    }))
    .unwrap()
}

#[test]
fn the_manifests_own_bundle_is_uploaded_and_a_stale_one_refused() {
    let gh = FakeGitHub::start();
    let d = ReleaseDir::new(Some("pass"));
    let manifest = d.dir().join("sk.img.xz.manifest.json");
    let bundle = d.dir().join("sk.img.xz.manifest.json.sigstore.json");
    fs::write(&bundle, bundle_for(&manifest)).unwrap();

    let (code, _, err) = run(&mut d.cmd(&gh));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("upload   sk.img.xz.manifest.json.sigstore.json"),
        "the dry run plans it: {err}"
    );
    let (code, _, err) = run(d.cmd(&gh).arg("--publish"));
    assert_eq!(code, 0, "{err}");
    let r = gh.release(TAG).unwrap();
    let uploaded = r
        .assets
        .iter()
        .find(|a| a.name == "sk.img.xz.manifest.json.sigstore.json")
        .unwrap_or_else(|| panic!("not uploaded: {:?}", r.assets));
    assert_eq!(uploaded.sha256, hex_sha256(&fs::read(&bundle).unwrap()));
    assert_eq!(r.assets.len(), 6, "{:?}", r.assets);
    assert_eq!(
        read_outputs(&d.dir().join("gh-output"))["uploaded"]
            .split(' ')
            .count(),
        6
    );
    gh.clear_log();
    assert_eq!(run(d.cmd(&gh).arg("--publish")).0, 0);
    assert_eq!(gh.writes(), Vec::<String>::new(), "a re-run writes nothing");

    // The manifest written again after signing: its old bundle is not published.
    let mut text = fs::read_to_string(&manifest).unwrap();
    text.push('\n');
    fs::write(&manifest, text).unwrap();
    gh.clear_log();
    let (code, _, err) = run(d.cmd(&gh).arg("--publish"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("does not sign the current manifest"), "{err}");
    assert_eq!(gh.log(), Vec::<String>::new(), "nothing reached the server");
}

/// The token goes with every page request: a `Link` to another host is refused before
/// any request is sent there.
#[test]
fn a_next_page_outside_the_api_is_not_followed() {
    let gh = FakeGitHub::start();
    let d = ReleaseDir::new(Some("pass"));
    // A draft with more assets than one page holds.
    assert_eq!(run(d.cmd(&gh).args(["--publish", "--draft"])).0, 0);
    gh.state.lock().unwrap().faults.foreign_link = Some("http://127.0.0.1:9".to_owned());
    let (code, _, err) = run(d.cmd(&gh).arg("--publish"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("points outside the API"), "{err}");
    assert!(
        !err.contains("onnection refused"),
        "a request was sent there: {err}"
    );
}

/// Seeds the fake with a published release holding `assets` (name, bytes).
fn seed(gh: &FakeGitHub, tag: &str, prerelease: bool, at: &str, assets: &[(&str, &[u8])]) {
    let mut s = gh.state.lock().unwrap();
    s.next_id += 1;
    let id = s.next_id;
    let mut list = Vec::new();
    for (name, bytes) in assets {
        s.next_id += 1;
        list.push(crate::support::github::FakeAsset {
            id: s.next_id,
            name: (*name).to_owned(),
            size: bytes.len() as u64,
            sha256: hex_sha256(bytes),
            state: "uploaded".into(),
            content_type: "text/plain".into(),
            content: bytes.to_vec(),
        });
    }
    s.releases.push(crate::support::github::FakeRelease {
        id,
        tag: tag.into(),
        name: tag.into(),
        body: String::new(),
        draft: false,
        prerelease,
        make_latest: None,
        published_at: Some(at.into()),
        assets: list,
    });
}

#[test]
fn the_previous_releases_lock_is_fetched_for_its_channel_without_the_token_leaving_github() {
    let gh = FakeGitHub::start();
    let lock = |v: &str| format!("# lock\nimage sk.img.xz 00\n\nlibc6 arm64 {v}\n");
    let old_stable = lock("2.36-9");
    seed(
        &gh,
        "v2026.11.01+gaaaaaaa",
        false,
        "2026-11-01T00:00:00Z",
        &[("sk.packages.lock", old_stable.as_bytes())],
    );
    seed(
        &gh,
        "nightly-20261102",
        true,
        "2026-11-02T00:00:00Z",
        &[("sk.packages.lock", lock("2.36-10").as_bytes())],
    );
    let d = ReleaseDir::new(Some("pass"));
    let target = d.dir().join("previous.packages.lock");
    let fetch = |channel: &str| {
        let mut c = d.cmd(&gh);
        c.args([
            "--fetch-previous-lock",
            target.to_str().unwrap(),
            "--channel",
            channel,
        ]);
        run(c)
    };
    let (code, _, err) = fetch("stable");
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::read_to_string(&target).unwrap(), old_stable);
    let out = read_outputs(&d.dir().join("gh-output"));
    assert_eq!(out["previous-tag"], "v2026.11.01+gaaaaaaa");
    assert_eq!(out["previous-lock"], target.to_str().unwrap());
    // The download went to the storage origin, and the token did not go with it.
    let storage = gh.state.lock().unwrap().storage.clone();
    assert_eq!(storage.len(), 1, "{storage:?}");
    assert_eq!(storage[0].1, None, "the token reached the storage host");
    assert!(gh.writes().is_empty(), "it only reads: {:?}", gh.writes());

    // A second hop within the storage's origin gets no token either.
    gh.state.lock().unwrap().faults.storage_hop = true;
    let (code, _, err) = fetch("nightly");
    assert_eq!(code, 0, "{err}");
    assert!(fs::read_to_string(&target).unwrap().contains("2.36-10"));
    let storage = gh.state.lock().unwrap().storage.clone();
    assert_eq!(storage.len(), 3, "{storage:?}");
    assert!(
        storage.iter().all(|(_, auth)| auth.is_none()),
        "{storage:?}"
    );

    // A newer stable release without a lock: nothing to compare with, and the file of
    // the earlier run goes (it would compare with the wrong release).
    seed(
        &gh,
        "v2026.11.03+gbbbbbbb",
        false,
        "2026-11-03T00:00:00Z",
        &[("sk.img.xz", b"x")],
    );
    let (code, _, err) = fetch("stable");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("has no `sk.packages.lock`"), "{err}");
    assert!(!target.exists());
    assert_eq!(
        read_outputs(&d.dir().join("gh-output"))["previous-lock"],
        ""
    );

    // What the previous release holds under that name is hostile: not a lock, not used.
    seed(
        &gh,
        "v2026.11.04+gccccccc",
        false,
        "2026-11-04T00:00:00Z",
        &[("sk.packages.lock", b"# lock\n\nx|[a](http://e)|y arm64 1\n")],
    );
    let (code, _, err) = fetch("stable");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("is not a package lock"), "{err}");
    assert!(!target.exists());

    // The lock it fetched is what manifest's --previous-lock reads: covered by
    // manifest::changed_since_the_previous_release_and_inventory_checks.
    let (code, _, err) = run(d.cmd(&gh).args(["--fetch-previous-lock", "x", "--publish"]));
    assert_eq!(code, 2, "{err}");
    // Never one of the image's own files (it is removed when there is no previous lock).
    let own = d.dir().join("sk.packages.lock");
    let (code, _, err) = run(d.cmd(&gh).arg("--fetch-previous-lock").arg(&own));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("one of this image's own files"), "{err}");
}
