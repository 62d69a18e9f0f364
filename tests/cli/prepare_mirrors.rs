//! `prepare-mirrors` against real apt: a signed local repository (dpkg-deb, apt-ftparchive,
//! gpg) served on loopback by a healthy, a 503 and a hanging mirror; `apt-get update` and
//! `apt-get install --download-only` in a temporary apt root with the generated
//! configuration and hook; and a real build with the test pi-gen.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::mirror::{Behaviour, Mirror, PACKAGE, RECOMMENDED, SUITE, keyring};
use crate::support::{pi_image, read_outputs, run, run_merged};

const SUBSTAGE: &str = "00-00-pi-image-mirrors";

/// A minimal pi-gen checkout naming both Raspbian (one-line sources) and Debian (deb822),
/// like the armhf and arm64 branches together.
fn checkout(root: &Path) -> PathBuf {
    let dir = root.join("pi-gen");
    for d in [
        "stage0/00-configure-apt/files",
        "stage2",
        "export-image/02-set-sources",
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::write(dir.join("build.sh"), "#!/bin/bash\n").unwrap();
    fs::write(
        dir.join("stage0/prerun.sh"),
        "#!/bin/bash -e\n\nif [ ! -d \"${ROOTFS_DIR}\" ]; then\n\tbootstrap ${RELEASE} \"${ROOTFS_DIR}\" http://raspbian.raspberrypi.com/raspbian/\nfi\n",
    )
    .unwrap();
    fs::write(
        dir.join("stage0/00-configure-apt/files/sources.list"),
        "deb http://raspbian.raspberrypi.com/raspbian/ RELEASE main\n",
    )
    .unwrap();
    fs::write(
        dir.join("stage0/00-configure-apt/files/debian.sources"),
        // Without the trailing slash, as pi-gen's bookworm-arm64 templates write Debian's.
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: RELEASE\nComponents: main\n",
    )
    .unwrap();
    fs::write(
        dir.join("export-image/02-set-sources/01-run.sh"),
        "#!/bin/bash -e\n",
    )
    .unwrap();
    dir
}

fn prepare(root: &Path) -> Command {
    let mut c = pi_image(root);
    c.args([
        "prepare-mirrors",
        "--pi-gen-dir",
        "pi-gen",
        "--pi-gen-branch",
        SUITE,
        "--probe-timeout",
        "2",
        "--probe-retries",
        "0",
    ])
    .env("GITHUB_OUTPUT", root.join("gh-output"));
    c
}

/// Every file of a tree with its digest and mode, to prove a run changed nothing.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (String, u32)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().to_path_buf(),
                (
                    crate::support::sha256_of(e.path()),
                    fs::metadata(e.path()).unwrap().mode(),
                ),
            )
        })
        .collect()
}

