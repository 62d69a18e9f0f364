//! Test harness: real temp dirs, real disk images (MBR + FAT32 boot + ext4 root made
//! with dosfstools/mtools/e2fsprogs), the real binary, and the real verifiers.

#![allow(dead_code)]

pub mod github;
pub mod mirror;
pub mod sigstore;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use assert_cmd::cargo::CommandCargoExt as _;

/// Variables the binary reads outside its flags: the runner's files, logging, the sudo
/// user, credentials and the kernel probe override.
const SCRUB_EXTRA: &[&str] = &[
    "GITHUB_ACTIONS",
    "GITHUB_OUTPUT",
    "GITHUB_STEP_SUMMARY",
    "GITHUB_WORKSPACE",
    "PI_IMAGE_LOG",
    "RUST_LOG",
    "SUDO_UID",
    "SUDO_GID",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "PI_IMAGE_KERNEL_CONFIG",
    "SOURCE_DATE_EPOCH",
    "COSIGN_PASSWORD",
];

/// Every variable that would change the binary's behaviour: each one a flag can come
/// from (read off the clap definitions, so a new `env = "…"` is scrubbed too) and
/// [`SCRUB_EXTRA`].
fn scrub() -> &'static [String] {
    static LIST: OnceLock<Vec<String>> = OnceLock::new();
    LIST.get_or_init(|| {
        use clap::CommandFactory as _;
        fn walk(cmd: &clap::Command, out: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if let Some(env) = arg.get_env() {
                    out.push(env.to_string_lossy().into_owned());
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, out);
            }
        }
        let mut out: Vec<String> = SCRUB_EXTRA.iter().map(|s| (*s).to_owned()).collect();
        walk(&pi_image::cli::Cli::command(), &mut out);
        out.sort();
        out.dedup();
        out
    })
}

/// The binary, with a clean environment, run in `dir`.
pub fn pi_image(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("pi-image").expect("binary built");
    for v in scrub() {
        cmd.env_remove(v);
    }
    cmd.current_dir(dir);
    cmd
}

/// Runs a command and returns (exit code, stdout, stderr).
pub fn run(mut cmd: impl std::borrow::BorrowMut<Command>) -> (i32, String, String) {
    let out = cmd.borrow_mut().output().expect("command runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command and returns (exit code, stdout followed by stderr).
pub fn run_merged(cmd: impl std::borrow::BorrowMut<Command>) -> (i32, String) {
    let (code, out, err) = run(cmd);
    (code, format!("{out}{err}"))
}

/// Runs an external tool that must succeed.
pub fn sh(program: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} (run the README's test command to install it): {e}")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sha256_of(path: &Path) -> String {
    let out = sh("sha256sum", &[path.to_str().unwrap()], Path::new("/"));
    out.split_whitespace().next().unwrap().to_owned()
}

/// SHA-256 of the decompressed content of an `.xz` file, by the `xz` tool.
pub fn xz_content_sha256(path: &Path) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; xz -dc '{}' | sha256sum",
            path.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xz -dc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// `xz -t` and `sha256sum -c` on the outputs, the checks users run.
pub fn assert_valid_outputs(out_dir: &Path, img_name: &str) {
    let image = format!("{img_name}.img.xz");
    sh("xz", &["-t", &image], out_dir);
    sh("sha256sum", &["-c", &format!("{image}.sha256")], out_dir);
    let line = fs::read_to_string(out_dir.join(format!("{image}.sha256"))).unwrap();
    let re = regex::Regex::new(&format!("^[0-9a-f]{{64}}  {}\n$", regex::escape(&image))).unwrap();
    assert!(re.is_match(&line), "checksum line {line:?}");
}

/// Reads a `GITHUB_OUTPUT` file (key=value and heredoc forms).
pub fn read_outputs(path: &Path) -> std::collections::BTreeMap<String, String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut map = std::collections::BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((k, delim)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                value.push(l);
            }
            map.insert(k.to_owned(), value.join("\n"));
        } else if let Some((k, v)) = line.split_once('=') {
            map.insert(k.to_owned(), v.to_owned());
        }
    }
    map
}

const MIB: u64 = 1 << 20;

