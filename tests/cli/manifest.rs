//! `manifest` after a real `collect-artifacts`: metadata, manifest, in-toto statement and
//! notes, validated by check-jsonschema against the schemas we ship, digests checked
//! with sha256sum, and stage timings from a realistic pi-gen build.log.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::support::{Workspace, read_outputs, repo_root, run, sha256_of};

const REAL_LOG: &str = "\
[23:50:00] Begin /home/runner/work/pi-gen
[23:50:01] Begin /home/runner/work/pi-gen/stage0
[23:50:01] Begin /home/runner/work/pi-gen/stage0/prerun.sh
[23:51:40] End /home/runner/work/pi-gen/stage0/prerun.sh
[23:51:40] Begin /home/runner/work/pi-gen/stage0/00-configure-apt
[23:51:40] Begin /home/runner/work/pi-gen/stage0/00-configure-apt/00-run.sh
[23:51:59] End /home/runner/work/pi-gen/stage0/00-configure-apt/00-run.sh
[23:52:00] End /home/runner/work/pi-gen/stage0/00-configure-apt
[23:55:00] End /home/runner/work/pi-gen/stage0
[23:55:00] Begin /home/runner/work/pi-gen/stage1
[23:59:00] End /home/runner/work/pi-gen/stage1
[23:59:00] Begin /home/runner/work/pi-gen/stage2
[23:59:00] Skip /home/runner/work/pi-gen/stage2/04-cloud-init/00-run.sh (not executable)
[00:10:00] End /home/runner/work/pi-gen/stage2
[00:10:00] Begin /home/runner/work/pi-gen/export-image
[00:15:00] End /home/runner/work/pi-gen/export-image
[00:15:00] Begin postrun.sh
[00:15:02] End postrun.sh
[00:15:02] End /home/runner/work/pi-gen
[00:15:02] Build finished
";

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// A workspace where `collect-artifacts` already ran on a zip with a real-format log.
fn collected() -> Workspace {
    let ws = Workspace::new();
    ws.put_zip(
        "image_2026-11-25-sugarkube-lite.zip",
        "2026-11-25-sugarkube-lite.img",
    );
    fs::create_dir_all(ws.root().join("work/sugarkube")).unwrap();
    fs::write(ws.root().join("work/sugarkube/build.log"), REAL_LOG).unwrap();
    let (code, _, err) = run(&mut ws.collect());
    assert_eq!(code, 0, "{err}");
    ws
}