/// A temporary apt root (`APT_CONFIG` with `Dir`), holding what a stage step of the
/// generated sub-stage installs into a root filesystem; the hook's absolute path in the
/// apt.conf.d file is the one thing relocated.
struct AptRoot {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl AptRoot {
    fn new(pi_gen: &Path) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        for d in [
            "etc/apt/sources.list.d",
            "etc/apt/apt.conf.d",
            "etc/apt/preferences.d",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/lib/dpkg",
            "sbin",
        ] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        fs::write(dir.join("var/lib/dpkg/status"), "").unwrap();
        fs::write(
            dir.join("apt.conf"),
            format!(
                "Dir \"{d}/\";\nDir::State::status \"{d}/var/lib/dpkg/status\";\nAPT::Architecture \"amd64\";\nAPT::Architectures {{ \"amd64\"; }};\nAPT::Sandbox::User \"root\";\nAcquire::Languages \"none\";\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let files = pi_gen.join("stage0").join(SUBSTAGE).join("files");
        let hook = dir.join("sbin/pi-image-apt-mirrors");
        fs::copy(files.join("pi-image-apt-mirrors"), &hook).unwrap();
        fs::copy(
            files.join("pi-image-mirrors.conf"),
            dir.join("etc/apt/pi-image-mirrors.conf"),
        )
        .unwrap();
        fs::copy(
            files.join("pi-image-mirrors.state"),
            dir.join("var/lib/apt/pi-image-mirrors.state"),
        )
        .unwrap();
        for e in fs::read_dir(files.join("apt.conf.d")).unwrap().flatten() {
            let text = fs::read_to_string(e.path()).unwrap().replace(
                "/usr/local/sbin/pi-image-apt-mirrors",
                hook.to_str().unwrap(),
            );
            fs::write(dir.join("etc/apt/apt.conf.d").join(e.file_name()), text).unwrap();
        }
        // The sources pi-gen's stage0/00-configure-apt installs, from the (patched)
        // templates; the repository key is trusted through trusted.gpg.d.
        let templates = pi_gen.join("stage0/00-configure-apt/files");
        for (name, dest) in [
            ("sources.list", "etc/apt/sources.list"),
            ("debian.sources", "etc/apt/sources.list.d/debian.sources"),
        ] {
            let text = fs::read_to_string(templates.join(name))
                .unwrap()
                .replace("RELEASE", SUITE);
            fs::write(dir.join(dest), text).unwrap();
        }
        fs::create_dir_all(dir.join("etc/apt/trusted.gpg.d")).unwrap();
        fs::copy(
            keyring(),
            dir.join("etc/apt/trusted.gpg.d/pi-image-test.gpg"),
        )
        .unwrap();
        let root = Self { _tmp: tmp, dir };
        // What the stage step does before the stage's first apt call (without its probe):
        // write the mirror lists, point the sources at them. Here the lists live under the
        // temporary Dir, so the hook relocates the templates' /etc/apt/... URIs.
        let (code, log) = root.hook(&["rewrite"]);
        assert_eq!(code, 0, "{log}");
        root
    }

    /// `program` run against this apt root (`APT_CONFIG`), under LANG=C.
    fn in_root(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> (i32, String) {
        run_merged(
            Command::new(program)
                .env("APT_CONFIG", self.dir.join("apt.conf"))
                .env("LANG", "C")
                .args(args),
        )
    }

    fn apt_get(&self, args: &[&str]) -> (i32, String) {
        self.in_root("apt-get", args)
    }

    fn hook(&self, args: &[&str]) -> (i32, String) {
        self.in_root(self.dir.join("sbin/pi-image-apt-mirrors"), args)
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.dir.join(rel)).unwrap()
    }

    /// The source URI of an archive: its mirror list.
    fn list_uri(&self, archive: &str) -> String {
        format!(
            "mirror+file:{}/etc/apt/pi-image-mirrors/{archive}.list",
            self.dir.display()
        )
    }

    /// The URLs of an archive's mirror list, in order, one per line (without metadata).
    fn mirror_list(&self, archive: &str) -> String {
        let raw = self.read(&format!("etc/apt/pi-image-mirrors/{archive}.list"));
        raw.lines()
            .map(|l| format!("{}\n", l.split('\t').next().unwrap()))
            .collect()
    }

    fn downloaded(&self) -> bool {
        self.dir
            .join(format!("var/cache/apt/archives/{PACKAGE}_1.0_all.deb"))
            .is_file()
    }
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn probes_pick_the_first_healthy_mirror_and_apt_installs_through_it() {
    let tmp = tempfile::tempdir().unwrap();
    let pi_gen = checkout(tmp.path());
    let down = Mirror::start(Behaviour::Unavailable);
    let good = Mirror::start(Behaviour::Healthy);
    let (code, out, err) = run(prepare(tmp.path())
        .env(
            "APT_REWRITE_MIRRORS",
            format!("{} {}", down.url("raspbian"), good.url("raspbian")),
        )
        .env(
            "DEBIAN_MIRROR",
            format!("{} {}", down.url("debian"), good.url("debian")),
        ));
    assert_eq!(code, 0, "{out}{err}");
    let o = read_outputs(&tmp.path().join("gh-output"));
    assert_eq!(o["raspbian-mirror"], good.url("raspbian"));
    assert_eq!(o["debian-mirror"], good.url("debian"));
    assert_eq!(o["raspberrypi-mirror"], "");
    assert_eq!(o["archives"], "raspbian debian");
    let probes: serde_json::Value = serde_json::from_str(&o["probes"]).unwrap();
    let results: Vec<(String, String)> = probes
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["archive"].as_str().unwrap().to_owned(),
                p["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("raspbian".to_owned(), "http 503".to_owned()),
            ("raspbian".to_owned(), "ok".to_owned()),
            ("debian".to_owned(), "http 503".to_owned()),
            ("debian".to_owned(), "ok".to_owned()),
        ]
    );
    // debootstrap in stage0/prerun.sh is pointed at the chosen mirror too.
    let prerun = fs::read_to_string(pi_gen.join("stage0/prerun.sh")).unwrap();
    assert!(
        prerun.contains(&format!("\"${{ROOTFS_DIR}}\" {}/\n", good.url("raspbian"))),
        "{prerun}"
    );

    let apt = AptRoot::new(&pi_gen);
    let (code, log) = apt.apt_get(&["update"]);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("W:") && !log.contains("E:"), "{log}");
    let (code, log) = apt.apt_get(&["install", "--download-only", "-y", PACKAGE]);
    assert_eq!(code, 0, "{log}");
    assert!(apt.downloaded(), "{log}");
    // With the generated configuration apt adds Recommends, as pi-gen's NN-packages
    // expect, and leaves them out only when asked, as NN-packages-nr does.
    let recommended = |apt: &AptRoot| {
        apt.dir
            .join(format!("var/cache/apt/archives/{RECOMMENDED}_1.0_all.deb"))
            .is_file()
    };
    assert!(
        recommended(&apt),
        "the recommended package was not installed: {log}"
    );
    let _ = fs::remove_file(
        apt.dir
            .join(format!("var/cache/apt/archives/{RECOMMENDED}_1.0_all.deb")),
    );
    let _ = fs::remove_file(
        apt.dir
            .join(format!("var/cache/apt/archives/{PACKAGE}_1.0_all.deb")),
    );
    let (code, log) = apt.apt_get(&[
        "install",
        "--download-only",
        "--no-install-recommends",
        "-y",
        PACKAGE,
    ]);
    assert_eq!(code, 0, "{log}");
    assert!(apt.downloaded() && !recommended(&apt), "{log}");
    assert_eq!(
        apt.read("etc/apt/sources.list"),
        format!("deb {} {SUITE} main\n", apt.list_uri("raspbian"))
    );
    assert!(
        apt.read("etc/apt/sources.list.d/debian.sources")
            .contains(&format!("URIs: {}\n", apt.list_uri("debian")))
    );
    // The mirror lists: the chosen mirror first, then the other candidates, with explicit
    // priorities (apt would otherwise pick among them at random).
    assert_eq!(
        apt.read("etc/apt/pi-image-mirrors/raspbian.list"),
        format!(
            "{}\tpriority:1\n{}\tpriority:2\n",
            good.url("raspbian"),
            down.url("raspbian")
        )
    );
    assert_eq!(
        apt.mirror_list("raspbian"),
        format!("{}\n{}\n", good.url("raspbian"), down.url("raspbian"))
    );
    assert_eq!(
        apt.mirror_list("debian"),
        format!("{}\n{}\n", good.url("debian"), down.url("debian"))
    );
    // The options file is what apt runs with.
    let dump = Command::new("apt-config")
        .env("APT_CONFIG", apt.dir.join("apt.conf"))
        .arg("dump")
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    for line in [
        "Acquire::Retries \"5\";",
        "Acquire::http::Timeout \"30\";",
        "Acquire::https::Timeout \"30\";",
    ] {
        assert!(dump.contains(line), "{line} not in apt-config dump");
    }
    // Hardening never changes what is installed: pi-gen's NN-packages install
    // recommends and NN-packages-nr do not, and nothing here overrides either: apt's
    // own defaults stand.
    assert!(dump.contains("APT::Install-Recommends \"1\";"), "{dump}");
    assert!(!dump.contains("Fix-Missing"), "{dump}");
    let ours = fs::read_to_string(
        pi_gen.join("stage0/00-00-pi-image-mirrors/files/apt.conf.d/80pi-image-apt"),
    )
    .unwrap();
    assert!(
        !ours.contains("Recommends") && !ours.contains("Fix-Missing"),
        "{ours}"
    );
}

/// The mirror chosen before the build stops answering. apt's mirror method moves on to
/// the next candidate of the list inside the same call, and the hook puts the mirror
/// that answers first (in `Pre-Invoke`, before apt reads the list, and in the stage steps).
fn rotation_case(failing: Behaviour) {
    let tmp = tempfile::tempdir().unwrap();
    let pi_gen = checkout(tmp.path());
    let bad = Mirror::start(failing);
    let good = Mirror::start(Behaviour::Healthy);
    let (code, out, err) = run(prepare(tmp.path())
        .args(["--offline", "--apt-timeout", "2", "--apt-retries", "0"])
        .env(
            "APT_REWRITE_MIRRORS",
            format!("{} {}", bad.url("raspbian"), good.url("raspbian")),
        )
        .env(
            "DEBIAN_MIRROR",
            format!("{} {}", bad.url("debian"), good.url("debian")),
        ));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(bad.hits(), 0, "--offline probes nothing");
    let switched = format!(
        "raspbian mirror {} does not answer; switching to {}",
        bad.url("raspbian"),
        good.url("raspbian")
    );
    let good_state = format!(
        "raspbian {}\ndebian {}\n",
        good.url("raspbian"),
        good.url("debian")
    );

    // During an apt call: the failing mirror is first; the call succeeds.
    let apt = AptRoot::new(&pi_gen);
    assert!(
        apt.mirror_list("raspbian")
            .starts_with(&bad.url("raspbian"))
    );
    let (code, log) = apt.apt_get(&["update"]);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("Err:") && !log.contains("W:"), "{log}");
    assert!(log.contains(&switched), "{log}");
    assert_eq!(apt.read("var/lib/apt/pi-image-mirrors.state"), good_state);
    assert_eq!(
        apt.mirror_list("raspbian"),
        format!("{}\n{}\n", good.url("raspbian"), bad.url("raspbian"))
    );
    let (code, log) = apt.apt_get(&["install", "--download-only", "-y", PACKAGE]);
    assert_eq!(code, 0, "{log}");
    assert!(apt.downloaded());