/// A small Pi-OS-like disk: MBR, FAT32 `bootfs` at 4 MiB (kernel8.img, dtb,
/// config.txt, cmdline.txt), ext4 `rootfs` with real binaries, and zero runs. Built once
/// per test process; returns its path.
pub fn pi_like_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        // Cached under target/ between runs; built aside and renamed so a half-built
        // image is never picked up.
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let done = root.join("pi-like-image-v2");
        let path = done.join("disk.img");
        if !path.exists() {
            let work = root.join(format!("pi-like-image.{}", std::process::id()));
            let _ = fs::remove_dir_all(&work);
            fs::create_dir_all(&work).unwrap();
            build_image(&work, &work.join("disk.img"), 36);
            for f in ["boot.fat", "root.ext4"] {
                let _ = fs::remove_file(work.join(f));
            }
            let _ = fs::remove_dir_all(work.join("rootfs"));
            let _ = fs::remove_dir_all(work.join("bootfiles"));
            if fs::rename(&work, &done).is_err() {
                let _ = fs::remove_dir_all(&work);
            }
        }
        path
    })
}

/// Builds a disk image of `root_mib` MiB of root filesystem (plus 4 MiB gap and a
/// 33 MiB boot partition, the smallest FAT32 mkfs.vfat accepts).
pub fn build_image(work: &Path, path: &Path, root_mib: u64) {
    let boot_mib = 33;
    // Boot partition.
    let boot = work.join("boot.fat");
    let _ = fs::remove_file(&boot);
    sh(
        "mkfs.vfat",
        &[
            "-F",
            "32",
            "-n",
            "BOOTFS",
            "-C",
            boot.to_str().unwrap(),
            &(boot_mib * 1024).to_string(),
        ],
        work,
    );
    let files = work.join("bootfiles");
    fs::create_dir_all(&files).unwrap();
    fs::write(files.join("config.txt"), "arm_64bit=1\nenable_uart=1\n").unwrap();
    fs::write(
        files.join("cmdline.txt"),
        "console=serial0,115200 root=PARTUUID=abcd-02 rootfstype=ext4 rootwait\n",
    )
    .unwrap();
    fs::copy("/bin/bash", files.join("kernel8.img")).unwrap();
    fs::copy("/bin/ls", files.join("bcm2710-rpi-3-b.dtb")).unwrap();
    for f in [
        "config.txt",
        "cmdline.txt",
        "kernel8.img",
        "bcm2710-rpi-3-b.dtb",
    ] {
        sh(
            "mcopy",
            &[
                "-i",
                boot.to_str().unwrap(),
                files.join(f).to_str().unwrap(),
                "::/",
            ],
            work,
        );
    }
    // Root partition from a real tree.
    let tree = work.join("rootfs");
    let _ = fs::remove_dir_all(&tree);
    fs::create_dir_all(tree.join("usr/bin")).unwrap();
    fs::create_dir_all(tree.join("etc")).unwrap();
    for b in ["bash", "ls", "cat", "cp", "tar", "gzip", "sha256sum"] {
        let src = Path::new("/usr/bin").join(b);
        if src.exists() {
            fs::copy(&src, tree.join("usr/bin").join(b)).unwrap();
        }
    }
    fs::write(
        tree.join("etc/os-release"),
        "PRETTY_NAME=\"Test Pi OS\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
    )
    .unwrap();
    dpkg_install(work, &tree, &test_debs(work));
    let root = work.join("root.ext4");
    let _ = fs::remove_file(&root);
    mkfs_ext4(work, &tree, &root, root_mib, &["-O", "^huge_file"]);
    assemble_disk(path, &boot, &root);
}

/// The packages the test images hold, as (name, arch, version, source field):
/// an epoch, a binNMU of another source version, an `all` package, a `~` version.
pub const TEST_PACKAGES: [(&str, &str, &str, &str); 3] = [
    ("pi-like-base", "arm64", "1:2.0-1+b1", "pi-like (1:2.0-1)"),
    ("pi-like-doc", "all", "2.0-1", "pi-like"),
    ("libpi-like0", "arm64", "0.9~rc1-3", ""),
];

/// Real .deb packages of [`TEST_PACKAGES`], built by `dpkg-deb`.
pub fn test_debs(work: &Path) -> Vec<PathBuf> {
    TEST_PACKAGES
        .iter()
        .map(|(name, arch, version, source)| {
            let dir = work.join(format!("deb-{name}"));
            fs::create_dir_all(dir.join("DEBIAN")).unwrap();
            fs::create_dir_all(dir.join(format!("usr/share/doc/{name}"))).unwrap();
            fs::write(dir.join(format!("usr/share/doc/{name}/README")), name).unwrap();
            let source = if source.is_empty() {
                String::new()
            } else {
                format!("Source: {source}\n")
            };
            fs::write(
                dir.join("DEBIAN/control"),
                format!(
                    "Package: {name}\nVersion: {version}\nArchitecture: {arch}\n{source}\
                     Maintainer: Test <test@example.org>\nDescription: test package\n long text\n"
                ),
            )
            .unwrap();
            let deb = work.join(format!("{name}.deb"));
            sh(
                "dpkg-deb",
                &[
                    "--root-owner-group",
                    "--build",
                    dir.to_str().unwrap(),
                    deb.to_str().unwrap(),
                ],
                work,
            );
            deb
        })
        .collect()
}