fn manifest_cmd(ws: &Workspace) -> Command {
    let mut cmd = crate::support::pi_image(ws.root());
    cmd.args([
        "manifest",
        "--output-dir",
        "out",
        "--build-start",
        "2026-11-25T23:50:00Z",
        "--build-end",
        "2026-11-26T00:15:05Z",
    ])
    .env("GITHUB_REPOSITORY", "sugarkube/demo")
    .env("GITHUB_SHA", SHA)
    .env("GITHUB_REF", "refs/heads/main")
    .env("GITHUB_RUN_ID", "4242")
    .env("GITHUB_RUN_ATTEMPT", "2")
    .env("GITHUB_WORKFLOW", "pi-image-release")
    .env("PI_GEN_COMMIT", "fedcba9876543210fedcba9876543210fedcba98")
    .env("SOURCE_DATE_EPOCH", "1764115200");
    cmd
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

fn validate(schema: &str, file: &Path) {
    crate::support::assert_schema_valid(&repo_root().join("schemas").join(schema), file, None);
}

#[test]
#[ignore = "tier venv: needs check-jsonschema, actionlint or act from .venv (scripts/test.sh installs them)"]
fn manifest_metadata_provenance_and_notes() {
    let ws = collected();
    let outputs = ws.root().join("gh-output");
    let (code, _, err) = run(manifest_cmd(&ws).env("GITHUB_OUTPUT", &outputs).args([
        "--option",
        "clone_sugarkube=true",
        "--option",
        "dspace_branch=v3",
    ]));
    assert_eq!(code, 0, "{err}");
    let out = ws.out();

    let meta = json(&out.join("sugarkube.img.xz.metadata.json"));
    let build = &meta["build"];
    assert_eq!(build["stage_durations"]["stage0"], 299);
    assert_eq!(build["stage_durations"]["stage0/00-configure-apt"], 20);
    assert_eq!(build["stage_durations"]["stage2"], 660, "spans midnight");
    assert_eq!(build["stage_durations"]["export-image"], 300);
    assert_eq!(build["duration_seconds"], 1505);
    assert_eq!(build["result"], "finished");
    assert_eq!(build["pi_gen"]["ref"], "bookworm-arm64");
    assert_eq!(
        build["pi_gen"]["stages"],
        serde_json::json!(["stage0", "stage1", "stage2"])
    );
    assert_eq!(meta["options"]["clone_sugarkube"], true);
    assert_eq!(meta["options"]["userspace_arch"], "arm64");
    assert_eq!(meta["repository"]["commit"], SHA);
    assert_eq!(meta["generated_at"], "2025-11-26T00:00:00Z");
    validate(
        "metadata.schema.json",
        &out.join("sugarkube.img.xz.metadata.json"),
    );

    let manifest_path = out.join("sugarkube.img.xz.manifest.json");
    let manifest = json(&manifest_path);
    validate("manifest.schema.json", &manifest_path);
    assert_eq!(manifest["release"]["tag"], "v2026.11.26+g0123456");
    assert_eq!(manifest["release"]["name"], "Sugarkube Pi Image 2026-11-26");
    assert_eq!(manifest["source"]["run_attempt"], "2");
    let names: Vec<&str> = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "sugarkube.img.xz",
            "sugarkube.img.xz.sha256",
            "sugarkube.img.xz.metadata.json",
            "sugarkube.spdx.json",
            "sugarkube.cdx.json",
            "sugarkube.packages.lock",
            "sugarkube.img.bmap",
            "sugarkube.build.log",
            "sugarkube.rpi-imager.json",
            "sugarkube.intoto.json",
            "SHA256SUMS"
        ]
    );
    for a in manifest["artifacts"].as_array().unwrap() {
        let path = out.join(a["name"].as_str().unwrap());
        assert_eq!(a["sha256"], sha256_of(&path), "{path:?}");
        assert_eq!(a["size_bytes"], fs::metadata(&path).unwrap().len());
    }
    // SHA256SUMS covers every other artifact, for sha256sum itself.
    let sums = fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), names.len() - 1, "{sums}");
    crate::support::sh("sha256sum", &["--strict", "-c", "SHA256SUMS"], &out);
    assert_eq!(
        manifest["artifacts"][1]["contains_sha256"],
        sha256_of(&out.join("sugarkube.img.xz"))
    );

    // Deterministic JSON: sorted keys, 2-space indent, final newline.
    let text = fs::read_to_string(&manifest_path).unwrap();
    assert!(
        text.ends_with("}\n") && text.starts_with("{\n  \"artifacts\": ["),
        "{text}"
    );

    let statement_path = out.join("sugarkube.intoto.json");
    validate("intoto-statement.schema.json", &statement_path);
    let statement = json(&statement_path);
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    let subjects = statement["subject"].as_array().unwrap();
    assert_eq!(
        subjects.len(),
        9,
        "the image, checksum, metadata, SBOMs, lock, bmap, log and Imager repository"
    );
    assert_eq!(
        subjects[0]["digest"]["sha256"],
        sha256_of(&out.join("sugarkube.img.xz"))
    );
    assert_eq!(
        statement["predicate"]["runDetails"]["metadata"]["invocationId"],
        "https://github.com/sugarkube/demo/actions/runs/4242/attempts/2"
    );

    let notes = fs::read_to_string(out.join("RELEASE_NOTES.md")).unwrap();
    for needle in [
        "# Sugarkube Pi Image 2026-11-26",
        "| `stage2` | 11m 0s |",
        "```mermaid\ngantt",
        "stage0 : s0, ",
        "sha256sum -c sugarkube.img.xz.sha256",
        "cosign verify-blob sugarkube.img.xz --bundle sugarkube.img.xz.sigstore.json",
        "pi-image verify sugarkube.img.xz --bundle sugarkube.img.xz.sigstore.json --repository sugarkube/demo",
        "Not run: this image was not booted",
        "## Software\n\n3 packages are installed (debian 12 bookworm). `sugarkube.spdx.json` lists each",
        "for f in sugarkube.img.xz.sha256 sugarkube.spdx.json sugarkube.cdx.json sugarkube.packages.lock sugarkube.img.bmap sugarkube.rpi-imager.json sugarkube.intoto.json SHA256SUMS; do",
        "bmaptool copy --bmap sugarkube.img.bmap sugarkube.img.xz /dev/sdX",
        "sha256sum -c --ignore-missing SHA256SUMS",
    ] {
        assert!(notes.contains(needle), "missing {needle:?} in\n{notes}");
    }

    let o = read_outputs(&outputs);
    assert_eq!(o["tag"], "v2026.11.26+g0123456");
    assert_eq!(o["prerelease"], "false");
    assert_eq!(o["make-latest"], "true");
    assert_eq!(o["manifest-path"], "out/sugarkube.img.xz.manifest.json");
    assert_eq!(o["notes-path"], "out/RELEASE_NOTES.md");
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn reruns_are_byte_identical_and_nightly_channel() {
    let ws = collected();
    let (code, _, err) = run(&mut manifest_cmd(&ws));
    assert_eq!(code, 0, "{err}");
    let first = fs::read(ws.out().join("sugarkube.img.xz.manifest.json")).unwrap();
    let (code, _, err) = run(&mut manifest_cmd(&ws));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        first,
        fs::read(ws.out().join("sugarkube.img.xz.manifest.json")).unwrap()
    );

    let (code, _, err) = run(manifest_cmd(&ws).env("RELEASE_CHANNEL", "nightly"));
    assert_eq!(code, 0, "{err}");
    let m = json(&ws.out().join("sugarkube.img.xz.manifest.json"));
    assert_eq!(m["release"]["tag"], "nightly-20261126");
    assert_eq!(m["release"]["prerelease"], true);
    assert_eq!(m["release"]["make_latest"], false);
}