    // At a stage boundary: the stage step's `update` rotates before apt runs at all.
    let hits_before = bad.hits();
    let apt = AptRoot::new(&pi_gen);
    let (code, log) = apt.hook(&["update"]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains(&switched), "{log}");
    assert!(bad.hits() > hits_before, "the failing mirror was probed");
    assert!(apt.mirror_list("debian").starts_with(&good.url("debian")));
    let (code, log) = apt.apt_get(&["update"]);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("Err:") && !log.contains("W:"), "{log}");
    let (code, log) = apt.apt_get(&["install", "--download-only", "-y", PACKAGE]);
    assert_eq!(code, 0, "{log}");
    assert!(apt.downloaded());
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn hook_rotates_away_from_a_mirror_answering_503() {
    rotation_case(Behaviour::Unavailable);
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn hook_rotates_away_from_a_hanging_mirror() {
    rotation_case(Behaviour::Hang);
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn apt_fails_over_inside_one_call_and_fails_with_only_the_broken_mirror() {
    // Without the hook (no probe, no reordering) apt's mirror method alone gets past the
    // failing first candidate; with the failing mirror as the only candidate apt fails,
    // so the rotation tests cannot pass by accident.
    let tmp = tempfile::tempdir().unwrap();
    let pi_gen = checkout(tmp.path());
    let bad = Mirror::start(Behaviour::Unavailable);
    let good = Mirror::start(Behaviour::Healthy);
    let (code, _, err) = run(prepare(tmp.path())
        .args(["--offline", "--apt-retries", "0"])
        .env(
            "APT_REWRITE_MIRRORS",
            format!("{} {}", bad.url("raspbian"), good.url("raspbian")),
        ));
    assert_eq!(code, 0, "{err}");
    let apt = AptRoot::new(&pi_gen);
    fs::remove_file(apt.dir.join("etc/apt/apt.conf.d/10pi-image-mirrors")).unwrap();
    fs::remove_file(apt.dir.join("etc/apt/sources.list.d/debian.sources")).unwrap();
    assert!(
        apt.mirror_list("raspbian")
            .starts_with(&bad.url("raspbian"))
    );
    let (code, log) = apt.apt_get(&["update"]);
    assert_eq!(code, 0, "{log}");
    let (code, log) = apt.apt_get(&["install", "--download-only", "-y", PACKAGE]);
    assert_eq!(code, 0, "{log}");
    assert!(apt.downloaded());
    assert!(bad.hits() > 0, "apt tried the failing mirror first");

    let (code, _, err) = run(prepare(tmp.path())
        .args(["--offline", "--apt-retries", "0"])
        .env("APT_REWRITE_MIRRORS", bad.url("raspbian")));
    assert_eq!(code, 0, "{err}");
    let apt = AptRoot::new(&pi_gen);
    fs::remove_file(apt.dir.join("etc/apt/sources.list.d/debian.sources")).unwrap();
    let (code, log) = apt.apt_get(&["update"]);
    assert!(code != 0 || log.contains("503"), "{log}");
    let (code, log) = apt.apt_get(&["install", "--download-only", "-y", PACKAGE]);
    assert_ne!(code, 0, "{log}");
    assert!(!apt.downloaded());
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn hook_is_idempotent_on_list_and_deb822_sources_and_restores_upstream() {
    let tmp = tempfile::tempdir().unwrap();
    let pi_gen = checkout(tmp.path());
    let (code, _, err) = run(prepare(tmp.path()).arg("--offline").env(
        "APT_REWRITE_MIRRORS",
        "https://mirror.fcix.net/raspbian/raspbian http://mirror.example/raspbian",
    ));
    assert_eq!(code, 0, "{err}");
    let apt = AptRoot::new(&pi_gen);
    let list = "deb http://raspbian.raspberrypi.com/raspbian/ bookworm main contrib\n\
                #deb-src http://raspbian.raspberrypi.org/raspbian bookworm main\n\
                deb [arch=armhf trusted=yes] http://mirror.as43289.net/raspbian/raspbian bookworm main\n\
                deb http://mirrors.pidginhost.com/raspbian/raspbian/ bookworm main\n\
                deb http://archive.raspberrypi.com/debian/ bookworm main\n\
                deb http://deb.debian.org/debian-security bookworm-security main\n";
    let sources = "Types: deb\r\nURIs: http://raspbian.raspberrypi.com/raspbian/ https://other.example/raspbian\r\nSuites: bookworm\r\nComponents: main\r\n\r\nTypes: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n";
    // Already on the mirror list: must not be touched at all.
    let correct = format!("deb {} bookworm main\n", apt.list_uri("raspbian"));
    fs::write(apt.dir.join("etc/apt/sources.list"), list).unwrap();
    fs::write(
        apt.dir.join("etc/apt/sources.list.d/debian.sources"),
        sources,
    )
    .unwrap();
    fs::write(apt.dir.join("etc/apt/sources.list.d/ok.list"), &correct).unwrap();
    let ok_inode = fs::metadata(apt.dir.join("etc/apt/sources.list.d/ok.list"))
        .unwrap()
        .ino();

    let (code, log) = apt.hook(&["rewrite"]);
    assert_eq!(code, 0, "{log}");
    let first_list = apt.read("etc/apt/sources.list");
    let first_sources = apt.read("etc/apt/sources.list.d/debian.sources");
    let m = apt.list_uri("raspbian");
    let d = apt.list_uri("debian");
    assert_eq!(
        first_list,
        format!(
            "deb {m} bookworm main contrib\n#deb-src {m} bookworm main\ndeb [arch=armhf trusted=yes] {m} bookworm main\ndeb {m} bookworm main\ndeb http://archive.raspberrypi.com/debian/ bookworm main\ndeb http://deb.debian.org/debian-security bookworm-security main\n"
        )
    );
    assert_eq!(
        first_sources,
        format!(
            "Types: deb\r\nURIs: {m} {m}\r\nSuites: bookworm\r\nComponents: main\r\n\r\nTypes: deb\nURIs: {d}\nSuites: bookworm\nComponents: main\n"
        )
    );
    let (code, log) = apt.hook(&["rewrite"]);
    assert_eq!(code, 0, "{log}");
    assert!(
        !log.contains("pointed"),
        "second pass changed something: {log}"
    );
    assert_eq!(apt.read("etc/apt/sources.list"), first_list);
    assert_eq!(
        apt.read("etc/apt/sources.list.d/debian.sources"),
        first_sources
    );
    assert_eq!(apt.read("etc/apt/sources.list.d/ok.list"), correct);
    assert_eq!(
        fs::metadata(apt.dir.join("etc/apt/sources.list.d/ok.list"))
            .unwrap()
            .ino(),
        ok_inode,
        "an already correct file is not even rewritten"
    );
    // restore: everything Raspbian goes back to the upstream archive pi-gen names.
    let (code, log) = apt.hook(&["restore"]);
    assert_eq!(code, 0, "{log}");
    let up = "http://raspbian.raspberrypi.com/raspbian/";
    assert!(apt.read("etc/apt/sources.list").starts_with(&format!(
        "deb {up} bookworm main contrib\n#deb-src {up} bookworm main\n"
    )));
    assert_eq!(
        apt.read("etc/apt/sources.list.d/ok.list"),
        format!("deb {up} bookworm main\n")
    );
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn the_export_restores_the_templates_sources_and_keeps_apts_lists_under_their_names() {
    let tmp = tempfile::tempdir().unwrap();
    let pi_gen = checkout(tmp.path());
    let good = Mirror::start(Behaviour::Healthy);
    // A second candidate that apt names its lists after as it names the upstream's
    // (https, same host and path): its lists are the upstream's, and are kept.
    let (code, _, err) = run(prepare(tmp.path())
        .arg("--offline")
        .env("APT_REWRITE_MIRRORS", good.url("raspbian"))
        .env(
            "DEBIAN_MIRROR",
            format!("{} https://deb.debian.org/debian", good.url("debian")),
        ));
    assert_eq!(code, 0, "{err}");
    let apt = AptRoot::new(&pi_gen);
    let (code, log) = apt.apt_get(&["update"]);
    assert_eq!(code, 0, "{log}");
    let lists = |apt: &AptRoot| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(apt.dir.join("var/lib/apt/lists"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_file() && e.file_name() != "lock")
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert!(
        lists(&apt).iter().all(|l| l.contains("_pi-image-mirrors_")),
        "fetched through the mirror lists: {:?}",
        lists(&apt)
    );
    let (code, log) = apt.hook(&["remove"]);
    assert_eq!(code, 0, "{log}");
    // The sources are the templates' text again, each URL in its own form (the
    // checkout's templates name the mirror lists now; their upstream text is kept).
    let templates = pi_gen
        .join("stage0")
        .join(SUBSTAGE)
        .join("upstream/stage0/00-configure-apt/files");
    for (name, dest) in [
        ("sources.list", "etc/apt/sources.list"),
        ("debian.sources", "etc/apt/sources.list.d/debian.sources"),
    ] {
        assert_eq!(
            apt.read(dest),
            fs::read_to_string(templates.join(name))
                .unwrap()
                .replace("RELEASE", SUITE),
            "{dest}"
        );
    }
    // The lists are kept, under the names apt gives the upstream sources...
    let after = lists(&apt);
    for want in [
        "raspbian.raspberrypi.com_raspbian_dists_bookworm_InRelease",
        "raspbian.raspberrypi.com_raspbian_dists_bookworm_main_binary-amd64_Packages",
        "deb.debian.org_debian_dists_bookworm_InRelease",
        "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages",
    ] {
        assert!(after.iter().any(|l| l == want), "{want} not in {after:?}");
    }
    assert!(
        !after.iter().any(|l| l.contains("pi-image-mirrors")),
        "{after:?}"
    );
    // ...and apt reads them as the upstream archives' (no download: the mirror is gone).
    drop(good);
    let (code, policy) = apt.in_root("apt-cache", &["policy", PACKAGE]);
    assert_eq!(code, 0, "{policy}");
    assert!(policy.contains("Candidate: 1.0"), "{policy}");
    assert!(
        policy.contains("http://raspbian.raspberrypi.com/raspbian bookworm/main"),
        "{policy}"
    );
}

#[test]
fn on_the_build_host_the_hook_never_follows_a_symlink_out_of_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let pi_gen = checkout(tmp.path());
    let (code, _, err) = run(prepare(tmp.path())
        .arg("--offline")
        .env("APT_REWRITE_MIRRORS", "http://mirror.example/raspbian"));
    assert_eq!(code, 0, "{err}");
    let files = pi_gen.join("stage0").join(SUBSTAGE).join("files");
    let root = tmp.path().join("rootfs");
    let host = tmp.path().join("host-dir");
    fs::create_dir_all(root.join("etc/apt")).unwrap();
    fs::create_dir_all(host.join("keep")).unwrap();
    fs::write(host.join("keep/data"), "host data\n").unwrap();
    fs::copy(
        files.join("pi-image-mirrors.conf"),
        root.join("etc/apt/pi-image-mirrors.conf"),
    )
    .unwrap();
    // Made by a package or a chroot script, in the image.
    std::os::unix::fs::symlink(&host, root.join("etc/apt/pi-image-mirrors")).unwrap();
    let (code, log) = run_merged(
        Command::new("sh")
            .arg(files.join("pi-image-apt-mirrors"))
            .arg("--root")
            .arg(&root)
            .arg("remove"),
    );
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("is a symlink; refusing to follow it out of the image"),
        "{log}"
    );
    assert_eq!(
        fs::read_to_string(host.join("keep/data")).unwrap(),
        "host data\n"
    );
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
fn an_unreadable_mirror_list_makes_apt_fail_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let pi_gen = checkout(tmp.path());
    let good = Mirror::start(Behaviour::Healthy);
    let (code, _, err) = run(prepare(tmp.path())
        .arg("--offline")
        .env("APT_REWRITE_MIRRORS", good.url("raspbian"))
        .env("DEBIAN_MIRROR", good.url("debian")));
    assert_eq!(code, 0, "{err}");
    let apt = AptRoot::new(&pi_gen);
    // As when an overlay made /etc private to the uid that checked it out.
    let lists = apt.dir.join("etc/apt/pi-image-mirrors");
    crate::support::sh(
        "chown",
        &["-R", "1001:1001", lists.to_str().unwrap()],
        &apt.dir,
    );
    fs::set_permissions(&lists, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let started = std::time::Instant::now();
    let (code, log) = apt.apt_get(&["update"]);
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("is not searchable by apt's download user (_apt)"),
        "{log}"
    );
    assert!(
        started.elapsed().as_secs() < 20,
        "apt took {:?}",
        started.elapsed()
    );
    // And sources naming the mirror lists after the hook's configuration is gone.
    fs::set_permissions(&lists, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    fs::remove_file(apt.dir.join("etc/apt/pi-image-mirrors.conf")).unwrap();
    let (code, log) = apt.apt_get(&["update"]);
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("names pi-image's apt mirror lists, but"),
        "{log}"
    );
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
fn the_package_set_is_the_same_with_and_without_prepare_mirrors() {
    let installs = |with_mirrors: bool| -> String {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let pi_gen = copy_test_pi_gen(root);
        let good = Mirror::start(Behaviour::Healthy);
        if with_mirrors {
            let (code, out, err) = run(prepare(root)
                .env("APT_REWRITE_MIRRORS", good.url("raspbian"))
                .env("APT_MIRROR_RASPBERRYPI", good.url("rpi")));
            assert_eq!(code, 0, "{out}{err}");
        }
        let (code, out, err) = build_test_pi_gen(root, &["--packages", "jq"]);
        assert_eq!(code, 0, "{out}{err}");
        let text = fs::read_to_string(
            pi_gen.join("work/sugarkube/stage2/rootfs/var/lib/test-pi-gen/installs"),
        )
        .unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        lines.join("\n")
    };
    let plain = installs(false);
    // pi-gen's rule is visible: NN-packages with Recommends, NN-packages-nr without.
    assert!(
        plain.contains("ssh recommends=yes") && plain.contains("parted recommends=no"),
        "{plain}"
    );
    assert_eq!(installs(true), plain);
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn generated_scripts_pass_bash_n_and_shellcheck_and_speak_ascii() {
    let tmp = tempfile::tempdir().unwrap();
    let pi_gen = checkout(tmp.path());
    let good = Mirror::start(Behaviour::Healthy);
    let (code, _, err) = run(prepare(tmp.path())
        .arg("--offline")
        .env("APT_REWRITE_MIRRORS", good.url("raspbian"))
        .env("DEBIAN_MIRROR", good.url("debian"))
        .env("APT_PROXY", "http://proxy.example:3128"));
    assert_eq!(code, 0, "{err}");
    let sub = pi_gen.join("stage0").join(SUBSTAGE);
    for (script, shell) in [
        (sub.join("00-run.sh"), "bash"),
        (
            pi_gen.join("stage2").join(SUBSTAGE).join("00-run.sh"),
            "bash",
        ),
        (sub.join("files/pi-image-apt-mirrors"), "sh"),
        (pi_gen.join("export-image/02-set-sources/02-run.sh"), "bash"),
    ] {
        for (prog, args) in [("bash", vec!["-n"]), ("shellcheck", vec!["-s", shell])] {
            let out = Command::new(prog)
                .args(&args)
                .arg(&script)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{prog} {}: {}{}",
                script.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            fs::read(&script).unwrap().is_ascii(),
            "{}",
            script.display()
        );
    }
    // pi-gen's own prerun.sh, with debootstrap's URL replaced, is still valid bash.
    let out = Command::new("bash")
        .arg("-n")
        .arg(pi_gen.join("stage0/prerun.sh"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let proxy = fs::read_to_string(sub.join("files/apt.conf.d/81pi-image-proxy")).unwrap();
    for line in [
        "Acquire::http::Proxy::archive.raspberrypi.com \"DIRECT\";",
        "Acquire::https::Proxy::archive.raspberrypi.com \"DIRECT\";",
    ] {
        assert!(proxy.contains(line), "{proxy}");
    }
    // apt reads the DIRECT exceptions as meant.
    let dump = Command::new("apt-config")
        .env("APT_CONFIG", "/dev/null")
        .args(["-c"])
        .arg(sub.join("files/apt.conf.d/81pi-image-proxy"))
        .arg("dump")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&dump.stdout)
            .contains("Acquire::https::Proxy::archive.raspberrypi.com \"DIRECT\";")
    );
    // The hook, under LANG=C, in every mode: exit 0 and plain ASCII output.
    let apt = AptRoot::new(&pi_gen);
    for mode in ["status", "rewrite", "update", "restore"] {
        let (code, log) = apt.hook(&[mode]);
        assert_eq!(code, 0, "{mode}: {log}");
        assert!(log.is_ascii(), "{mode}: {log}");
    }
    let (code, log) = apt.hook(&["frobnicate"]);
    assert_eq!(code, 1);
    assert!(log.contains("unknown command 'frobnicate'"), "{log}");
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn bad_input_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let pi_gen = checkout(tmp.path());
    let before = snapshot(&pi_gen);
    for (var, value, needle) in [
        (
            "APT_REWRITE_MIRRORS",
            "ftp://ftp.example/raspbian",
            "is not an http:// or https:// URL",
        ),
        (
            "APT_REWRITE_MIRRORS",
            "   ",
            "APT_REWRITE_MIRRORS is set but lists no mirror",
        ),
        (
            "DEBIAN_MIRROR",
            "http://m.example/debian;reboot",
            "contains `;`",
        ),
        ("APT_OPTS", "-o Acquire::Retries", "is not Key=Value"),
        ("APT_OPTS", "--yes", "is not an apt configuration option"),
        (
            "APT_OPTS",
            "-o Acquire::http::Timeout=\"30\"",
            "cannot hold",
        ),
        ("APT_PROXY", "socks5://proxy:1080", "APT_PROXY"),
    ] {
        let (code, out, err) = run(prepare(tmp.path()).arg("--offline").env(var, value));
        assert_eq!(code, 2, "{var}={value}: {out}{err}");
        assert!(err.contains(needle), "{var}={value}: {err}");
        assert_eq!(snapshot(&pi_gen), before, "{var}={value} wrote something");
    }
    // Every candidate down: exit 1, each probe named, nothing written.
    let down = Mirror::start(Behaviour::Unavailable);
    let summary = tmp.path().join("summary.md");
    fs::write(&summary, "").unwrap();
    let (code, out, err) = run(prepare(tmp.path())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("APT_REWRITE_MIRRORS", down.url("raspbian"))
        .env("DEBIAN_MIRROR", down.url("debian")));
    assert_eq!(code, 1, "{err}");
    // The job's summary shows every probe.
    let summary = fs::read_to_string(&summary).unwrap();
    assert!(summary.contains("### prepare-mirrors failed"), "{summary}");
    assert!(
        summary.contains(&format!(
            "| Raspbian | none answered | {}: http 503",
            down.url("raspbian")
        )),
        "{summary}"
    );
    // In Actions the error is an annotation on stdout.
    let log = format!("{out}{err}");
    assert!(
        log.contains(&format!("{} (http 503)", down.url("raspbian"))),
        "{log}"
    );
    assert!(log.contains("nothing was written"), "{log}");
    assert_eq!(snapshot(&pi_gen), before);
}

#[test]
fn reruns_are_idempotent_keep_and_skip_clean_up() {
    let tmp = tempfile::tempdir().unwrap();
    let pi_gen = checkout(tmp.path());
    let upstream_prerun = fs::read_to_string(pi_gen.join("stage0/prerun.sh")).unwrap();
    let mirrors = "http://a.example/raspbian http://b.example/raspbian";
    let (code, _, err) = run(prepare(tmp.path())
        .arg("--offline")
        .env("APT_REWRITE_MIRRORS", mirrors));
    assert_eq!(code, 0, "{err}");
    let first = snapshot(&pi_gen);
    let (code, _, err) = run(prepare(tmp.path())
        .arg("--offline")
        .env("APT_REWRITE_MIRRORS", mirrors));
    assert_eq!(code, 0, "{err}");
    assert_eq!(snapshot(&pi_gen), first, "a second run changes nothing");
    // Another mirror: debootstrap follows it, starting from the upstream text.
    let (code, _, err) = run(prepare(tmp.path())
        .arg("--offline")
        .env("APT_REWRITE_MIRRORS", "http://c.example/raspbian"));
    assert_eq!(code, 0, "{err}");
    let prerun = fs::read_to_string(pi_gen.join("stage0/prerun.sh")).unwrap();
    assert_eq!(
        prerun,
        upstream_prerun.replace(
            "http://raspbian.raspberrypi.com/raspbian/",
            "http://c.example/raspbian/"
        )
    );
    // --keep-mirrors-in-image: no export step.
    let export = pi_gen.join("export-image/02-set-sources/02-run.sh");
    assert!(export.exists());
    let (code, _, err) = run(prepare(tmp.path()).args(["--offline", "--keep-mirrors-in-image"]));
    assert_eq!(code, 0, "{err}");
    assert!(!export.exists());
    // SKIP_MIRROR_REWRITE: everything ours goes, prerun.sh is upstream again.
    let (code, _, err) = run(prepare(tmp.path()).env("SKIP_MIRROR_REWRITE", "1"));
    assert_eq!(code, 0, "{err}");
    assert!(!pi_gen.join("stage0").join(SUBSTAGE).exists());
    assert!(!pi_gen.join("stage2").join(SUBSTAGE).exists());
    assert_eq!(
        fs::read_to_string(pi_gen.join("stage0/prerun.sh")).unwrap(),
        upstream_prerun
    );
    // A pi-gen file where the export step would go is never overwritten.
    fs::write(&export, "#!/bin/bash\necho upstream\n").unwrap();
    let (code, _, err) = run(prepare(tmp.path()).arg("--offline"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(
        fs::read_to_string(&export).unwrap(),
        "#!/bin/bash\necho upstream\n"
    );
}

/// The files of an ext4 partition of a raw image, read with debugfs.
fn image_file(img: &Path, partition: usize, path: &str) -> Option<String> {
    let table: serde_json::Value = serde_json::from_str(&crate::support::sh(
        "sfdisk",
        &["--json", img.to_str().unwrap()],
        Path::new("/"),
    ))
    .unwrap();
    let part = &table["partitiontable"]["partitions"][partition - 1];
    let (start, size) = (
        part["start"].as_u64().unwrap(),
        part["size"].as_u64().unwrap(),
    );
    let fs_img = img.with_extension(format!("p{partition}"));
    crate::support::sh(
        "dd",
        &[
            &format!("if={}", img.display()),
            &format!("of={}", fs_img.display()),
            "bs=512",
            &format!("skip={start}"),
            &format!("count={size}"),
            "status=none",
        ],
        Path::new("/"),
    );
    let out = Command::new("debugfs")
        .args(["-R", &format!("cat {path}")])
        .arg(&fs_img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    (!err.contains("File not found")).then_some(text)
}

/// A copy of the test pi-gen in `root/pi-gen`.
fn copy_test_pi_gen(root: &Path) -> PathBuf {
    let pi_gen = root.join("pi-gen");
    crate::support::sh(
        "cp",
        &[
            "-a",
            crate::support::repo_root()
                .join("tests/fixtures/pi-gen")
                .to_str()
                .unwrap(),
            pi_gen.to_str().unwrap(),
        ],
        root,
    );
    pi_gen
}

/// `run-pi-gen` natively on `root/pi-gen` (the test pi-gen), without a seed.
fn build_test_pi_gen(root: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut build = pi_image(root);
    build
        .args([
            "run-pi-gen",
            "--pi-gen-dir",
            "pi-gen",
            "--strategy",
            "native",
            "--output-dir",
            "out",
            "--min-free-gb",
            "0",
            "--no-user-data",
        ])
        .args(extra)
        .env(
            "TEST_PI_GEN_CACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-pi-gen-cache"),
        );
    crate::run_pi_gen::test_pi_gen_env(&mut build);
    run(&mut build)
}

#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
fn test_pi_gen_build_has_the_hook_during_the_build_and_not_in_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let pi_gen = copy_test_pi_gen(root);
    let good = Mirror::start(Behaviour::Healthy);
    let (code, out, err) = run(prepare(root)
        .env("APT_REWRITE_MIRRORS", good.url("raspbian"))
        .env("APT_MIRROR_RASPBERRYPI", good.url("rpi")));
    assert_eq!(code, 0, "{out}{err}");
    let o = read_outputs(&root.join("gh-output"));
    assert_eq!(o["archives"], "raspbian raspberrypi");
    let hits_after_prepare = good.hits();

    let (code, out, err) = build_test_pi_gen(
        root,
        &[
            "--pi-gen-branch",
            SUITE,
            "--setting",
            "DEPLOY_COMPRESSION=none",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let log = format!("{out}{err}");
    for step in [
        "stage0/00-00-pi-image-mirrors",
        "stage2/00-00-pi-image-mirrors",
        "export-image/02-set-sources/02-run.sh",
    ] {
        assert!(
            log.contains(&format!("Begin {}", pi_gen.join(step).display())),
            "{step} did not run: {log}"
        );
    }
    assert!(
        good.hits() > hits_after_prepare,
        "the stage steps probed the mirror during the build"
    );
    // During the build: the hook, its configuration and the mirror sources are in the
    // stage's root filesystem.
    let rootfs = pi_gen.join("work/sugarkube/stage2/rootfs");
    for f in [
        "usr/local/sbin/pi-image-apt-mirrors",
        "etc/apt/pi-image-mirrors.conf",
        "etc/apt/apt.conf.d/10pi-image-mirrors",
        "etc/apt/apt.conf.d/80pi-image-apt",
        "var/lib/apt/pi-image-mirrors.state",
    ] {
        assert!(
            rootfs.join(f).is_file(),
            "{f} missing from the stage2 rootfs"
        );
    }
    let sources = fs::read_to_string(rootfs.join("etc/apt/sources.list")).unwrap();
    assert!(
        sources.starts_with(&format!(
            "deb mirror+file:/etc/apt/pi-image-mirrors/raspbian.list {SUITE} "
        )),
        "{sources}"
    );
    let raspi = fs::read_to_string(rootfs.join("etc/apt/sources.list.d/raspi.list")).unwrap();
    assert!(
        raspi.starts_with(&format!(
            "deb mirror+file:/etc/apt/pi-image-mirrors/raspberrypi.list {SUITE} "
        )),
        "{raspi}"
    );
    for (archive, mirror) in [
        ("raspbian", good.url("raspbian")),
        ("raspberrypi", good.url("rpi")),
    ] {
        let list =
            fs::read_to_string(rootfs.join(format!("etc/apt/pi-image-mirrors/{archive}.list")))
                .unwrap();
        assert_eq!(list, format!("{mirror}\tpriority:1\n"));
    }
    // debootstrap was pointed at the mirror itself.
    let prerun = fs::read_to_string(pi_gen.join("stage0/prerun.sh")).unwrap();
    assert!(
        prerun.contains(&format!("{}/", good.url("raspbian"))),
        "{prerun}"
    );
    // The exported image: no hook, upstream sources.
    let img = fs::read_dir(root.join("out/deploy"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "img"))
        .expect("an .img in deploy/");
    for f in [
        "/usr/local/sbin/pi-image-apt-mirrors",
        "/etc/apt/pi-image-mirrors.conf",
        "/etc/apt/apt.conf.d/10pi-image-mirrors",
        "/etc/apt/apt.conf.d/80pi-image-apt",
        "/var/lib/apt/pi-image-mirrors.state",
        "/etc/apt/pi-image-mirrors/raspbian.list",
    ] {
        assert_eq!(image_file(&img, 2, f), None, "{f} shipped in the image");
    }
    let shipped = image_file(&img, 2, "/etc/apt/sources.list").unwrap();
    assert!(
        shipped.starts_with(&format!(
            "deb http://raspbian.raspberrypi.com/raspbian/ {SUITE} main"
        )),
        "{shipped}"
    );
    assert!(!shipped.contains("127.0.0.1"), "{shipped}");
    let shipped = image_file(&img, 2, "/etc/apt/sources.list.d/raspi.list").unwrap();
    assert!(
        shipped.starts_with(&format!(
            "deb http://archive.raspberrypi.com/debian/ {SUITE} main"
        )),
        "{shipped}"
    );
}

/// `--print-plan`: every file prepare-mirrors would write into the checkout, with its
/// text, and nothing written.
#[test]
fn the_printed_plan_lists_every_mirror_file_with_its_text() {
    let tmp = tempfile::tempdir().unwrap();
    let checkout = crate::run_pi_gen::skeleton_in(tmp.path(), "");
    fs::create_dir_all(checkout.join("stage0/00-configure-apt/files")).unwrap();
    fs::write(
        checkout.join("stage0/00-configure-apt/files/sources.list"),
        "deb http://deb.debian.org/debian RELEASE main\n",
    )
    .unwrap();
    fs::write(
        checkout.join("stage0/prerun.sh"),
        "#!/bin/bash -e\nbootstrap ${RELEASE} \"${ROOTFS_DIR}\" http://deb.debian.org/debian/\n",
    )
    .unwrap();
    let listing = |dir: &std::path::Path| {
        let mut v: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(dir)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| (e.path().display().to_string(), fs::read(e.path()).unwrap()))
            .collect();
        v.sort();
        v
    };
    let before = listing(&checkout);
    let print_plan = |mirror_and_more: &[&str]| {
        let (code, plan, err) = run(pi_image(tmp.path())
            .args(["--print-plan", "prepare-mirrors", "--pi-gen-dir", "pi-gen"])
            .args(["--offline", "--debian-mirror"])
            .args(mirror_and_more));
        assert_eq!(code, 0, "{err}");
        plan
    };
    let plan = print_plan(&["http://mirror.example/debian"]);
    assert_eq!(
        listing(&checkout),
        before,
        "--print-plan changed the checkout"
    );
    // Credentials in a mirror or proxy URL are never shown, in a plan either.
    let shown = print_plan(&[
        "http://user:s3cret@mirror.example/debian",
        "--apt-proxy",
        "http://proxyuser:pr0xy@proxy.example:3128",
    ]);
    assert!(
        shown.contains("http://***@mirror.example/debian"),
        "redacted, not dropped"
    );
    assert!(
        !shown.contains("s3cret") && !shown.contains("pr0xy"),
        "a credential was shown"
    );
    let root = tmp.path().display().to_string();
    // The hook is a file of its own (apt-mirrors.sh): shown by name, not by its text.
    let hook = fs::read_to_string(
        crate::support::repo_root().join("src/commands/prepare_mirrors/apt-mirrors.sh"),
    )
    .unwrap();
    let hook = serde_json::to_string(&hook).unwrap();
    assert!(plan.contains(&hook), "the hook's text is in the plan");
    insta::assert_snapshot!(
        "prepare-mirrors-plan",
        plan.replace(&root, "[ws]")
            .replace(&hook, "\"[apt-mirrors.sh]\"")
    );
}

/// `--print-plan` writes no step summary, not even the one a failed probe writes.
#[test]
fn a_printed_plan_writes_no_summary_even_when_no_mirror_answers() {
    let tmp = tempfile::tempdir().unwrap();
    crate::run_pi_gen::skeleton_in(tmp.path(), "");
    let summary = tmp.path().join("summary.md");
    let (code, _, err) = run(pi_image(tmp.path())
        .args(["--print-plan", "prepare-mirrors", "--pi-gen-dir", "pi-gen"])
        .args(["--debian-mirror", "http://127.0.0.1:9/debian"])
        .args(["--raspberrypi-mirror", "http://127.0.0.1:9/rpi"])
        .args(["--probe-timeout", "1", "--probe-retries", "0"])
        .env("GITHUB_STEP_SUMMARY", &summary));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no healthy mirror"), "{err}");
    assert!(
        !summary.exists(),
        "a summary was written under --print-plan"
    );
}

/// A `--pi-gen-dir` that is a symlink to nothing is refused, and left where it is.
#[test]
fn a_dangling_pi_gen_symlink_is_refused_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let link = tmp.path().join("pg");
    std::os::unix::fs::symlink(tmp.path().join("nowhere"), &link).unwrap();
    let (code, _, err) = run(pi_image(tmp.path()).args([
        "prepare-mirrors",
        "--offline",
        "--pi-gen-dir",
        "pg",
        "--pi-gen-url",
        "file:///nonexistent/repo",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("symlink that leads nowhere"), "{err}");
    assert!(
        fs::symlink_metadata(&link).is_ok(),
        "the symlink was removed"
    );
    assert!(
        !tmp.path().join("nowhere").exists(),
        "something was made through it"
    );
}

/// A clone that fails (no such repository) leaves nothing behind: not the checkout,
/// and not the parent directories made for it; a parent that was there stays.
#[test]
fn a_failed_clone_leaves_no_directory_behind() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("kept")).unwrap();
    let (code, _, err) = run(pi_image(tmp.path()).args([
        "prepare-mirrors",
        "--offline",
        "--pi-gen-dir",
        "kept/a/b/pi-gen",
        "--pi-gen-url",
        "file:///nonexistent/repo",
    ]));
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("clone pi-gen"), "{err}");
    let left: Vec<_> = fs::read_dir(tmp.path().join("kept")).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A `--pi-gen-dir` through `..` after a directory that does not exist yet
/// (`missing/../kept`) names `kept` once `missing` is made: it is taken for the checkout
/// it is, never cloned into and never removed, and `missing` is not left behind.
#[test]
fn a_checkout_path_through_a_missing_directory_and_dot_dot_removes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("kept")).unwrap();
    fs::write(tmp.path().join("kept/file.txt"), "mine").unwrap();
    let (code, _, err) = run(pi_image(tmp.path()).args([
        "--print-plan",
        "prepare-mirrors",
        "--offline",
        "--pi-gen-dir",
        "missing/../kept",
        "--pi-gen-url",
        "file:///nonexistent/repo",
    ]));
    assert_ne!(code, 0, "{err}");
    assert_eq!(
        fs::read_to_string(tmp.path().join("kept/file.txt")).unwrap(),
        "mine",
        "{err}"
    );
    assert!(
        !tmp.path().join("missing").exists(),
        "left `missing` behind"
    );
}
