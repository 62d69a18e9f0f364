//! `prepare-mirrors`' decision: every file it writes into the pi-gen tree (the hook,
//! its configuration, the apt options, the stage and export steps), every checkout file
//! it points at the chosen mirrors or restores, and what an earlier run left that goes.
//! Pure: it works on the input and on what [`super::gather`] read and probed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::mirrors::{self, AptOption, Archive};
use super::{
    ArchivePlan, EXPORT_STEP, Facts, HOOK_SCRIPT, HOOK_STAGES, Input, MARKER, Patchable, SUBSTAGE,
};
use crate::error::usage;

/// A file to write into the pi-gen tree, relative to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeFile {
    pub path: PathBuf,
    pub contents: String,
    pub executable: bool,
}

/// Everything `run()` will write.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub archives: Vec<ArchivePlan>,
    pub files: Vec<TreeFile>,
    /// pi-gen files pointed at the chosen mirrors (debootstrap's URL in `stage0/prerun.sh`,
    /// the source templates `stage0/00-configure-apt` installs), or restored.
    pub patches: Vec<(PathBuf, String)>,
    /// Generated files of an earlier run that this plan does not write.
    pub remove: Vec<PathBuf>,
}

fn conf_file(input: &Input, archives: &[ArchivePlan]) -> String {
    let mut s = format!(
        "# pi-image apt mirrors. {MARKER}; read (never sourced) by\n\
         # /usr/local/sbin/pi-image-apt-mirrors. Lines: mirror ARCHIVE URL (candidates in\n\
         # order of preference), upstream ARCHIVE URL (restored at export).\n\
         probe-timeout {}\n",
        input.probes.timeout.as_secs()
    );
    for a in archives {
        for c in &a.candidates {
            s.push_str(&format!("mirror {} {c}\n", a.archive.key()));
        }
        s.push_str(&format!("upstream {} {}\n", a.archive.key(), a.upstream));
    }
    s
}

fn state_file(archives: &[ArchivePlan]) -> String {
    archives
        .iter()
        .map(|a| format!("{} {}\n", a.archive.key(), a.chosen))
        .collect()
}

