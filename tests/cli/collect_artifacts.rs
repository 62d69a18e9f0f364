//! `collect-artifacts` on real images: every source format, discovery rules, bad
//! inputs, atomicity and interruption. Outputs are checked with `xz -t`,
//! `sha256sum -c` and `xz -dc | sha256sum` against the original image.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{
    Workspace, assert_valid_outputs, pi_like_image, read_outputs, run, sh, sha256_of,
    xz_content_sha256,
};

fn raw_sha() -> String {
    sha256_of(pi_like_image())
}

fn metadata(ws: &Workspace, name: &str) -> serde_json::Value {
    let text = fs::read_to_string(ws.out().join(format!("{name}.img.xz.metadata.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn zip_from_pi_gen_is_streamed_into_xz() {
    let ws = Workspace::new();
    let zip = ws.put_zip(
        "image_2026-06-18-sugarkube-lite.zip",
        "2026-06-18-sugarkube-lite.img",
    );
    let zip_sha = sha256_of(&zip);
    let outputs = ws.root().join("gh-output");
    let (code, _, err) = run(ws.collect().env("GITHUB_OUTPUT", &outputs));
    assert_eq!(code, 0, "{err}");
    assert_valid_outputs(&ws.out(), "sugarkube");
    let image = ws.out().join("sugarkube.img.xz");
    assert_eq!(xz_content_sha256(&image), raw_sha());
    assert_eq!(sha256_of(&zip), zip_sha, "input untouched");

    // The pair still verifies after moving it elsewhere (no paths in the checksum).
    let elsewhere = ws.root().join("moved");
    fs::create_dir_all(&elsewhere).unwrap();
    for f in ["sugarkube.img.xz", "sugarkube.img.xz.sha256"] {
        fs::rename(ws.out().join(f), elsewhere.join(f)).unwrap();
    }
    sh("sha256sum", &["-c", "sugarkube.img.xz.sha256"], &elsewhere);

    let out = read_outputs(&outputs);
    assert_eq!(out["image-path"], "out/sugarkube.img.xz");
    assert_eq!(out["checksum-path"], "out/sugarkube.img.xz.sha256");
    assert_eq!(
        out["sha256"],
        sha256_of(&elsewhere.join("sugarkube.img.xz"))
    );
    assert_eq!(
        out["size"],
        fs::metadata(elsewhere.join("sugarkube.img.xz"))
            .unwrap()
            .len()
            .to_string()
    );
    assert_eq!(out["raw-sha256"], raw_sha());
    assert_eq!(
        out["raw-size"],
        fs::metadata(pi_like_image()).unwrap().len().to_string()
    );

    let meta = metadata(&ws, "sugarkube");
    assert_eq!(meta["image"]["raw_sha256"], raw_sha());
    assert_eq!(meta["source"]["entry"], "2026-06-18-sugarkube-lite.img");
    assert_eq!(meta["source"]["format"], "zip");
    assert!(
        !ws.root()
            .join("staging")
            .join("2026-06-18-sugarkube-lite.img")
            .exists()
    );
    assert!(
        Workspace::files(&ws.out())
            .iter()
            .all(|f| !f.contains("partial"))
    );
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn zip64_archives_work() {
    let ws = Workspace::new();
    let staging = ws.root().join("staging");
    fs::create_dir_all(&staging).unwrap();
    fs::copy(pi_like_image(), staging.join("x.img")).unwrap();
    // -fz writes Zip64 records even for a small file: the same structures as a >4 GiB image.
    sh(
        "zip",
        &[
            "-q",
            "-j",
            "-fz",
            "../deploy/image_2026-01-01-x.zip",
            "x.img",
        ],
        &staging,
    );
    let listing = sh(
        "unzip",
        &["-Z", "-v", "../deploy/image_2026-01-01-x.zip"],
        &staging,
    );
    assert!(
        listing.contains("ID 0x0001 (PKWARE 64-bit sizes)")
            && listing.contains("required to extract:   4.5"),
        "{listing}"
    );
    let (code, _, err) = run(ws.collect().args(["--img-name", "x"]));
    assert_eq!(code, 0, "{err}");
    assert_valid_outputs(&ws.out(), "x");
    assert_eq!(xz_content_sha256(&ws.out().join("x.img.xz")), raw_sha());
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn gz_and_raw_img_and_deep_paths() {
    let ws = Workspace::new();
    ws.put_gz("image_2026-01-01-a.img.gz");
    let (code, _, err) = run(ws.collect().args(["--img-name", "a"]));
    assert_eq!(code, 0, "{err}");
    assert_valid_outputs(&ws.out(), "a");
    assert_eq!(xz_content_sha256(&ws.out().join("a.img.xz")), raw_sha());

    let ws = Workspace::new();
    ws.put_img("d1/d2/d3/d4/d5/deep.img");
    let (code, _, err) = run(ws.collect());
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        xz_content_sha256(&ws.out().join("sugarkube.img.xz")),
        raw_sha()
    );
    assert_eq!(
        metadata(&ws, "sugarkube")["source"]["path"],
        "d1/d2/d3/d4/d5/deep.img"
    );

    let ws = Workspace::new();
    ws.put_img("d1/d2/d3/d4/d5/d6/too-deep.img");
    let (code, _, err) = run(ws.collect());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no image found under `deploy`") && err.contains("up to 6 levels deep"),
        "{err}"
    );
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn existing_xz_is_copied_verified_and_byte_identical() {
    let ws = Workspace::new();
    let src = ws.put_xz("image_2026-01-01-sk.img.xz");
    let (code, _, err) = run(ws.collect().args(["--img-name", "sk"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        fs::read(&src).unwrap(),
        fs::read(ws.out().join("sk.img.xz")).unwrap()
    );
    assert_valid_outputs(&ws.out(), "sk");
    assert_eq!(metadata(&ws, "sk")["image"]["raw_sha256"], raw_sha());

    // --move verifies, then renames: the source is gone and the output is intact.
    let ws = Workspace::new();
    let src = ws.put_xz("image_2026-01-01-sk.img.xz");
    let src_sha = sha256_of(&src);
    let (code, _, err) = run(ws.collect().args(["--img-name", "sk", "--move"]));
    assert_eq!(code, 0, "{err}");
    assert!(!src.exists());
    assert_eq!(sha256_of(&ws.out().join("sk.img.xz")), src_sha);
    assert_valid_outputs(&ws.out(), "sk");
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn preference_xz_over_zip_over_gz_over_img() {
    let ws = Workspace::new();
    ws.put_img("2026-01-01-sk-lite.img");
    ws.put_zip("image_2026-01-01-sk-lite.zip", "2026-01-01-sk-lite.img");
    let (code, _, err) = run(ws.collect());
    assert_eq!(code, 0, "{err}");
    assert_eq!(metadata(&ws, "sugarkube")["source"]["format"], "zip");
    ws.put_xz("image_2026-01-01-sk-lite.img.xz");
    let (code, _, err) = run(ws.collect());
    assert_eq!(code, 0, "{err}");
    assert_eq!(metadata(&ws, "sugarkube")["source"]["format"], "img.xz");
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn only_the_deploy_dir_is_scanned() {
    let ws = Workspace::new();
    fs::write(ws.root().join("stray.img.xz"), b"not this one").unwrap();
    ws.put_xz("x/quux.img.xz");
    let (code, _, err) = run(ws.collect());
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        xz_content_sha256(&ws.out().join("sugarkube.img.xz")),
        raw_sha()
    );
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn several_images_need_a_choice() {
    let ws = Workspace::new();
    ws.put_zip("image_2026-01-01-sk-lite.zip", "2026-01-01-sk-lite.img");
    fs::copy(
        ws.deploy().join("image_2026-01-01-sk-lite.zip"),
        ws.deploy().join("image_2026-01-01-sk-full.zip"),
    )
    .unwrap();
    let (code, _, err) = run(ws.collect());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("several images")
            && err.contains("sk-lite.zip")
            && err.contains("sk-full.zip"),
        "{err}"
    );
    assert!(!ws.out().join("sugarkube.img.xz").exists());
    let (code, _, err) = run(ws.collect().args(["--image", "-full"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        metadata(&ws, "sugarkube")["source"]["path"],
        "image_2026-01-01-sk-full.zip"
    );
}

#[test]
fn empty_and_missing_deploy_dirs() {
    let ws = Workspace::new();
    let (code, _, err) = run(ws.collect());
    assert_eq!(code, 1);
    assert!(
        err.contains("no image found under `deploy`") && err.contains("no files at all"),
        "{err}"
    );
    // A deploy directory that is not there is a wrong input: exit 2.
    let (code, _, err) = run(ws.collect().args(["--deploy-dir", "nope"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("deploy directory `nope` does not exist"),
        "{err}"
    );
}

/// Runs collect and checks it failed cleanly: message, no outputs, input unchanged.
fn assert_rejected(ws: &Workspace, input: &Path, needle: &str) {
    let before = sha256_of(input);
    let (code, _, err) = run(ws.collect());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert_eq!(sha256_of(input), before, "input damaged");
    let left = Workspace::files(&ws.out());
    assert!(
        left.iter()
            .all(|f| !f.ends_with(".img.xz") && !f.contains("partial")),
        "{left:?}"
    );
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn corrupt_zip_entry_fails_on_crc() {
    let ws = Workspace::new();
    let zip = ws.put_zip("image_2026-01-01-sk.zip", "2026-01-01-sk.img");
    // Flip bytes in the middle of the compressed data (not in any header).
    let mut bytes = fs::read(&zip).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    fs::write(&zip, bytes).unwrap();
    assert_rejected(&ws, &zip, "corrupt or truncated");
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn truncated_zip_fails() {
    let ws = Workspace::new();
    let zip = ws.put_zip("image_2026-01-01-sk.zip", "2026-01-01-sk.img");
    let len = fs::metadata(&zip).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&zip)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert_rejected(&ws, &zip, "truncated or not a zip archive");
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn zip_without_img_fails() {
    let ws = Workspace::new();
    let zip = ws.deploy().join("image_2026-01-01-sk.zip");
    fs::write(ws.root().join("readme.txt"), "hello").unwrap();
    sh(
        "zip",
        &["-q", "-j", zip.to_str().unwrap(), "readme.txt"],
        ws.root(),
    );
    assert_rejected(
        &ws,
        &zip,
        &format!(
            "zip contained no .img: {}",
            Path::new("deploy/image_2026-01-01-sk.zip").display()
        ),
    );
}

#[test]
fn zip_with_traversal_names_is_refused() {
    for evil in ["../evil.img", "/abs/evil.img", "a/../../evil.img"] {
        let ws = Workspace::new();
        let zip = ws.deploy().join("image_2026-01-01-sk.zip");
        let status = Command::new("python3")
            .args(["-c", "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w') as z:\n    z.writestr(sys.argv[2], b'\\0' * 4096)", zip.to_str().unwrap(), evil])
            .status()
            .unwrap();
        assert!(status.success());
        assert_rejected(&ws, &zip, "unsafe entry name");
        assert!(!ws.root().join("evil.img").exists() && !Path::new("/abs/evil.img").exists());
    }
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn truncated_xz_and_gz_fail() {
    let ws = Workspace::new();
    let xz = ws.put_xz("image_2026-01-01-sk.img.xz");
    let len = fs::metadata(&xz).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&xz)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    assert_rejected(&ws, &xz, "corrupt or truncated");

    let ws = Workspace::new();
    let gz = ws.put_gz("image_2026-01-01-sk.img.gz");
    let len = fs::metadata(&gz).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&gz)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    assert_rejected(&ws, &gz, "corrupt or truncated");
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn output_dir_is_created_and_unwritable_output_is_a_clear_error() {
    let ws = Workspace::new();
    ws.put_img("x.img");
    let (code, _, err) = run(ws
        .collect()
        .env("OUTPUT_DIR", "a/b/c")
        .args(["--output-dir", "a/b/c"]));
    assert_eq!(code, 0, "{err}");
    assert_valid_outputs(&ws.root().join("a/b/c"), "sugarkube");

    fs::write(ws.root().join("blocker"), "a file").unwrap();
    let (code, _, err) = run(ws.collect().args(["--output-dir", "blocker/out"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot create output directory `blocker/out`"),
        "{err}"
    );
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn read_only_old_checksum_is_replaced() {
    let ws = Workspace::new();
    ws.put_img("x.img");
    fs::create_dir_all(ws.out()).unwrap();
    let old = ws.out().join("sugarkube.img.xz.sha256");
    fs::write(&old, "0000  stale\n").unwrap();
    fs::set_permissions(&old, fs::Permissions::from_mode(0o444)).unwrap();
    let (code, _, err) = run(&mut ws.collect());
    assert_eq!(code, 0, "{err}");
    assert_valid_outputs(&ws.out(), "sugarkube");
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn same_input_gives_byte_identical_output_whatever_the_threads() {
    let ws = Workspace::new();
    ws.put_zip("image_2026-01-01-sk.zip", "2026-01-01-sk.img");
    let (code, _, err) = run(ws.collect().args(["--threads", "1", "--img-name", "one"]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(ws.collect().args(["--threads", "2", "--img-name", "two"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        fs::read(ws.out().join("one.img.xz")).unwrap(),
        fs::read(ws.out().join("two.img.xz")).unwrap()
    );
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
fn build_log_is_copied_and_chown_applies() {
    let ws = Workspace::new();
    ws.put_img("x.img");
    fs::create_dir_all(ws.root().join("work/sugarkube")).unwrap();
    fs::write(
        ws.root().join("work/sugarkube/build.log"),
        "[10:00:00] Begin /p/stage0\n",
    )
    .unwrap();
    let (code, _, err) = run(ws.collect().args(["--chown", "4242:4343"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        fs::read_to_string(ws.out().join("sugarkube.build.log")).unwrap(),
        "[10:00:00] Begin /p/stage0\n"
    );
    for f in [
        "sugarkube.img.xz",
        "sugarkube.img.xz.sha256",
        "sugarkube.build.log",
        "sugarkube.img.xz.metadata.json",
        "",
    ] {
        let meta = fs::metadata(ws.out().join(f)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (4242, 4343), "{f}");
    }
    let (code, _, err) = run(ws.collect().args(["--chown", "nobody"]));
    assert_eq!(code, 2);
    assert!(err.contains("is not UID:GID"), "{err}");
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn output_inside_deploy_is_not_mistaken_for_a_pi_gen_export() {
    let ws = Workspace::new();
    ws.put_zip(
        "image_2026-01-01-sugarkube-lite.zip",
        "2026-01-01-sugarkube-lite.img",
    );
    for _ in 0..2 {
        let (code, _, err) = run(ws.collect().args(["--output-dir", "deploy"]));
        assert_eq!(code, 0, "{err}");
        assert_eq!(metadata_in(&ws.deploy())["source"]["format"], "zip");
    }
    // With the export gone, the output itself is verified in place.
    fs::remove_file(ws.deploy().join("image_2026-01-01-sugarkube-lite.zip")).unwrap();
    let (code, _, err) = run(ws.collect().args(["--output-dir", "deploy"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("skipping copy"), "{err}");
    assert_valid_outputs(&ws.deploy(), "sugarkube");
}

fn metadata_in(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(dir.join("sugarkube.img.xz.metadata.json")).unwrap())
        .unwrap()
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn bad_settings_exit_2() {
    let ws = Workspace::new();
    ws.put_img("x.img");
    for (args, needle) in [
        (vec!["--img-name", "$(touch pwned)"], "not a safe file name"),
        (vec!["--img-name", "a;b"], "not a safe file name"),
        (vec!["--xz-preset", "12"], "not an xz preset"),
        (vec!["--build-log", "missing.log"], "does not exist"),
    ] {
        let (code, _, err) = run(ws.collect().args(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(!ws.root().join("pwned").exists());
    let (code, _, err) = run(ws.collect().env("IMG_NAME", "../x"));
    assert_eq!(code, 2, "{err}");
}

#[test]
fn interrupted_run_leaves_no_partial_output_and_rerun_succeeds() {
    let ws = Workspace::new();
    // Incompressible data at preset 9 on one thread: slow enough to interrupt.
    let img = ws.deploy().join("big.img");
    let status = Command::new("head")
        .args(["-c", "96M", "/dev/urandom"])
        .stdout(fs::File::create(&img).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    let before = sha256_of(&img);
    for signal in ["TERM", "INT"] {
        let child = crate::support::pi_image(ws.root())
            .args([
                "collect-artifacts",
                "--output-dir",
                "out",
                "--xz-preset",
                "9",
                "--threads",
                "1",
            ])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !Workspace::files(&ws.out())
            .iter()
            .any(|f| f.ends_with(".partial"))
        {
            assert!(Instant::now() < deadline, "no partial file appeared");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
        let sig = if signal == "TERM" {
            rustix::process::Signal::TERM
        } else {
            rustix::process::Signal::INT
        };
        rustix::process::kill_process(pid, sig).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("interrupted by SIG{signal}")),
            "{err}"
        );
        // Only the lock file stays (it is held with flock, never removed: removing it
        // while another run waits would let a third run in).
        assert_eq!(
            Workspace::files(&ws.out()),
            vec![".pi-image.lock".to_owned()],
            "left behind after SIG{signal}"
        );
        assert_eq!(sha256_of(&img), before);
    }
    let (code, _, err) = run(ws.collect().args(["--xz-preset", "0"]));
    assert_eq!(code, 0, "{err}");
    assert_valid_outputs(&ws.out(), "sugarkube");
    assert_eq!(
        xz_content_sha256(&ws.out().join("sugarkube.img.xz")),
        before
    );
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn real_zip64_image_over_4_gib() {
    let ws = Workspace::new();
    let staging = ws.root().join("staging");
    fs::create_dir_all(&staging).unwrap();
    let img = staging.join("2026-01-01-big.img");
    // The test image, then zeros up to 4.3 GiB (sparse, so cheap on disk).
    fs::copy(pi_like_image(), &img).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(4400 << 20)
        .unwrap();
    let expected = sh(
        "python3",
        &[
            "-c",
            "import hashlib,sys\nh=hashlib.sha256()\nwith open(sys.argv[1],'rb') as f:\n    for b in iter(lambda: f.read(1<<20), b''): h.update(b)\nprint(h.hexdigest())",
            img.to_str().unwrap(),
        ],
        &staging,
    );
    sh(
        "zip",
        &[
            "-q",
            "-1",
            "../deploy/image_2026-01-01-big.zip",
            "2026-01-01-big.img",
        ],
        &staging,
    );
    fs::remove_file(&img).unwrap();
    let listing = sh(
        "unzip",
        &["-Z", "-v", "../deploy/image_2026-01-01-big.zip"],
        &staging,
    );
    assert!(
        listing.contains("PKWARE 64-bit sizes"),
        "not a Zip64 archive: {listing}"
    );
    let outputs = ws.root().join("gh-output");
    let (code, _, err) = run(ws
        .collect()
        .args(["--img-name", "big"])
        .env("GITHUB_OUTPUT", &outputs));
    assert_eq!(code, 0, "{err}");
    let out = read_outputs(&outputs);
    assert_eq!(out["raw-size"], (4400u64 << 20).to_string());
    assert_eq!(out["raw-sha256"], expected.trim());
    assert_valid_outputs(&ws.out(), "big");
    assert_eq!(
        xz_content_sha256(&ws.out().join("big.img.xz")),
        expected.trim()
    );
}

// --- SBOM and package lock -----------------------------------------------------------------

/// The offset of the image's second (root) partition, from its MBR.
fn root_offset(image: &Path) -> u64 {
    let mbr = fs::read(image).unwrap();
    u64::from(u32::from_le_bytes(
        mbr[462 + 8..462 + 12].try_into().unwrap(),
    )) * 512
}

/// What dpkg itself says is installed in the raw `image`: its status file taken out
/// with debugfs, read by `dpkg-query` (the independent reading of what the SBOM says).
fn installed_per_dpkg_query(work: &Path, image: &Path) -> Vec<String> {
    let admin = work.join("dpkg-admin");
    fs::create_dir_all(&admin).unwrap();
    let spec = format!("{}?offset={}", image.display(), root_offset(image));
    let status = sh("debugfs", &["-R", "cat /var/lib/dpkg/status", &spec], work);
    fs::write(admin.join("status"), status).unwrap();
    let out = sh(
        "dpkg-query",
        &[
            &format!("--admindir={}", admin.display()),
            "-W",
            "-f=${db:Status-Status} ${Package} ${Architecture} ${Version}\n",
        ],
        work,
    );
    let mut lines: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("installed ").map(str::to_owned))
        .collect();
    lines.sort();
    lines
}

fn lock_packages(lock: &Path) -> Vec<String> {
    let text = fs::read_to_string(lock).unwrap();
    let (_, pkgs) = text.split_once("\n\n").unwrap();
    pkgs.lines().map(str::to_owned).collect()
}

/// Checks a BOM against CycloneDX 1.6's JSON Schema (vendored with the two schemas it
/// refers to, resolved from that directory, never fetched).
fn check_cyclonedx(bom: &Path) {
    let dir = crate::support::repo_root().join("tests/fixtures/third-party/cyclonedx-spec");
    crate::support::assert_schema_valid(&dir.join("bom-1.6.schema.json"), bom, Some(&dir));
}

fn check_spdx(sbom: &Path) {
    let schema = crate::support::repo_root()
        .join("tests/fixtures/third-party/spdx-spec/spdx-schema-2.3.json");
    crate::support::assert_schema_valid(&schema, sbom, None);
    let metadata_schema = crate::support::repo_root().join("schemas/metadata.schema.json");
    let meta = sbom.with_file_name(
        sbom.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .replace(".spdx.json", ".img.xz.metadata.json"),
    );
    crate::support::assert_schema_valid(&metadata_schema, &meta, None);
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn sbom_and_lock_list_what_dpkg_installed_whatever_the_source_format() {
    let ws = Workspace::new();
    let expected = installed_per_dpkg_query(ws.root(), pi_like_image());
    assert_eq!(
        expected.len(),
        crate::support::TEST_PACKAGES.len(),
        "{expected:?}"
    );
    // zip and gz: read back through the finished .img.xz's index; .img: the raw source;
    // .img.xz from xz -T0 (many blocks) and from plain xz (one block): the copy.
    let one_block = ws.root().join("one-block.img.xz");
    let xz = |args: &[&str], dest: &Path| {
        let out = Command::new("xz")
            .args(args)
            .arg("-c")
            .arg(pi_like_image())
            .output()
            .unwrap();
        assert!(out.status.success());
        fs::write(dest, out.stdout).unwrap();
    };
    for (case, read_from) in [
        ("zip", "xz index"),
        ("gz", "xz index"),
        ("img", "raw image"),
        ("xz-T0", "xz index"),
        ("xz-one-block", "xz index (1 block)"),
    ] {
        let _ = fs::remove_dir_all(ws.deploy());
        fs::create_dir_all(ws.deploy()).unwrap();
        match case {
            "zip" => drop(ws.put_zip("image_2026-06-18-sk-lite.zip", "2026-06-18-sk-lite.img")),
            "gz" => drop(ws.put_gz("image_2026-06-18-sk-lite.img.gz")),
            "img" => drop(ws.put_img("2026-06-18-sk-lite.img")),
            "xz-T0" => xz(
                &["-0", "-T2", "--block-size=1MiB"],
                &ws.deploy().join("image_2026-06-18-sk-lite.img.xz"),
            ),
            _ => {
                xz(&["-0", "-T1"], &one_block);
                fs::copy(
                    &one_block,
                    ws.deploy().join("image_2026-06-18-sk-lite.img.xz"),
                )
                .unwrap();
            }
        }
        let outputs = ws.root().join(format!("gh-output-{case}"));
        let (code, _, err) = run(ws.collect().env("GITHUB_OUTPUT", &outputs));
        assert_eq!(code, 0, "{case}: {err}");
        assert!(!err.contains("no SBOM"), "{case}: {err}");
        let sbom = ws.out().join("sugarkube.spdx.json");
        let lock = ws.out().join("sugarkube.packages.lock");
        check_spdx(&sbom);
        // The lock's packages are exactly dpkg-query's, epochs and `~` included.
        assert_eq!(lock_packages(&lock), expected, "{case}");
        // And the CycloneDX BOM's, valid against CycloneDX's own schema.
        let cdx = ws.out().join("sugarkube.cdx.json");
        check_cyclonedx(&cdx);
        let bom: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&cdx).unwrap()).unwrap();
        let mut from_bom: Vec<String> = bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let arch = c["properties"][0]["value"].as_str().unwrap();
                format!(
                    "{} {arch} {}",
                    c["name"].as_str().unwrap(),
                    c["version"].as_str().unwrap()
                )
            })
            .collect();
        from_bom.sort();
        assert_eq!(from_bom, expected, "{case}");
        assert_eq!(
            bom["metadata"]["component"]["hashes"][0]["content"],
            read_outputs(&outputs)["raw-sha256"].as_str(),
            "{case}"
        );
        assert_eq!(
            read_outputs(&outputs)["cyclonedx-path"],
            "out/sugarkube.cdx.json"
        );

        let doc: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&sbom).unwrap()).unwrap();
        let mut from_sbom: Vec<String> = doc["packages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| {
                let purl = p["externalRefs"][0]["referenceLocator"].as_str()?;
                let arch = purl.split("arch=").nth(1)?.split('&').next()?;
                Some(format!(
                    "{} {arch} {}",
                    p["name"].as_str()?,
                    p["versionInfo"].as_str()?
                ))
            })
            .collect();
        from_sbom.sort();
        assert_eq!(from_sbom, expected, "{case}");
        let purls: Vec<&str> = doc["packages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["externalRefs"][0]["referenceLocator"].as_str())
            .collect();
        assert!(
            purls.contains(&"pkg:deb/debian/pi-like-base@1%3A2.0-1%2Bb1?arch=arm64&distro=debian-12&upstream=pi-like%401%3A2.0-1"),
            "{purls:?}"
        );
        assert!(
            purls.contains(&"pkg:deb/debian/libpi-like0@0.9~rc1-3?arch=arm64&distro=debian-12"),
            "{purls:?}"
        );
        // The image the SBOM describes is the raw image, by digest.
        assert_eq!(
            doc["packages"][0]["checksums"][0]["checksumValue"],
            raw_sha()
        );

        let meta = metadata(&ws, "sugarkube");
        let inv = &meta["inventory"];
        assert_eq!(inv["status"], "written", "{case}");
        assert_eq!(inv["packages"], 3);
        assert_eq!(inv["os"], "debian 12 bookworm");
        assert_eq!(inv["root_partition"], 2);
        assert!(
            inv["read_from"].as_str().unwrap().starts_with(read_from),
            "{case}: {inv}"
        );
        assert_eq!(inv["sbom"]["sha256"], sha256_of(&sbom));
        assert_eq!(inv["lock"]["sha256"], sha256_of(&lock));
        let out = read_outputs(&outputs);
        assert_eq!(out["sbom-path"], "out/sugarkube.spdx.json");
        assert_eq!(out["lock-path"], "out/sugarkube.packages.lock");
        assert_eq!(out["packages"], "3");
    }
    let text = fs::read_to_string(ws.out().join("sugarkube.packages.lock")).unwrap();
    assert!(
        text.contains(&format!("\nimage sugarkube.img.xz {}\n", raw_sha())),
        "{text}"
    );
    assert!(
        text.contains("\nos debian 12 bookworm\npi-gen unknown\n"),
        "{text}"
    );
}

/// Rewrites a file inside the raw image's root file system with debugfs (as a hostile
/// build could leave it), or removes it (`contents` None).
fn put_in_rootfs(work: &Path, image: &Path, guest: &str, contents: Option<&str>) {
    let spec = format!("{}?offset={}", image.display(), root_offset(image));
    let _ = sh(
        "debugfs",
        &["-w", "-R", &format!("rm {guest}"), &spec],
        work,
    );
    if let Some(text) = contents {
        let host = work.join("put-file");
        fs::write(&host, text).unwrap();
        sh(
            "debugfs",
            &[
                "-w",
                "-R",
                &format!("write {} {guest}", host.display()),
                &spec,
            ],
            work,
        );
    }
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn no_sbom_rather_than_a_wrong_one() {
    let ws = Workspace::new();
    let image = ws.put_img("2026-06-18-sk-lite.img");
    // A first run leaves an SBOM: a later image without one must not keep it.
    let (code, _, err) = run(ws.collect());
    assert_eq!(code, 0, "{err}");
    assert!(ws.out().join("sugarkube.spdx.json").exists());

    let forged = "Package: pi-like-base\nStatus: install ok installed\nArchitecture: arm64\nVersion: 1.0\u{1b}]8;;http://evil.example/\u{7}\n";
    let status = {
        let spec = format!("{}?offset={}", image.display(), root_offset(&image));
        sh(
            "debugfs",
            &["-R", "cat /var/lib/dpkg/status", &spec],
            ws.root(),
        )
    };
    assert!(status.contains("Package: pi-like-base"), "{status}");
    let cut = status.trim_end().to_owned();
    let unpacked = status.replacen(
        "Status: install ok installed",
        "Status: install ok unpacked",
        1,
    );
    type Damage<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: [(&str, Damage<'_>, &str); 10] = [
        (
            "status cut short",
            Box::new(|img: &Path| {
                put_in_rootfs(ws.root(), img, "/var/lib/dpkg/status", Some(&cut));
            }),
            "cut short",
        ),
        (
            "a package left unpacked",
            Box::new(|img: &Path| {
                put_in_rootfs(ws.root(), img, "/var/lib/dpkg/status", Some(&unpacked));
            }),
            "the build left it unfinished",
        ),
        (
            "dpkg journal not applied",
            Box::new(|img: &Path| {
                let spec = format!("{}?offset={}", img.display(), root_offset(img));
                let _ = Command::new("debugfs")
                    .args(["-w", "-R", "mkdir /var/lib/dpkg/updates", &spec])
                    .output();
                put_in_rootfs(
                    ws.root(),
                    img,
                    "/var/lib/dpkg/updates/0001",
                    Some("Package: pi-like-base\nStatus: purge ok not-installed\n"),
                );
            }),
            "not yet applied",
        ),
        (
            "a distribution that is not Debian's",
            Box::new(|img: &Path| {
                put_in_rootfs(
                    ws.root(),
                    img,
                    "/etc/os-release",
                    Some("ID=fedora\nID_LIKE=\"rhel\"\n"),
                );
            }),
            "neither Debian nor Raspbian",
        ),
        (
            "the Raspberry Pi archive without its lists",
            Box::new(|img: &Path| {
                let spec = format!("{}?offset={}", img.display(), root_offset(img));
                for dir in ["/etc/apt", "/etc/apt/sources.list.d"] {
                    let _ = Command::new("debugfs")
                        .args(["-w", "-R", &format!("mkdir {dir}"), &spec])
                        .output();
                }
                put_in_rootfs(
                    ws.root(),
                    img,
                    "/etc/apt/sources.list.d/raspi.list",
                    Some("deb http://archive.raspberrypi.com/debian/ bookworm main\n"),
                );
            }),
            "cannot be told from Debian's",
        ),
        (
            "no dpkg database",
            Box::new(|img: &Path| put_in_rootfs(ws.root(), img, "/var/lib/dpkg/status", None)),
            "has no /var/lib/dpkg/status",
        ),
        (
            "forged status",
            Box::new(|img: &Path| {
                put_in_rootfs(ws.root(), img, "/var/lib/dpkg/status", Some(forged));
            }),
            "is damaged",
        ),
        (
            "unknown distribution",
            Box::new(|img: &Path| {
                put_in_rootfs(ws.root(), img, "/etc/os-release", Some("ID=\"x y\"\n"));
            }),
            "invalid ID",
        ),
        (
            "root file system is not ext4",
            Box::new(|img: &Path| {
                // Zero the ext4 superblock magic of partition 2.
                let mut f = fs::OpenOptions::new().write(true).open(img).unwrap();
                std::io::Seek::seek(
                    &mut f,
                    std::io::SeekFrom::Start(root_offset(img) + 1024 + 56),
                )
                .unwrap();
                std::io::Write::write_all(&mut f, &[0, 0]).unwrap();
            }),
            "is not ext4",
        ),
        (
            "no Linux partition",
            Box::new(|img: &Path| {
                let mut f = fs::OpenOptions::new().write(true).open(img).unwrap();
                std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(462 + 4)).unwrap();
                std::io::Write::write_all(&mut f, &[0x0c]).unwrap();
            }),
            "no Linux (type 83) partition",
        ),
    ];
    for (case, damage, needle) in cases {
        fs::copy(pi_like_image(), &image).unwrap();
        damage(&image);
        let (code, _, err) = run(ws.collect());
        assert_eq!(code, 0, "{case}: {err}");
        assert!(
            err.contains("no SBOM or package lock") && err.contains(needle),
            "{case}: {err}"
        );
        assert!(
            !err.contains('\u{1b}'),
            "{case}: a raw escape reached the log"
        );
        assert!(
            !ws.out().join("sugarkube.spdx.json").exists(),
            "{case}: an SBOM was left"
        );
        assert!(!ws.out().join("sugarkube.packages.lock").exists(), "{case}");
        let meta = metadata(&ws, "sugarkube");
        assert_eq!(meta["inventory"]["status"], "skipped", "{case}");
        assert!(
            meta["inventory"]["reason"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{case}"
        );
        check_metadata_schema(&ws);
    }
    // A derivative names its family: its packages are Debian's.
    fs::copy(pi_like_image(), &image).unwrap();
    put_in_rootfs(
        ws.root(),
        &image,
        "/etc/os-release",
        Some(
            "ID=sugarkube\nID_LIKE=debian\nVERSION_ID=\"1\"\nPRETTY_NAME=\"[Sugarkube](http://evil.example) `1`\"\n",
        ),
    );
    let summary_path = ws.root().join("summary.md");
    let (code, _, err) = run(ws.collect().env("GITHUB_STEP_SUMMARY", &summary_path));
    assert_eq!(code, 0, "{err}");
    let sbom = fs::read_to_string(ws.out().join("sugarkube.spdx.json")).unwrap();
    assert!(sbom.contains("pkg:deb/debian/pi-like-base@"), "{sbom}");
    let summary = fs::read_to_string(&summary_path).unwrap();
    assert!(summary.contains("(3 packages, sugarkube 1)"), "{summary}");
    assert!(!summary.contains("evil.example"), "{summary}");

    fs::copy(pi_like_image(), &image).unwrap();
    let (code, _, err) = run(ws.collect().arg("--no-sbom"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        metadata(&ws, "sugarkube")["inventory"]["reason"],
        "--no-sbom"
    );
    assert!(!ws.out().join("sugarkube.spdx.json").exists());
}

fn check_metadata_schema(ws: &Workspace) {
    crate::support::assert_schema_valid(
        &crate::support::repo_root().join("schemas/metadata.schema.json"),
        &ws.out().join("sugarkube.img.xz.metadata.json"),
        None,
    );
}

// --- bmap ----------------------------------------------------------------------------------

/// The mapped 4 KiB blocks a bmap lists.
fn bmap_blocks(bmap: &Path) -> std::collections::BTreeSet<u64> {
    let text = fs::read_to_string(bmap).unwrap();
    let mut set = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| l.contains("<Range")) {
        let range = line
            .split('>')
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .trim();
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        set.extend(a.parse::<u64>().unwrap()..=b.parse::<u64>().unwrap());
    }
    set
}

/// Every file of both partitions of `card`, extracted with the file systems' own tools.
fn tree_of(work: &Path, card: &Path, name: &str) -> std::path::PathBuf {
    let mbr = fs::read(card).unwrap();
    let part = |i: usize| {
        let e = &mbr[446 + 16 * i..][..16];
        let lba = u64::from(u32::from_le_bytes(e[8..12].try_into().unwrap()));
        let n = u64::from(u32::from_le_bytes(e[12..16].try_into().unwrap()));
        (lba * 512, n * 512)
    };
    let dir = work.join(name);
    fs::create_dir_all(dir.join("boot")).unwrap();
    fs::create_dir_all(dir.join("root")).unwrap();
    let (start, len) = part(0);
    let fat = work.join(format!("{name}.vfat"));
    let bytes = fs::read(card).unwrap();
    fs::write(
        &fat,
        &bytes[usize::try_from(start).unwrap()..usize::try_from(start + len).unwrap()],
    )
    .unwrap();
    sh("fsck.vfat", &["-n", fat.to_str().unwrap()], work);
    sh(
        "mcopy",
        &[
            "-s",
            "-n",
            "-i",
            fat.to_str().unwrap(),
            "::/",
            dir.join("boot").to_str().unwrap(),
        ],
        work,
    );
    let spec = format!("{}?offset={}", card.display(), part(1).0);
    sh("e2fsck", &["-fn", &spec], work);
    sh(
        "debugfs",
        &[
            "-R",
            &format!("rdump / {}", dir.join("root").display()),
            &spec,
        ],
        work,
    );
    dir
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn bmap_copies_every_used_block_and_bmaptool_accepts_it() {
    let ws = Workspace::new();
    // The image gets a file of zeros: its blocks are in use, so they must be written
    // although their content is all zeros.
    let image = ws.root().join("zeros.img");
    fs::copy(pi_like_image(), &image).unwrap();
    let zeros = ws.root().join("zeros");
    fs::write(&zeros, vec![0u8; 256 << 10]).unwrap();
    let spec = format!("{}?offset={}", image.display(), root_offset(&image));
    sh(
        "debugfs",
        &[
            "-w",
            "-R",
            &format!("write {} /zeros", zeros.display()),
            &spec,
        ],
        ws.root(),
    );
    let zero_blocks = sh("debugfs", &["-R", "blocks /zeros", &spec], ws.root());
    // The root file system's block size, for its block numbers in 4 KiB image blocks.
    let stats = sh("dumpe2fs", &["-h", &spec], ws.root());
    let fs_block: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("Block size:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let reference = tree_of(ws.root(), &image, "reference");
    for source in ["zip", "img"] {
        let _ = fs::remove_dir_all(ws.deploy());
        fs::create_dir_all(ws.deploy()).unwrap();
        let name = "2026-06-18-sk-lite.img";
        if source == "img" {
            fs::copy(&image, ws.deploy().join(name)).unwrap();
        } else {
            let staging = ws.root().join("staging");
            fs::create_dir_all(&staging).unwrap();
            fs::copy(&image, staging.join(name)).unwrap();
            sh(
                "zip",
                &[
                    "-q",
                    "-j",
                    ws.deploy()
                        .join("image_2026-06-18-sk-lite.zip")
                        .to_str()
                        .unwrap(),
                    staging.join(name).to_str().unwrap(),
                ],
                ws.root(),
            );
        }
        let (code, _, err) = run(ws.collect());
        assert_eq!(code, 0, "{source}: {err}");
        let bmap = ws.out().join("sugarkube.img.bmap");
        let meta = metadata(&ws, "sugarkube");
        assert_eq!(
            meta["bmap"]["status"], "written",
            "{source}: {}",
            meta["bmap"]
        );
        assert_eq!(meta["bmap"]["file"]["sha256"], sha256_of(&bmap));
        check_metadata_schema(&ws);
        let mapped = bmap_blocks(&bmap);
        assert!(
            mapped.len() < 18688 / 2,
            "{source}: most of the image is free, {} mapped",
            mapped.len()
        );
        for b in zero_blocks.split_whitespace() {
            let b: u64 = b.parse().unwrap();
            let img_block = (root_offset(&image) + b * fs_block) / 4096;
            assert!(
                mapped.contains(&img_block),
                "{source}: the zero-filled file's block {b} is left out"
            );
        }
        // bmaptool checks every range's checksum and the file's own while it writes.
        let card = ws.root().join(format!("card-{source}.img"));
        crate::support::bmaptool_copy(&bmap, &ws.out().join("sugarkube.img.xz"), &card);
        // Both file systems check clean, and every file reads back as in the image.
        let copy = tree_of(ws.root(), &card, &format!("copy-{source}"));
        sh(
            "diff",
            &["-r", reference.to_str().unwrap(), copy.to_str().unwrap()],
            ws.root(),
        );
    }
    let (code, _, err) = run(ws.collect().arg("--no-bmap"));
    assert_eq!(code, 0, "{err}");
    assert!(
        !ws.out().join("sugarkube.img.bmap").exists(),
        "a previous bmap was left"
    );
    assert_eq!(metadata(&ws, "sugarkube")["bmap"]["reason"], "--no-bmap");
}

/// `(start, length)` in bytes of partition `i` (0-based) of a disk image.
fn partition_of(image: &Path, i: usize) -> (u64, u64) {
    let mbr = fs::read(image).unwrap();
    let e = &mbr[446 + 16 * i..][..16];
    let lba = u64::from(u32::from_le_bytes(e[8..12].try_into().unwrap()));
    let n = u64::from(u32::from_le_bytes(e[12..16].try_into().unwrap()));
    (lba * 512, n * 512)
}

/// Collects `image` (as a raw .img) and returns the metadata's `bmap` and the mapped
/// 4 KiB blocks.
fn collect_bmap(
    ws: &Workspace,
    image: &Path,
) -> (serde_json::Value, std::collections::BTreeSet<u64>) {
    let _ = fs::remove_dir_all(ws.deploy());
    fs::create_dir_all(ws.deploy()).unwrap();
    fs::copy(image, ws.deploy().join("2026-06-18-sk-lite.img")).unwrap();
    let (code, _, err) = run(ws.collect());
    assert_eq!(code, 0, "{err}");
    let meta = metadata(ws, "sugarkube");
    let bmap = ws.out().join("sugarkube.img.bmap");
    let blocks = if bmap.exists() {
        bmap_blocks(&bmap)
    } else {
        std::collections::BTreeSet::default()
    };
    (meta["bmap"].clone(), blocks)
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn a_file_system_the_bmap_cannot_account_for_is_written_whole() {
    let ws = Workspace::new();
    let whole = |blocks: &std::collections::BTreeSet<u64>, (start, len): (u64, u64)| {
        (start / 4096..(start + len).div_ceil(4096)).all(|b| blocks.contains(&b))
    };

    // A FAT32 with fewer clusters than the specification's minimum (mkfs.fat warns and
    // makes it; Linux reads it as FAT32 by its FAT size field, mtools as FAT16 by its
    // count): read as the wrong one, its clusters would be taken from half-entries.
    let image = ws.root().join("small-fat32.img");
    fs::copy(pi_like_image(), &image).unwrap();
    let boot = partition_of(&image, 0);
    let vfat = ws.root().join("boot.vfat");
    let f = fs::File::create(&vfat).unwrap();
    f.set_len(boot.1).unwrap();
    sh(
        "mkfs.vfat",
        &["-F", "32", "-s", "2", "-n", "BOOT", vfat.to_str().unwrap()],
        ws.root(),
    );
    // The precondition, per fsck.fat: FAT32 by its fields, too few clusters for its count.
    let fsck = Command::new("fsck.vfat")
        .arg("-n")
        .arg(&vfat)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&fsck.stdout).into_owned() + &String::from_utf8_lossy(&fsck.stderr);
    assert!(said.contains("less than the required minimum"), "{said}");
    sh(
        "dd",
        &[
            &format!("if={}", vfat.display()),
            &format!("of={}", image.display()),
            "bs=512",
            &format!("seek={}", boot.0 / 512),
            "conv=notrunc",
            "status=none",
        ],
        ws.root(),
    );
    let (info, blocks) = collect_bmap(&ws, &image);
    assert_eq!(info["status"], "written", "{info}");
    assert!(
        info["partitions"][0]
            .as_str()
            .unwrap()
            .contains("ambiguous"),
        "{info}"
    );
    assert!(
        whole(&blocks, boot),
        "the small FAT32 partition is not written whole: {info}"
    );
    assert!(
        !whole(&blocks, partition_of(&image, 1)),
        "the ext4 one is still read: {info}"
    );

    // ext4 whose bitmaps may be stale: a journal to replay, or not cleanly unmounted.
    for (what, request) in [
        ("needs_recovery", "feature needs_recovery"),
        ("unclean", "ssv state 0"),
        ("bigalloc", "feature bigalloc"),
    ] {
        let image = ws.root().join(format!("{what}.img"));
        fs::copy(pi_like_image(), &image).unwrap();
        let root = partition_of(&image, 1);
        let spec = format!("{}?offset={}", image.display(), root.0);
        sh("debugfs", &["-w", "-R", request, &spec], ws.root());
        let (info, blocks) = collect_bmap(&ws, &image);
        assert_eq!(info["status"], "written", "{what}: {info}");
        assert!(
            info["partitions"][1]
                .as_str()
                .unwrap()
                .contains("all mapped"),
            "{what}: {info}"
        );
        assert!(
            whole(&blocks, root),
            "{what}: the ext4 partition is not written whole: {info}"
        );
    }

    // Partitions that overlap: what one calls free the other may use. No bmap, and no
    // SBOM read from such a table either.
    let image = ws.root().join("overlap.img");
    fs::copy(pi_like_image(), &image).unwrap();
    let mut mbr = fs::read(&image).unwrap()[..512].to_vec();
    let p1_start = u32::from_le_bytes(mbr[454..458].try_into().unwrap());
    mbr[462 + 8..462 + 12].copy_from_slice(&(p1_start + 2048).to_le_bytes());
    let mut file = fs::OpenOptions::new().write(true).open(&image).unwrap();
    std::io::Write::write_all(&mut file, &mbr).unwrap();
    drop(file);
    let (info, blocks) = collect_bmap(&ws, &image);
    assert_eq!(info["status"], "skipped", "{info}");
    assert!(
        info["reason"].as_str().unwrap().contains("overlap"),
        "{info}"
    );
    assert!(blocks.is_empty());
    let meta = metadata(&ws, "sugarkube");
    assert!(
        meta["inventory"]["reason"]
            .as_str()
            .unwrap()
            .contains("overlap"),
        "{meta}"
    );
}

/// A bmap whose `BmapFileChecksum` is made right again after `text` was changed (as a
/// forger would).
fn reseal(text: &str) -> String {
    let sum = text
        .split("<BmapFileChecksum>")
        .nth(1)
        .unwrap()
        .split("</")
        .next()
        .unwrap()
        .trim()
        .to_owned();
    let zeros = "0".repeat(64);
    let zeroed = text.replacen(&sum, &zeros, 1);
    let fixed = crate::support::hex_sha256(zeroed.as_bytes());
    zeroed.replacen(&zeros, &fixed, 1)
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn pi_gens_own_bmap_is_used_only_when_it_matches_the_image_and_covers_its_file_systems() {
    let ws = Workspace::new();
    let image = ws.root().join("2026-06-18-sk-lite.img");
    // bmaptool's bmap of a copy of the image written with `cp --sparse=WHEN`.
    let bmaptool_create = |dest: &Path, sparse: &str| {
        sh(
            "cp",
            &[
                &format!("--sparse={sparse}"),
                pi_like_image().to_str().unwrap(),
                dest.to_str().unwrap(),
            ],
            ws.root(),
        );
        let bmap = dest.with_extension("bmap");
        sh(
            "bmaptool",
            &[
                "create",
                "-o",
                bmap.to_str().unwrap(),
                dest.to_str().unwrap(),
            ],
            ws.root(),
        );
        fs::read_to_string(bmap).unwrap()
    };
    // Written without holes, bmaptool maps every block: that covers the file systems.
    let full_text = bmaptool_create(&image, "never");
    // With holes where it holds zeros (as pi-gen's loop-device image file has where ext4
    // allocated but never wrote), it leaves used blocks out.
    let holes_text = bmaptool_create(&ws.root().join("sparse.img"), "always");
    let first_sum = full_text.split("chksum=\"").nth(1).unwrap()[..64].to_owned();
    let empty = reseal(
        &full_text
            .lines()
            .filter(|l| !l.contains("<Range"))
            .map(|l| {
                if l.contains("<MappedBlocksCount>") {
                    "    <MappedBlocksCount> 0 </MappedBlocksCount>".to_owned()
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let cases: [(&str, String, Option<&str>); 4] = [
        ("bmaptool's, no holes", full_text.clone(), None),
        (
            "bmaptool's, with holes",
            holes_text,
            Some("blocks the file systems use"),
        ),
        (
            "forged: nothing mapped",
            empty,
            Some("blocks the file systems use"),
        ),
        (
            "forged: a range's checksum",
            reseal(&full_text.replacen(&first_sum, &"1".repeat(64), 1)),
            Some("does not hold what its checksum says"),
        ),
    ];
    for (case, bmap, rejected) in cases {
        let _ = fs::remove_dir_all(ws.deploy());
        fs::create_dir_all(ws.deploy()).unwrap();
        sh(
            "zip",
            &[
                "-q",
                "-j",
                ws.deploy()
                    .join("image_2026-06-18-sk-lite.zip")
                    .to_str()
                    .unwrap(),
                image.to_str().unwrap(),
            ],
            ws.root(),
        );
        fs::write(ws.deploy().join("2026-06-18-sk-lite.bmap"), &bmap).unwrap();
        let (code, _, err) = run(ws.collect());
        assert_eq!(code, 0, "{case}: {err}");
        let info = metadata(&ws, "sugarkube")["bmap"].clone();
        assert_eq!(
            info["pi_gen"]["path"], "2026-06-18-sk-lite.bmap",
            "{case}: {info}"
        );
        match rejected {
            None => {
                assert_eq!(info["method"], "pi-gen", "{case}: {info}");
                assert_eq!(info["pi_gen"]["used"], true, "{case}");
            }
            Some(why) => {
                assert_eq!(info["method"], "allocation", "{case}: {info}");
                assert_eq!(info["pi_gen"]["used"], false, "{case}");
                assert!(
                    info["pi_gen"]["reason"].as_str().unwrap().contains(why),
                    "{case}: {info}"
                );
                assert!(err.contains("is not used"), "{case}: {err}");
            }
        }
        check_metadata_schema(&ws);
        // Whichever was used, bmaptool takes it and the card holds the image's files.
        let card = ws.root().join("card.img");
        let _ = fs::remove_file(&card);
        crate::support::bmaptool_copy(
            &ws.out().join("sugarkube.img.bmap"),
            &ws.out().join("sugarkube.img.xz"),
            &card,
        );
    }
}