/// Installs `debs` into the tree `root` with dpkg itself (`--root`), so its
/// `/var/lib/dpkg/status` is one dpkg wrote. The database declares arm64 so the
/// foreign packages are taken; they have no maintainer scripts.
pub fn dpkg_install(work: &Path, root: &Path, debs: &[PathBuf]) {
    let admin = root.join("var/lib/dpkg");
    for d in ["info", "updates", "triggers"] {
        fs::create_dir_all(admin.join(d)).unwrap();
    }
    fs::write(admin.join("status"), "").unwrap();
    fs::write(admin.join("arch"), "arm64\n").unwrap();
    let mut args = vec![
        format!("--root={}", root.display()),
        "--force-not-root".into(),
        "--log=/dev/null".into(),
        "-i".into(),
    ];
    args.extend(debs.iter().map(|d| d.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sh("dpkg", &args, work);
}

/// An ext4 file system of `mib` MiB labelled `rootfs`, filled from `tree` (no mounting).
fn mkfs_ext4(work: &Path, tree: &Path, dest: &Path, mib: u64, extra: &[&str]) {
    let size = format!("{mib}M");
    let mut args = vec!["-q", "-F", "-L", "rootfs"];
    args.extend_from_slice(extra);
    args.extend(["-d", tree.to_str().unwrap(), dest.to_str().unwrap(), &size]);
    sh("mkfs.ext4", &args, work);
}

/// An MBR disk (disk id 5eed1234, partitions 4 MiB aligned like Pi OS) from a FAT boot
/// partition and an ext4 root partition image.
pub fn assemble_disk(path: &Path, boot: &Path, root: &Path) {
    let len = |p: &Path| fs::metadata(p).unwrap().len();
    let boot_start = 4 * MIB;
    let root_start = boot_start + len(boot).div_ceil(MIB) * MIB;
    let total = root_start + len(root).div_ceil(MIB) * MIB;
    let mut disk = fs::File::create(path).unwrap();
    disk.set_len(total).unwrap();
    let mut mbr = [0u8; 512];
    mbr[440..444].copy_from_slice(&0x5eed_1234u32.to_le_bytes());
    let entry = |start: u64, len: u64, kind: u8| {
        let mut e = [0u8; 16];
        e[4] = kind;
        e[8..12].copy_from_slice(&u32::try_from(start / 512).unwrap().to_le_bytes());
        e[12..16].copy_from_slice(&u32::try_from(len / 512).unwrap().to_le_bytes());
        e
    };
    mbr[446..462].copy_from_slice(&entry(boot_start, root_start - boot_start, 0x0c));
    mbr[462..478].copy_from_slice(&entry(root_start, total - root_start, 0x83));
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    disk.write_all(&mbr).unwrap();
    for (start, part) in [(boot_start, boot), (root_start, root)] {
        disk.seek(SeekFrom::Start(start)).unwrap();
        std::io::copy(&mut fs::File::open(part).unwrap(), &mut disk).unwrap();
    }
    disk.sync_all().unwrap();
}

/// A Pi OS-like disk image from a directory of boot files and a root filesystem tree
/// (mkfs.vfat + mcopy, mkfs.ext4 -d: nothing is mounted).
pub fn disk_from_trees(work: &Path, path: &Path, boot_files: &Path, rootfs: &Path) {
    let boot = work.join("boot.fat");
    let root = work.join("root.ext4");
    let _ = fs::remove_file(&boot);
    let _ = fs::remove_file(&root);
    let used_mib = |dir: &Path| {
        let out = sh(
            "du",
            &["-s", "-m", "--apparent-size", dir.to_str().unwrap()],
            work,
        );
        out.split_whitespace()
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let boot_mib = (used_mib(boot_files) + 16).max(64);
    sh(
        "mkfs.vfat",
        &[
            "-F",
            "32",
            "-n",
            "bootfs",
            "-C",
            boot.to_str().unwrap(),
            &(boot_mib * 1024).to_string(),
        ],
        work,
    );
    for e in fs::read_dir(boot_files).unwrap().flatten() {
        sh(
            "mcopy",
            &[
                "-s",
                "-i",
                boot.to_str().unwrap(),
                e.path().to_str().unwrap(),
                "::/",
            ],
            work,
        );
    }
    mkfs_ext4(work, rootfs, &root, used_mib(rootfs) * 13 / 10 + 64, &[]);
    assemble_disk(path, &boot, &root);
    let _ = fs::remove_file(&boot);
    let _ = fs::remove_file(&root);
}

/// A test workspace: `deploy/` and `out/` under a temp dir.
pub struct Workspace {
    pub tmp: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        let ws = Self {
            tmp: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(ws.deploy()).unwrap();
        ws
    }

    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    pub fn deploy(&self) -> PathBuf {
        self.root().join("deploy")
    }

    pub fn out(&self) -> PathBuf {
        self.root().join("out")
    }

    /// Places the test image in deploy/ at `rel` as a raw `.img`.
    pub fn put_img(&self, rel: &str) -> PathBuf {
        let dest = self.deploy().join(rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(pi_like_image(), &dest).unwrap();
        dest
    }

    /// Places a pi-gen style zip `deploy/<zip_rel>` holding `<entry>`.
    pub fn put_zip(&self, zip_rel: &str, entry: &str) -> PathBuf {
        let staging = self.root().join("staging");
        fs::create_dir_all(&staging).unwrap();
        fs::copy(pi_like_image(), staging.join(entry)).unwrap();
        let dest = self.deploy().join(zip_rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        sh(
            "zip",
            &[
                "-q",
                "-j",
                dest.to_str().unwrap(),
                staging.join(entry).to_str().unwrap(),
            ],
            &staging,
        );
        fs::remove_file(staging.join(entry)).unwrap();
        dest
    }

    pub fn put_gz(&self, rel: &str) -> PathBuf {
        let raw = self.put_img(rel.trim_end_matches(".gz"));
        sh("gzip", &["-1", raw.to_str().unwrap()], self.root());
        raw.with_extension("img.gz")
    }

    pub fn put_xz(&self, rel: &str) -> PathBuf {
        let raw = self.put_img(rel.trim_end_matches(".xz"));
        sh("xz", &["-0", "-T1", raw.to_str().unwrap()], self.root());
        raw.with_extension("img.xz")
    }

    /// `collect-artifacts` with fast settings and the outputs in `out/`.
    pub fn collect(&self) -> Command {
        let mut cmd = pi_image(self.root());
        cmd.args([
            "collect-artifacts",
            "--xz-preset",
            "0",
            "--output-dir",
            "out",
        ]);
        cmd
    }

    /// Names of every file under `dir`, recursively, sorted.
    pub fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = walk(dir)
            .into_iter()
            .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
            .collect();
        v.sort();
        v
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Path to check-jsonschema: `CHECK_JSONSCHEMA`, the repo's `.venv`, or PATH.
pub fn check_jsonschema() -> PathBuf {
    if let Some(p) = std::env::var_os("CHECK_JSONSCHEMA") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/check-jsonschema");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("check-jsonschema")
}

/// `bmaptool copy --bmap BMAP IMAGE CARD`, which checks every range's checksum and the
/// bmap's own as it writes; fails the test unless it succeeds.
pub fn bmaptool_copy(bmap: &Path, image: &Path, card: &Path) {
    let out = Command::new("bmaptool")
        .args(["copy", "--bmap"])
        .arg(bmap)
        .arg(image)
        .arg(card)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bmaptool (run the README's test command): {e}"));
    assert!(
        out.status.success(),
        "bmaptool copy {}: {}",
        bmap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fails the test unless check-jsonschema accepts `file` against `schema`. With
/// `references`, the schema's `$ref`s resolve from that directory (vendored schemas,
/// never fetched).
pub fn assert_schema_valid(schema: &Path, file: &Path, references: Option<&Path>) {
    let mut cmd = Command::new(check_jsonschema());
    cmd.arg("--schemafile").arg(schema);
    if let Some(dir) = references {
        cmd.arg("--base-uri")
            .arg(format!("file://{}/", dir.display()));
    }
    let out = cmd.arg(file).output().unwrap_or_else(|e| {
        panic!("check-jsonschema is missing (run the README's test command): {e}")
    });
    assert!(
        out.status.success(),
        "{} against {}: {}{}",
        file.display(),
        schema.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The repository root (for schemas).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Lowercase hex SHA-256 of bytes.
pub fn hex_sha256(data: &[u8]) -> String {
    github::sha256_hex(data)
}