#[test]
#[ignore = "tier venv: needs check-jsonschema, actionlint or act from .venv (scripts/test.sh installs them)"]
fn smoke_evidence_and_bundles_are_recorded() {
    let ws = collected();
    let smoke = ws.root().join("smoke");
    fs::create_dir_all(smoke.join("first-boot-report")).unwrap();
    fs::write(smoke.join("serial.log"), "[first-boot] ok\n").unwrap();
    fs::write(
        smoke.join("first-boot-report/summary.json"),
        "{\"overall\": \"pass\"}",
    )
    .unwrap();
    fs::write(smoke.join("smoke-success.json"), "{\"status\": \"pass\"}").unwrap();
    fs::write(
        ws.out().join("sugarkube.img.xz.sigstore.json"),
        "{\"mediaType\": \"x\"}",
    )
    .unwrap();
    let (code, _, err) = run(manifest_cmd(&ws).args(["--smoke-dir", "smoke"]));
    assert_eq!(code, 0, "{err}");
    let path = ws.out().join("sugarkube.img.xz.manifest.json");
    validate("manifest.schema.json", &path);
    let m = json(&path);
    assert_eq!(m["smoke"]["status"], "pass");
    assert_eq!(
        m["smoke"]["artifacts"][0]["path"],
        "first-boot-report/summary.json"
    );
    assert_eq!(
        m["smoke"]["artifacts"][1]["sha256"],
        sha256_of(&smoke.join("serial.log"))
    );
    assert_eq!(
        m["artifacts"][0]["bundle"]["name"],
        "sugarkube.img.xz.sigstore.json"
    );
    let notes = fs::read_to_string(ws.out().join("RELEASE_NOTES.md")).unwrap();
    assert!(
        notes.contains("- Status: `pass`") && notes.contains("`serial.log`"),
        "{notes}"
    );
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn without_collect_metadata_the_raw_digest_is_recomputed() {
    let ws = collected();
    let raw = json(&ws.out().join("sugarkube.img.xz.metadata.json"))["image"]["raw_sha256"].clone();
    fs::remove_file(ws.out().join("sugarkube.img.xz.metadata.json")).unwrap();
    let (code, _, err) = run(&mut manifest_cmd(&ws));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        json(&ws.out().join("sugarkube.img.xz.metadata.json"))["image"]["raw_sha256"],
        raw
    );
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn bad_inputs() {
    let ws = Workspace::new();
    let (code, _, err) = run(&mut manifest_cmd(&ws));
    assert_eq!(code, 1);
    assert!(
        err.contains("image not found") && err.contains("collect-artifacts"),
        "{err}"
    );

    let ws = collected();
    for (var, val, needle) in [
        ("PI_GEN_STAGES", "", "PI_GEN_STAGES is empty"),
        ("ARM64", "2", "ARM64 must be 0 or 1 (got: 2)"),
        ("SOURCE_DATE_EPOCH", "soon", "SOURCE_DATE_EPOCH"),
        (
            "GITHUB_REPOSITORY",
            "nope",
            "`nope` is not a GitHub repository",
        ),
    ] {
        let (code, _, err) = run(manifest_cmd(&ws).env(var, val));
        assert_eq!(code, 2, "{var}={val}: {err}");
        assert!(err.contains(needle), "{var}={val}: {err}");
    }
    let (code, _, err) = run(manifest_cmd(&ws).args(["--option", "novalue"]));
    assert_eq!(code, 2);
    assert!(err.contains("missing `=`"), "{err}");

    // A changed image no longer matches its checksum: refuse to describe it.
    let image = ws.out().join("sugarkube.img.xz");
    let mut bytes = fs::read(&image).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    fs::write(&image, bytes).unwrap();
    let (code, _, err) = run(&mut manifest_cmd(&ws));
    assert_eq!(code, 1);
    assert!(
        err.contains("the image changed after it was collected"),
        "{err}"
    );
}

#[test]
#[ignore = "tier venv: needs check-jsonschema, actionlint or act from .venv (scripts/test.sh installs them)"]
fn changed_since_the_previous_release_and_inventory_checks() {
    let ws = collected();
    let out = ws.out();
    let lock = fs::read_to_string(out.join("sugarkube.packages.lock")).unwrap();
    // The previous release: one package older, one newer (a downgrade now), one gone,
    // and one that is new now.
    let previous = lock
        .replace(
            "pi-like-base arm64 1:2.0-1+b1",
            "pi-like-base arm64 1:1.9-2",
        )
        .replace("libpi-like0 arm64 0.9~rc1-3", "libpi-like0 arm64 0.9-1")
        .replace("pi-like-doc all 2.0-1\n", "")
        + "zz-removed arm64 3.0\n";
    let prev_path = ws.root().join("previous.packages.lock");
    fs::write(&prev_path, &previous).unwrap();
    let (code, _, err) = run(manifest_cmd(&ws).args([
        "--previous-lock",
        prev_path.to_str().unwrap(),
        "--previous-tag",
        "v2026.11.01+gabcdef0",
    ]));
    assert_eq!(code, 0, "{err}");
    let manifest_path = out.join("sugarkube.img.xz.manifest.json");
    validate("manifest.schema.json", &manifest_path);
    let manifest = json(&manifest_path);
    assert_eq!(manifest["previous"]["tag"], "v2026.11.01+gabcdef0");
    assert_eq!(manifest["previous"]["lock_sha256"], sha256_of(&prev_path));
    let notes = fs::read_to_string(out.join("RELEASE_NOTES.md")).unwrap();
    for needle in [
        "### Changed since `v2026.11.01+gabcdef0`",
        "1 added, 1 removed, 1 upgraded, 1 downgraded.",
        "| `pi-like-doc:all` | added | | `2.0-1` |",
        "| `zz-removed:arm64` | removed | `3.0` | |",
        "| `pi-like-base:arm64` | upgraded | `1:1.9-2` | `1:2.0-1+b1` |",
        "| `libpi-like0:arm64` | downgraded | `0.9-1` | `0.9~rc1-3` |",
    ] {
        assert!(notes.contains(needle), "missing {needle:?} in\n{notes}");
    }

    // A previous lock that is not one: exit 2, naming the flag.
    fs::write(&prev_path, "not a lock\n").unwrap();
    let (code, _, err) =
        run(manifest_cmd(&ws).args(["--previous-lock", prev_path.to_str().unwrap()]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--previous-lock") && err.contains("is not a packages.lock"),
        "{err}"
    );

    // A lock whose package line would make a link of the notes' table: refused, as its
    // name is not one dpkg allows.
    fs::write(
        &prev_path,
        previous.replace(
            "zz-removed arm64 3.0",
            "zz|[Get_the_fixed_image](https://evil.example/i)|y arm64 3.0",
        ),
    )
    .unwrap();
    let (code, _, err) =
        run(manifest_cmd(&ws).args(["--previous-lock", prev_path.to_str().unwrap()]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid package name"), "{err}");

    // The SBOM changed after collect-artifacts recorded it: refused, not re-hashed.
    let sbom = out.join("sugarkube.spdx.json");
    let text = fs::read_to_string(&sbom).unwrap();
    fs::write(&sbom, text.replace("pi-like-doc", "pi-like-dog")).unwrap();
    let (code, _, err) = run(manifest_cmd(&ws));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("changed after it was collected"), "{err}");
    fs::remove_file(&sbom).unwrap();
    let (code, _, err) = run(manifest_cmd(&ws));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is missing"), "{err}");
}

/// Checks `file` against Raspberry Pi Imager's own OS-list schema (vendored, see its
/// SOURCE.md).
fn validate_imager(file: &Path) {
    let schema = repo_root().join("tests/fixtures/third-party/rpi-imager/os-list-schema.json");
    crate::support::assert_schema_valid(&schema, file, None);
}

#[test]
#[ignore = "tier venv: needs check-jsonschema, actionlint or act from .venv (scripts/test.sh installs them)"]
fn the_imager_repository_names_the_released_files_and_imagers_schema_accepts_it() {
    let ws = collected();
    let out = ws.out();
    let (code, _, err) = run(manifest_cmd(&ws));
    assert_eq!(code, 0, "{err}");
    let path = out.join("sugarkube.rpi-imager.json");
    validate_imager(&path);
    let repo = json(&path);
    let manifest = json(&out.join("sugarkube.img.xz.manifest.json"));
    let tag = manifest["release"]["tag"].as_str().unwrap().to_owned();
    assert!(tag.contains('+'), "{tag}");
    let base = format!(
        "https://github.com/sugarkube/demo/releases/download/{}",
        tag.replace('+', "%2B")
    );
    let entry = &repo["os_list"][0];
    assert_eq!(repo["os_list"].as_array().unwrap().len(), 1);
    assert_eq!(entry["url"], format!("{base}/sugarkube.img.xz"));
    assert_eq!(entry["bmap_url"], format!("{base}/sugarkube.img.bmap"));
    // Imager checks the card against extract_sha256: the raw image's digest, taken here
    // by xz and sha256sum, not by the code under test.
    let image = out.join("sugarkube.img.xz");
    let raw = Command::new("bash")
        .args(["-c", "xz -dc \"$1\" | tee >(wc -c >&2) | sha256sum", "bash"])
        .arg(&image)
        .output()
        .unwrap();
    let raw_sha = String::from_utf8_lossy(&raw.stdout)[..64].to_owned();
    let raw_size: u64 = String::from_utf8_lossy(&raw.stderr).trim().parse().unwrap();
    assert_eq!(entry["extract_sha256"], raw_sha);
    assert_eq!(entry["extract_size"], raw_size);
    assert_eq!(entry["image_download_sha256"], sha256_of(&image));
    assert_eq!(
        entry["image_download_size"],
        fs::metadata(&image).unwrap().len()
    );
    assert_eq!(entry["release_date"], "2026-11-26");
    assert_eq!(entry["architecture"], "armv8");
    // The test image has neither cloud-init nor raspberrypi-sys-mods: no customisation.
    assert_eq!(entry["init_format"], "none");
    assert!(err.contains("auto: neither cloud-init"), "{err}");
    // The boards an arm64 image runs on, each defined in the file with the tag the entry names.
    assert_eq!(entry["devices"], serde_json::json!(["pi5", "pi4", "pi3"]));
    let tags: Vec<_> = repo["imager"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["tags"][0].clone())
        .collect();
    assert_eq!(serde_json::Value::from(tags), entry["devices"]);
    // Listed, digested and covered by SHA256SUMS.
    let listed = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "rpi-imager")
        .expect("the manifest lists the Imager repository");
    assert_eq!(listed["sha256"], sha256_of(&path));
    let sums = fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert!(sums.contains(&format!(
        "{}  sugarkube.rpi-imager.json\n",
        sha256_of(&path)
    )));
    let notes = fs::read_to_string(out.join("RELEASE_NOTES.md")).unwrap();
    assert!(
        notes.contains(&format!(
            "rpi-imager --repo {base}/sugarkube.rpi-imager.json"
        )),
        "{notes}"
    );

    // The user's choices.
    let (code, _, err) = run(manifest_cmd(&ws).args([
        "--imager-init-format",
        "cloudinit-rpi",
        "--imager-devices",
        "pi4,pi5,pi4",
        "--imager-name",
        "Sugarkube \"edge\"",
        "--imager-icon",
        "https://example.org/icon.png",
    ]));
    assert_eq!(code, 0, "{err}");
    validate_imager(&path);
    let entry = json(&path)["os_list"][0].clone();
    assert_eq!(entry["init_format"], "cloudinit-rpi");
    assert_eq!(entry["devices"], serde_json::json!(["pi5", "pi4"]));
    assert_eq!(entry["name"], "Sugarkube \"edge\"");
    assert_eq!(entry["icon"], "https://example.org/icon.png");

    // Bad choices: exit 2, naming the flag, and the earlier file is kept.
    let before = fs::read(&path).unwrap();
    for (args, needle) in [
        (&["--imager-devices", "pi2"][..], "--imager-devices"),
        (&["--imager-devices", "pi9"][..], "--imager-devices"),
        (&["--imager-name", "two\nlines"][..], "--imager-name"),
        (
            &["--imager-icon", "http://example.org/i.png"][..],
            "--imager-icon",
        ),
        (
            &["--imager-icon", "icons/../../etc/passwd"][..],
            "--imager-icon",
        ),
    ] {
        let (code, _, err) = run(manifest_cmd(&ws).args(args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(fs::read(&path).unwrap(), before, "{args:?}");
    }

    // Without the repository its URLs cannot be known: no file (the earlier one goes, so
    // nothing signs or uploads it), not listed.
    let (code, _, err) = run(manifest_cmd(&ws).env_remove("GITHUB_REPOSITORY"));
    assert_eq!(code, 0, "{err}");
    assert!(!path.exists(), "{err}");
    let manifest = json(&out.join("sugarkube.img.xz.manifest.json"));
    assert!(
        !manifest["artifacts"].to_string().contains("rpi-imager"),
        "{manifest}"
    );
    assert!(err.contains("no sugarkube.rpi-imager.json"), "{err}");
    let (code, _, err) = run(manifest_cmd(&ws).arg("--no-imager"));
    assert_eq!(code, 0, "{err}");
    assert!(!path.exists());
}