/// The apt.conf.d files the stage steps install, by name.
fn apt_conf_files(input: &Input, archives: &[ArchivePlan]) -> Vec<(&'static str, String)> {
    let hook = "/usr/local/sbin/pi-image-apt-mirrors";
    let mut files = vec![
        (
            "10pi-image-mirrors",
            format!(
                "// {MARKER}: keeps apt on a healthy mirror while the image is built\n\
                 // (removed from the image at export).\n\
                 APT::Update::Pre-Invoke {{ \"[ ! -x {hook} ] || {hook} update\"; }};\n\
                 DPkg::Pre-Invoke {{ \"[ ! -x {hook} ] || {hook} rewrite\"; }};\n"
            ),
        ),
        ("80pi-image-apt", apt_options_file(&input.apt_options)),
    ];
    if input.probes.proxy.is_some() {
        let mut s = format!(
            "// {MARKER}: the Raspberry Pi archive is fetched without the proxy (APT_PROXY).\n"
        );
        let mut hosts = vec!["archive.raspberrypi.com".to_owned()];
        for a in archives
            .iter()
            .filter(|a| a.archive == Archive::RaspberryPi)
        {
            let h = crate::mirror_url::host_of(&a.chosen);
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
        for h in hosts {
            s.push_str(&format!("Acquire::http::Proxy::{h} \"DIRECT\";\n"));
            s.push_str(&format!("Acquire::https::Proxy::{h} \"DIRECT\";\n"));
        }
        files.push(("81pi-image-proxy", s));
    }
    files
}

/// apt.conf syntax for the options (values were checked to hold no `"` or `;`).
pub fn apt_options_file(options: &[AptOption]) -> String {
    let mut s = format!(
        "// {MARKER}: apt hardening for the image build (retries and\n\
         // timeouts), with APT_OPTS merged over the defaults. Nothing here changes which\n\
         // packages are installed: pi-gen's NN-packages install recommends, NN-packages-nr not.\n"
    );
    for o in options {
        s.push_str(&format!("{} \"{}\";\n", o.key, o.value));
    }
    s
}

/// The guard both scripts start with (`templates/no-symlinked-dirs.sh`).
const NO_SYMLINKED_DIRS: &str = include_str!("templates/no-symlinked-dirs.sh");

/// `00-run.sh` of our sub-stage in stage0 and stage2 (`templates/stage-run.sh`). Both
/// templates first refuse a root filesystem whose apt directories are symlinks: they
/// run on the build host, where such a link would lead outside the image.
fn stage_script(with_proxy: bool) -> String {
    let proxy_line = if with_proxy {
        "install -m 644 files/apt.conf.d/81pi-image-proxy \"${ROOTFS_DIR}/etc/apt/apt.conf.d/81pi-image-proxy\""
    } else {
        "rm -f \"${ROOTFS_DIR}/etc/apt/apt.conf.d/81pi-image-proxy\""
    };
    include_str!("templates/stage-run.sh")
        .replace("@NO_SYMLINKED_DIRS@\n", NO_SYMLINKED_DIRS)
        .replace("@MARKER@", MARKER)
        .replace("@PROXY_LINE@", proxy_line)
}

/// The export step that restores upstream sources (`templates/export-run.sh`).
fn export_script() -> String {
    include_str!("templates/export-run.sh")
        .replace("@NO_SYMLINKED_DIRS@\n", NO_SYMLINKED_DIRS)
        .replace("@MARKER@", MARKER)
        .replace("@SUBSTAGE@", SUBSTAGE)
}

/// `text` with every URL that names an in-use archive replaced by that archive's target
/// (on `bootstrap` lines only, when `bootstrap_only`). `None` when nothing changes.
pub fn patch_urls(
    text: &str,
    known: &BTreeMap<Archive, Vec<String>>,
    chosen: &BTreeMap<Archive, String>,
    bootstrap_only: bool,
) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    for line in text.split_inclusive('\n') {
        if bootstrap_only && !line.trim_start().starts_with("bootstrap") {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        for url in mirrors::urls_in(line) {
            let Some(i) = rest.find(url) else { continue };
            out.push_str(&rest[..i]);
            let target = mirrors::classify(url, known)
                .and_then(|a| chosen.get(&a))
                .filter(|t| t.as_str() != url.trim_end_matches('/'));
            match target {
                Some(t) => {
                    out.push_str(t);
                    if url.ends_with('/') && !t.starts_with("mirror+") {
                        out.push('/');
                    }
                    changed = true;
                }
                None => out.push_str(url),
            }
            rest = &rest[i + url.len()..];
        }
        out.push_str(rest);
    }
    changed.then_some(out)
}

/// The apt source URI of an archive during the build: its mirror list in the root
/// filesystem, which the hook keeps with the active mirror first.
pub fn mirror_list_uri(archive: Archive) -> String {
    format!(
        "mirror+file:/etc/apt/pi-image-mirrors/{}.list",
        archive.key()
    )
}

/// Where the upstream text of a patched file is kept (inside our sub-stage, so a re-run
/// with other mirrors, or SKIP_MIRROR_REWRITE, starts from it or restores it).
pub(super) fn upstream_copy(rel: &Path) -> PathBuf {
    PathBuf::from("stage0")
        .join(SUBSTAGE)
        .join("upstream")
        .join(rel)
}

/// The files to write and remove, given what was read and probed.
pub fn plan(input: &Input, facts: &Facts) -> anyhow::Result<Plan> {
    let dir = &input.pi_gen_dir;
    let tree = &facts.tree;
    let archives = facts.archives.clone();
    let mut files = Vec::new();
    let mut remove = Vec::new();
    let export_step = PathBuf::from(EXPORT_STEP);
    if tree.export_step == Some(false) {
        return Err(usage(format!(
            "`{}` exists and was not written by pi-image: this pi-gen already has a step there; refusing to overwrite it",
            dir.join(&export_step).display()
        )));
    }
    for (stage, ours) in &tree.substages {
        if *ours == Some(false) {
            return Err(usage(format!(
                "`{}` exists and was not written by pi-image; refusing to replace it",
                dir.join(stage).join(SUBSTAGE).display()
            )));
        }
    }
    let texts = tree.texts.clone();
    if input.skip {
        let patches = texts
            .into_iter()
            .filter_map(|t| {
                t.pristine
                    .filter(|p| Some(p) != t.current.as_ref())
                    .map(|p| (t.rel, p))
            })
            .collect();
        for (stage, ours) in &tree.substages {
            if ours.is_some() {
                remove.push(PathBuf::from(stage).join(SUBSTAGE));
            }
        }
        if tree.export_step.is_some() {
            remove.push(export_step);
        }
        return Ok(Plan {
            archives,
            files,
            patches,
            remove,
        });
    }
    let conf = conf_file(input, &archives);
    let state = state_file(&archives);
    let apt_conf = apt_conf_files(input, &archives);
    let script = stage_script(input.probes.proxy.is_some());
    for stage in HOOK_STAGES {
        if !tree.stage_dirs.contains(&stage) {
            continue;
        }
        let base = PathBuf::from(stage).join(SUBSTAGE);
        let mut add = |rel: &str, contents: &str, executable: bool| {
            files.push(TreeFile {
                path: base.join(rel),
                contents: contents.to_owned(),
                executable,
            });
        };
        add("00-run.sh", &script, true);
        add("files/pi-image-apt-mirrors", HOOK_SCRIPT, true);
        add("files/pi-image-mirrors.conf", &conf, false);
        add("files/pi-image-mirrors.state", &state, false);
        for (name, text) in &apt_conf {
            add(&format!("files/apt.conf.d/{name}"), text, false);
        }
    }
    if files.is_empty() {
        return Err(usage(format!(
            "`{}` has neither stage0 nor stage2: point --pi-gen-dir at a pi-gen checkout",
            dir.display()
        )));
    }
    if input.keep {
        if tree.export_step.is_some() {
            remove.push(export_step);
        }
    } else if tree.set_sources && tree.stage_dirs.contains(&"stage0") {
        files.push(TreeFile {
            path: export_step,
            contents: export_script(),
            executable: true,
        });
    }
    let chosen: BTreeMap<Archive, String> = archives
        .iter()
        .map(|a| (a.archive, a.chosen.clone()))
        .collect();
    // apt sources name the archive's mirror list (apt fails over between its candidates
    // within one call); debootstrap cannot read one and gets the chosen mirror itself.
    let lists: BTreeMap<Archive, String> = archives
        .iter()
        .map(|a| (a.archive, mirror_list_uri(a.archive)))
        .collect();
    let known = input.known();
    let mut patches = Vec::new();
    for Patchable {
        rel,
        bootstrap_only,
        current,
        pristine,
    } in texts
    {
        let Some(pristine) = pristine else { continue };
        let targets = if bootstrap_only { &chosen } else { &lists };
        match patch_urls(&pristine, &known, targets, bootstrap_only) {
            Some(wanted) => {
                files.push(TreeFile {
                    path: upstream_copy(&rel),
                    contents: pristine,
                    executable: false,
                });
                if current.as_ref() != Some(&wanted) {
                    patches.push((rel, wanted));
                }
            }
            None if current.as_ref() != Some(&pristine) => patches.push((rel, pristine)),
            None => {}
        }
    }
    Ok(Plan {
        archives,
        files,
        patches,
        remove,
    })
}
