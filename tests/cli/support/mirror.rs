//! Loopback apt mirrors for `prepare-mirrors`: a real, signed apt repository built with
//! dpkg-deb, apt-ftparchive and gpg, served on 127.0.0.1 by a small HTTP/1.1 server that
//! is healthy, answers 503, or accepts connections and never answers.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::sh;

pub const SUITE: &str = "bookworm";
pub const PACKAGE: &str = "pi-image-test";
/// A package PACKAGE recommends.
pub const RECOMMENDED: &str = "pi-image-test-recommended";

/// The served tree: the same repository under `/raspbian`, `/debian` and `/rpi`, so one
/// server can stand in for a mirror of each archive. Built once per test run.
pub fn repo() -> &'static Path {
    static REPO: OnceLock<PathBuf> = OnceLock::new();
    REPO.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Repositories of earlier runs (a fresh key each time) are not reused.
        for old in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
            if old.file_name().to_string_lossy().starts_with("apt-mirror-") {
                let _ = std::fs::remove_dir_all(old.path());
            }
        }
        let work = tmp.join(format!("apt-mirror-{}", std::process::id()));
        let root = work.join("www");
        let repo = root.join("raspbian");
        let pool = repo.join("pool/main");
        std::fs::create_dir_all(&pool).unwrap();
        // PACKAGE recommends RECOMMENDED: what apt installs shows whether the build's
        // apt configuration changed pi-gen's recommends rule.
        for (name, extra) in [
            (PACKAGE, format!("Recommends: {RECOMMENDED}\n")),
            (RECOMMENDED, String::new()),
        ] {
            let pkg = work.join("pkg").join(name);
            std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
            std::fs::create_dir_all(pkg.join("usr/share/doc").join(name)).unwrap();
            std::fs::write(
                pkg.join("DEBIAN/control"),
                format!(
                    "Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: pi-image tests <tests@example.org>\n{extra}Description: a package served by the loopback mirror\n"
                ),
            )
            .unwrap();
            std::fs::write(pkg.join("usr/share/doc").join(name).join("README"), "test\n").unwrap();
            sh(
                "dpkg-deb",
                &[
                    "--root-owner-group",
                    "-Zgzip",
                    "--build",
                    pkg.to_str().unwrap(),
                    pool.join(format!("{name}_1.0_all.deb")).to_str().unwrap(),
                ],
                &work,
            );
        }
        let dist = repo.join("dists").join(SUITE);
        let bin = dist.join("main/binary-amd64");
        std::fs::create_dir_all(&bin).unwrap();
        let packages = sh("apt-ftparchive", &["packages", "pool"], &repo);
        std::fs::write(bin.join("Packages"), &packages).unwrap();
        sh("gzip", &["-k", "-n", "Packages"], &bin);
        let release = sh(
            "apt-ftparchive",
            &[
                "-o",
                &format!("APT::FTPArchive::Release::Suite={SUITE}"),
                "-o",
                &format!("APT::FTPArchive::Release::Codename={SUITE}"),
                "-o",
                "APT::FTPArchive::Release::Architectures=amd64",
                "-o",
                "APT::FTPArchive::Release::Components=main",
                "release",
                ".",
            ],
            &dist,
        );
        std::fs::write(dist.join("Release"), &release).unwrap();
        let gnupg = work.join("gnupg");
        std::fs::create_dir_all(&gnupg).unwrap();
        std::fs::set_permissions(
            &gnupg,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let gpg = |args: &[&str], dir: &Path| {
            let out = std::process::Command::new("gpg")
                .env("GNUPGHOME", &gnupg)
                .args(["--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""])
                .args(args)
                .current_dir(dir)
                .output()
                .expect("gpg runs");
            assert!(
                out.status.success(),
                "gpg {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        gpg(
            &[
                "--quick-gen-key",
                "pi-image test mirror <tests@example.org>",
                "ed25519",
                "sign",
                "never",
            ],
            &work,
        );
        gpg(&["--clearsign", "-o", "InRelease", "Release"], &dist);
        let key = gpg(&["--export"], &work);
        std::fs::write(work.join("keyring.gpg"), key).unwrap();
        // gpg leaves an agent running for the home directory; stop it.
        let _ = std::process::Command::new("gpgconf")
            .env("GNUPGHOME", &gnupg)
            .args(["--kill", "gpg-agent"])
            .status();
        std::os::unix::fs::symlink("raspbian", root.join("debian")).unwrap();
        std::os::unix::fs::symlink("raspbian", root.join("rpi")).unwrap();
        root
    })
}

/// The key the repository is signed with (for `signed-by=`).
pub fn keyring() -> PathBuf {
    repo().parent().unwrap().join("keyring.gpg")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Healthy,
    Unavailable,
    Hang,
}

/// A running loopback mirror.
pub struct Mirror {
    pub base: String,
    hits: Arc<AtomicUsize>,
}

impl Mirror {
    pub fn start(behaviour: Behaviour) -> Self {
        let root = repo().to_path_buf();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                if behaviour == Behaviour::Hang {
                    h.fetch_add(1, Ordering::SeqCst);
                    held.push(stream);
                } else {
                    let root = root.clone();
                    let h = h.clone();
                    std::thread::spawn(move || serve(stream, &root, behaviour, &h));
                }
            }
        });
        Self { base, hits }
    }

    /// Requests (or, for a hanging mirror, connections) seen so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn url(&self, archive_path: &str) -> String {
        format!("{}/{archive_path}", self.base)
    }
}

fn serve(stream: TcpStream, root: &Path, behaviour: Behaviour, hits: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        if content_length > 0 {
            let mut body = vec![0; content_length];
            let _ = reader.read_exact(&mut body);
        }
        hits.fetch_add(1, Ordering::SeqCst);
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let (status, body) = if behaviour == Behaviour::Unavailable {
            ("503 Service Unavailable", b"mirror down\n".to_vec())
        } else {
            let rel = path.trim_start_matches('/');
            let file = root.join(rel);
            match (rel.contains(".."), std::fs::read(&file)) {
                (false, Ok(bytes)) => ("200 OK", bytes),
                _ => ("404 Not Found", b"not found\n".to_vec()),
            }
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
            body.len()
        );
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
        if method != "HEAD" && out.write_all(&body).is_err() {
            return;
        }
    }
}
