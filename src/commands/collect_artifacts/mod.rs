//! `collect-artifacts`: turn whatever pi-gen left in `deploy/` into
//! `OUTPUT_DIR/IMG_NAME.img.xz`, its `.sha256` and its metadata, streaming, in one pass.

mod blockmap;
pub mod discover;
mod inventory;
pub mod pipeline;
mod plan;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};

use self::discover::{Candidate, Format};
use self::pipeline::{Origin, Streamed};
pub use self::plan::{Action, Plan, plan};
use crate::atomic::{self, AtomicFile};
use crate::checksum::checksum_line;
use crate::config::{ArtifactPaths, ImageArgs, file_name};
use crate::error::usage;
use crate::gha::{Gha, StepReport, md_cell, md_text};
use crate::model::metadata::{Compression, ImageInfo, InventoryInfo, Metadata, SourceInfo};
use crate::model::{self, SCHEMA_VERSION, to_canonical_json};
use crate::progress::Progress;
use crate::units::human_size;
use crate::xz::{Preset, resolve_threads};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub image: ImageArgs,
    /// pi-gen's deploy directory; images are searched at most --max-depth levels down
    #[arg(long, env = "DEPLOY_DIR", default_value = "deploy")]
    pub deploy_dir: PathBuf,
    /// How deep to search the deploy directory
    #[arg(long, env = "MAX_SCAN_DEPTH", default_value_t = 6)]
    pub max_depth: usize,
    /// Which image to take when pi-gen exported several: a path under the deploy
    /// directory, a file name, an image name (`sugarkube-lite`) or a suffix (`-lite`)
    #[arg(
        long = "image",
        value_name = "NAME|SUFFIX|PATH",
        allow_hyphen_values = true
    )]
    pub select: Option<String>,
    /// xz preset: 0-9, optionally followed by `e` (e.g. 9e)
    #[arg(long, env = "XZ_PRESET", default_value = "6")]
    pub xz_preset: Preset,
    /// Compression threads, 0-256 (0 = one per core). Each holds blocks of tens of MiB,
    /// so the bound keeps a typo from exhausting memory.
    #[arg(long, env = "XZ_THREADS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=256))]
    pub threads: u32,
    /// Move an existing .img.xz instead of copying it (it is verified first)
    #[arg(long = "move")]
    pub move_source: bool,
    /// Write no SBOM and package lock (they are read from the image's root file system)
    #[arg(long)]
    pub no_sbom: bool,
    /// Write no block map for bmaptool (IMG_NAME.img.bmap)
    #[arg(long)]
    pub no_bmap: bool,
    /// Owner for the outputs, UID:GID [default: SUDO_UID:SUDO_GID when run as root via sudo]
    #[arg(long, value_name = "UID:GID")]
    pub chown: Option<String>,
    /// pi-gen checkout, to find work/IMG_NAME/build.log
    #[arg(long, env = "PI_GEN_DIR")]
    pub pi_gen_dir: Option<PathBuf>,
    /// pi-gen's build.log, if it is not in a standard place
    #[arg(long, env = "BUILD_LOG")]
    pub build_log: Option<PathBuf>,
}

/// Validated input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub paths: ArtifactPaths,
    pub deploy_dir: PathBuf,
    pub max_depth: usize,
    pub select: Option<String>,
    pub preset: Preset,
    pub threads: u32,
    pub move_source: bool,
    pub no_sbom: bool,
    pub no_bmap: bool,
    pub chown: Option<(u32, u32)>,
    pub pi_gen_dir: Option<PathBuf>,
    pub build_log: Option<PathBuf>,
}

impl Input {
    pub fn from_args(args: Args, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let paths = args.image.artifact_paths()?;
        if args.max_depth == 0 {
            return Err(usage("--max-depth must be at least 1"));
        }
        let chown = match args.chown.as_deref() {
            Some(spec) => Some(parse_owner(spec)?),
            None => default_owner(rustix::process::geteuid().is_root(), env),
        };
        if let Some(log) = &args.build_log
            && !log.is_file()
        {
            return Err(usage(format!(
                "build log `{}` (--build-log) does not exist",
                log.display()
            )));
        }
        Ok(Self {
            paths,
            deploy_dir: args.deploy_dir,
            max_depth: args.max_depth,
            select: args.select.filter(|s| !s.is_empty()),
            preset: args.xz_preset,
            threads: args.threads,
            move_source: args.move_source,
            no_sbom: args.no_sbom,
            no_bmap: args.no_bmap,
            chown,
            pi_gen_dir: args.pi_gen_dir,
            build_log: args.build_log,
        })
    }
}

fn parse_owner(spec: &str) -> anyhow::Result<(u32, u32)> {
    let parsed = spec
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
    parsed.ok_or_else(|| {
        usage(format!(
            "--chown `{spec}` is not UID:GID (two numbers, e.g. 1000:1000)"
        ))
    })
}

/// Under `sudo`, root-owned outputs would lock the invoking user out of their own
/// artifacts, so they are handed back to `SUDO_UID:SUDO_GID`.
fn default_owner(is_root: bool, env: impl Fn(&str) -> Option<String>) -> Option<(u32, u32)> {
    if !is_root {
        return None;
    }
    let uid = env("SUDO_UID")?.parse().ok()?;
    let gid = env("SUDO_GID")?.parse().ok()?;
    Some((uid, gid))
}

/// What was found on disk before planning.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub candidates: Vec<Candidate>,
    pub all_files: Vec<String>,
    /// Entries with an image's name that were not taken, each `rel: why`.
    pub skipped: Vec<String>,
    /// Candidate paths that are the output image itself (a re-run in place).
    pub output_is: Option<PathBuf>,
    pub build_log: Option<PathBuf>,
}

/// Looks at the disk: candidates, whether the output is among them, the build log.
pub fn gather(input: &Input) -> anyhow::Result<Facts> {
    let discover::Scan {
        candidates,
        all_files,
        skipped,
    } = discover::scan(&input.deploy_dir, input.max_depth)?;
    let output = std::fs::canonicalize(&input.paths.image).ok();
    let output_is = output.and_then(|out| {
        candidates
            .iter()
            .find(|c| std::fs::canonicalize(&c.path).ok().as_ref() == Some(&out))
            .map(|c| c.path.clone())
    });
    Ok(Facts {
        candidates,
        all_files,
        skipped,
        output_is,
        build_log: find_build_log(input),
    })
}

/// pi-gen writes `work/<IMG_NAME>/build.log` in its checkout; Docker builds copy it to
/// `deploy/build.log`.
fn find_build_log(input: &Input) -> Option<PathBuf> {
    if let Some(explicit) = &input.build_log {
        return Some(explicit.clone());
    }
    let work = Path::new("work")
        .join(&input.paths.img_name)
        .join("build.log");
    let mut places = Vec::new();
    if let Some(dir) = &input.pi_gen_dir {
        places.push(dir.join(&work));
    }
    places.push(input.deploy_dir.join("build.log"));
    places.push(input.deploy_dir.join("..").join(&work));
    // Whatever is there is taken, and opened as every input is: a FIFO or a link out of
    // its directory is refused by name rather than passed over in silence.
    places
        .into_iter()
        .find(|p| std::fs::symlink_metadata(p).is_ok())
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub image_path: PathBuf,
    pub checksum_path: PathBuf,
    pub metadata_path: PathBuf,
    pub build_log_path: Option<PathBuf>,
    pub source: String,
    pub sha256: String,
    pub size: u64,
    pub raw_sha256: String,
    pub raw_size: u64,
    pub inventory: InventoryInfo,
    pub sbom_path: Option<PathBuf>,
    pub cyclonedx_path: Option<PathBuf>,
    pub lock_path: Option<PathBuf>,
    pub bmap_path: Option<PathBuf>,
    pub seconds: f64,
}

/// collect-artifacts' step outputs.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Outputs {
    /// The .img.xz
    pub image_path: String,
    /// Its .sha256
    pub checksum_path: String,
    /// The metadata JSON
    pub metadata_path: String,
    /// The copied build log (empty if none)
    pub build_log_path: String,
    /// SHA-256 of the .img.xz
    pub sha256: String,
    /// Size of the .img.xz in bytes
    pub size: String,
    /// SHA-256 of the raw image
    pub raw_sha256: String,
    /// Size of the raw image in bytes
    pub raw_size: String,
    /// The SBOM, SPDX 2.3 JSON (empty if none: see the warning and the metadata)
    pub sbom_path: String,
    /// The same inventory as a CycloneDX 1.6 BOM (empty if none)
    pub cyclonedx_path: String,
    /// The package lock (empty if none)
    pub lock_path: String,
    /// How many packages are installed in the image (empty if unknown)
    pub packages: String,
    /// The block map for bmaptool (empty if none)
    pub bmap_path: String,
}

impl StepReport for Outcome {
    type Outputs = Outputs;
    fn outputs(&self) -> Outputs {
        Outputs {
            image_path: self.image_path.display().to_string(),
            checksum_path: self.checksum_path.display().to_string(),
            metadata_path: self.metadata_path.display().to_string(),
            build_log_path: self
                .build_log_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            sha256: self.sha256.clone(),
            size: self.size.to_string(),
            raw_sha256: self.raw_sha256.clone(),
            raw_size: self.raw_size.to_string(),
            sbom_path: path_or_empty(self.sbom_path.as_deref()),
            cyclonedx_path: path_or_empty(self.cyclonedx_path.as_deref()),
            lock_path: path_or_empty(self.lock_path.as_deref()),
            packages: self
                .inventory
                .packages
                .map(|n| n.to_string())
                .unwrap_or_default(),
            bmap_path: path_or_empty(self.bmap_path.as_deref()),
        }
    }

    fn summary(&self) -> String {
        format!(
            "### collect-artifacts\n\n| Artifact | Size | SHA-256 | Raw image SHA-256 | From |\n| --- | --- | --- | --- | --- |\n\
             | `{}` | {} ({} raw) | `{}` | `{}` | `{}` |\n\n",
            md_cell(&file_name(&self.image_path)),
            human_size(self.size),
            human_size(self.raw_size),
            self.sha256,
            self.raw_sha256,
            md_cell(&self.source),
        ) + &match (&self.inventory.sbom, &self.inventory.reason) {
            (Some(sbom), _) => format!(
                "SBOM: `{}` ({} packages, {}); package lock: `{}`\n\n",
                md_cell(&sbom.path),
                self.inventory.packages.unwrap_or_default(),
                md_text(self.inventory.os.as_deref().unwrap_or_default()),
                md_cell(
                    &self
                        .inventory
                        .lock
                        .as_ref()
                        .map(|l| l.path.clone())
                        .unwrap_or_default()
                ),
            ),
            (None, reason) => format!(
                "No SBOM: {}\n\n",
                md_text(reason.as_deref().unwrap_or_default())
            ),
        }
    }
}

fn path_or_empty(p: Option<&Path>) -> String {
    p.map(|p| p.display().to_string()).unwrap_or_default()
}

/// Performs the plan: writes the image, checksum, build log copy and metadata.
pub fn run(gha: &Gha, input: &Input, plan: &Plan) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let paths = &input.paths;
    let created_dirs = create_dir_all_tracked(&paths.dir)?;
    // One run per output directory at a time; under the lock, partial files are a dead
    // run's and safe to remove.
    let lock = atomic::DirLock::acquire(&paths.dir)?;
    for dest in paths.collected() {
        atomic::remove_stale_partials(dest, &lock);
    }
    for note in &plan.notes {
        tracing::info!("{note}");
    }
    for skipped in &plan.skipped {
        tracing::warn!("skipped `{skipped}`");
    }
    for old in &plan.ignored {
        tracing::warn!("ignoring `{}`: an older export of the same image", old.rel);
    }
    let source = &plan.source;
    let _group = gha.group(&format!(
        "collect-artifacts: {} → {}",
        source.rel,
        paths.image.display()
    ));
    tracing::info!(
        "found image source: {} ({})",
        source.path.display(),
        source.format.as_str()
    );

    // Everything is written under temporary names first, then the image, its checksum,
    // its metadata and the build log replace the previous ones as one set.
    let mut set = atomic::FileSet::new();
    // --move onto another file system: copied (verified on the way), and the source
    // removed once the new set is in place.
    let moving_across = plan.action == Action::MoveXz && !same_fs(&source.path, &paths.dir);
    let remove_after = moving_across.then(|| source.path.clone());
    let action = if moving_across {
        Action::CopyXz
    } else {
        plan.action
    };
    // pi-gen's bmap is checked against the raw image as it streams past.
    let mut pi_gen_bmap = plan
        .pi_gen_bmap
        .as_deref()
        .map(|p| blockmap::PiGenBmap::load(p, &input.deploy_dir));
    let mut tap = |bytes: &[u8]| {
        if let Some(b) = pi_gen_bmap.as_mut() {
            b.update(bytes);
        }
    };
    // Each arm also says where the image can be read again for its inventory: the raw
    // source if there is one, else the .img.xz as it now is on disk.
    let (streamed, entry, readable) = match action {
        Action::Compress => {
            let mut dest = AtomicFile::create(&paths.image)?;
            let (streamed, entry) = compress_source(gha, input, source, &mut dest, &mut tap)?;
            let readable = if source.format == Format::Img {
                inventory::Image::Raw(source.path.clone())
            } else {
                inventory::Image::Xz(dest.temp_path().to_path_buf())
            };
            set.add(dest);
            (streamed, entry, readable)
        }
        Action::CopyXz => {
            let mut dest = AtomicFile::create(&paths.image)?;
            let file = open(&source.path)?;
            let mut progress =
                Progress::new(gha.in_actions(), "verifying and copying", Some(source.size));
            let streamed = pipeline::verify_xz(
                file,
                &origin_of(source),
                dest.file(),
                &mut progress,
                &mut tap,
            )?;
            let readable = inventory::Image::Xz(dest.temp_path().to_path_buf());
            set.add(dest);
            (streamed, None, readable)
        }
        Action::MoveXz | Action::InPlace => {
            let file = open(&source.path)?;
            let mut progress = Progress::new(gha.in_actions(), "verifying", Some(source.size));
            let streamed = pipeline::verify_xz(
                file,
                &origin_of(source),
                std::io::sink(),
                &mut progress,
                &mut tap,
            )?;
            if action == Action::MoveXz {
                set.add_move(&source.path, &paths.image);
            } else {
                tracing::info!("source already at {}, skipping copy", paths.image.display());
            }
            (streamed, None, inventory::Image::Xz(source.path.clone()))
        }
    };
    set.add(prepare_checksum(paths, &streamed.out.sha256)?);

    let build_log = if let Some(log) = &plan.build_log {
        if let Some(copy) = copy_build_log(log, &paths.build_log, log_base(input, log))? {
            set.add(copy);
        }
        Some(paths.build_log.clone())
    } else {
        // A log beside the previous image is not this image's.
        set.add_removal(&paths.build_log);
        tracing::warn!(
            "no pi-gen build.log found (looked in --pi-gen-dir/work/{0}/build.log, {1}/build.log, {1}/../work/{0}/build.log); stage timings will be missing",
            paths.img_name,
            input.deploy_dir.display()
        );
        None
    };

    let generated_at = model::rfc3339(model::now()?);
    let image_file = file_name(&paths.image);
    let inventory = inventory::collect(
        input,
        &readable,
        &inventory::About {
            image_file: &image_file,
            raw_sha256: &streamed.raw.sha256,
            created: &generated_at,
        },
        &mut set,
    );
    let pi_gen_bmap = pi_gen_bmap.map(|b| b.finish(streamed.raw.size));
    let bmap = blockmap::collect(input, &readable, pi_gen_bmap, &mut set);
    let metadata = Metadata {
        schema_version: SCHEMA_VERSION,
        generated_at,
        image: ImageInfo {
            path: file_name(&paths.image),
            sha256: streamed.out.sha256.clone(),
            size_bytes: streamed.out.size,
            raw_sha256: streamed.raw.sha256.clone(),
            raw_size_bytes: streamed.raw.size,
            compression: Some(Compression {
                format: "xz".into(),
                preset: (plan.action == Action::Compress).then(|| input.preset.to_string()),
            }),
        },
        source: Some(SourceInfo {
            path: source.rel.clone(),
            format: source.format.as_str().into(),
            entry,
            size_bytes: source.size,
        }),
        checksum_path: file_name(&paths.checksum),
        build_log_path: build_log.as_ref().map(|p| file_name(p)),
        inventory: Some(inventory.clone()),
        bmap: Some(bmap.clone()),
        verifier: serde_json::json!({ "status": "not_run" }),
        ..Metadata::default()
    };
    let mut meta_file = AtomicFile::create(&paths.metadata)?;
    std::io::Write::write_all(meta_file.file(), to_canonical_json(&metadata)?.as_bytes())
        .with_context(|| format!("cannot write `{}`", meta_file.temp_path().display()))?;
    set.add(meta_file);
    atomic::check_interrupted()?;
    set.commit()?;
    if let Some(moved) = remove_after {
        std::fs::remove_file(&moved)
            .with_context(|| format!("cannot remove `{}` after moving it", moved.display()))?;
    }
    drop(lock);

    if let Some((uid, gid)) = plan.chown {
        let mut inventory_files: Vec<PathBuf> = if inventory.sbom.is_some() {
            vec![paths.sbom.clone(), paths.lock.clone()]
        } else {
            Vec::new()
        };
        if bmap.file.is_some() {
            inventory_files.push(paths.bmap.clone());
        }
        let targets = plan
            .outputs
            .iter()
            .chain(&inventory_files)
            .chain(&created_dirs);
        for t in targets {
            std::os::unix::fs::chown(t, Some(uid), Some(gid)).with_context(|| {
                format!(
                    "cannot change the owner of `{}` to {uid}:{gid}; run as root or drop --chown",
                    t.display()
                )
            })?;
        }
        tracing::info!("outputs now owned by {uid}:{gid}");
    }

    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        "wrote {} ({}, raw {}) in {seconds:.1} s",
        paths.image.display(),
        human_size(streamed.out.size),
        human_size(streamed.raw.size)
    );
    Ok(Outcome {
        image_path: paths.image.clone(),
        checksum_path: paths.checksum.clone(),
        metadata_path: paths.metadata.clone(),
        build_log_path: build_log,
        source: source.rel.clone(),
        sha256: streamed.out.sha256,
        size: streamed.out.size,
        raw_sha256: streamed.raw.sha256,
        raw_size: streamed.raw.size,
        sbom_path: inventory.sbom.is_some().then(|| paths.sbom.clone()),
        cyclonedx_path: inventory
            .cyclonedx
            .is_some()
            .then(|| paths.cyclonedx.clone()),
        lock_path: inventory.lock.is_some().then(|| paths.lock.clone()),
        bmap_path: bmap.file.is_some().then(|| paths.bmap.clone()),
        inventory,
        seconds,
    })
}

fn origin_of(c: &Candidate) -> Origin<'_> {
    Origin { what: &c.rel }
}

/// Opens a file of the deploy directory (a source image) or the build log, as every
/// input is opened ([`crate::input::open`]): no FIFO, device or escaping symlink.
fn open(path: &Path) -> anyhow::Result<File> {
    crate::input::open("collect-artifacts input", path, None).map(|(f, _)| f)
}

/// Streams the source (zip entry, gzip or raw image) into the xz encoder.
fn compress_source(
    gha: &Gha,
    input: &Input,
    source: &Candidate,
    dest: &mut AtomicFile,
    tap: pipeline::Tap<'_>,
) -> anyhow::Result<(Streamed, Option<String>)> {
    let threads = resolve_threads(input.threads);
    tracing::info!(
        "compressing with xz -{} using {threads} threads",
        input.preset
    );
    let file = open(&source.path)?;
    // The zip archive must outlive the entry reader borrowed from it.
    let mut archive;
    let (reader, what, total, entry): (Box<dyn Read + '_>, String, Option<u64>, Option<String>) =
        match source.format {
            Format::Zip => {
                archive = zip::ZipArchive::new(BufReader::with_capacity(1 << 16, file)).with_context(|| {
                    format!(
                        "cannot read zip `{}`: it is truncated or not a zip archive; rebuild the image",
                        source.path.display()
                    )
                })?;
                let index = pick_zip_entry(&mut archive, source, input.select.as_deref())?;
                let entry = archive.by_index(index).with_context(|| {
                    format!("cannot open the image inside `{}`", source.path.display())
                })?;
                let name = entry_name(&entry, source)?;
                let what = format!("`{name}` in zip `{}`", source.rel);
                let size = entry.size();
                (Box::new(entry), what, Some(size), Some(name))
            }
            Format::Gz => {
                let reader =
                    flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file));
                (
                    Box::new(reader),
                    format!("gzip `{}`", source.rel),
                    None,
                    None,
                )
            }
            Format::Img => (
                Box::new(file),
                format!("`{}`", source.rel),
                Some(source.size),
                None,
            ),
            Format::Xz => bail!("internal error: .img.xz sources are copied, not compressed"),
        };
    let mut progress = Progress::new(gha.in_actions(), "compressing", total);
    let s = pipeline::compress(
        reader,
        &Origin { what: &what },
        dest.file(),
        input.preset,
        threads,
        &mut progress,
        tap,
    )?;
    if let Some(total) = total
        && s.raw.size != total
    {
        bail!(
            "{what} gave {} bytes but its size is {total}: it changed while being read",
            s.raw.size
        );
    }
    Ok((s, entry))
}

/// The `.img` entry of a pi-gen zip. Every entry name is checked first: an archive
/// that names `..` or an absolute path is not trusted at all.
fn pick_zip_entry<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    source: &Candidate,
    select: Option<&str>,
) -> anyhow::Result<usize> {
    let mut images = Vec::new();
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .with_context(|| format!("cannot read entry {i} of zip `{}`", source.path.display()))?;
        let name = entry_name(&entry, source)?;
        if entry.enclosed_name().is_none() || name.starts_with('/') || name.contains('\\') {
            bail!(
                "zip `{}` has an unsafe entry name `{}` (absolute or containing `..`); refusing to use it",
                source.path.display(),
                name.escape_debug()
            );
        }
        if entry.is_file() && name.to_ascii_lowercase().ends_with(".img") {
            images.push((i, name));
        }
    }
    match images.len() {
        0 => bail!("zip contained no .img: {}", source.path.display()),
        1 => Ok(images[0].0),
        _ => {
            if let Some(sel) = select
                && let Some((i, _)) = images
                    .iter()
                    .find(|(_, n)| n == sel || n.ends_with(&format!("{sel}.img")))
            {
                return Ok(*i);
            }
            let names: Vec<_> = images.iter().map(|(_, n)| format!("  {n}")).collect();
            Err(usage(format!(
                "zip `{}` holds several .img files; choose one with --image:\n{}",
                source.path.display(),
                names.join("\n")
            )))
        }
    }
}

fn entry_name<R: Read>(
    entry: &zip::read::ZipFile<'_, R>,
    source: &Candidate,
) -> anyhow::Result<String> {
    entry
        .name()
        .map(std::borrow::Cow::into_owned)
        .with_context(|| {
            format!(
                "zip `{}` has an entry whose name cannot be read",
                source.path.display()
            )
        })
}

fn prepare_checksum(paths: &ArtifactPaths, sha256: &str) -> anyhow::Result<AtomicFile> {
    use std::io::Write as _;
    let mut file = AtomicFile::create(&paths.checksum)?;
    file.file()
        .write_all(checksum_line(sha256, &file_name(&paths.image)).as_bytes())
        .with_context(|| format!("cannot write `{}`", paths.checksum.display()))?;
    Ok(file)
}

/// Whether `a` and the directory `dir` are on one file system (a rename works).
fn same_fs(a: &Path, dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    matches!((std::fs::metadata(a), std::fs::metadata(dir)), (Ok(x), Ok(y)) if x.dev() == y.dev())
}

/// The directory a build log found by its conventional place must stay in: the pi-gen
/// checkout for `work/…`, the deploy directory (or its parent) otherwise, so a `work`
/// that is a symlink out of the checkout is refused. An explicit --build-log: None
/// (where it was named).
fn log_base<'a>(input: &'a Input, log: &Path) -> Option<&'a Path> {
    if input.build_log.is_some() {
        return None;
    }
    match &input.pi_gen_dir {
        Some(dir) if log.starts_with(dir) => Some(dir.as_path()),
        _ if log.starts_with(input.deploy_dir.join("..")) => input.deploy_dir.parent(),
        _ => Some(input.deploy_dir.as_path()),
    }
}

/// The last run of the build log, written under a temporary name next to `dest` (none
/// when the log already is `dest`).
fn copy_build_log(
    log: &Path,
    dest: &Path,
    base: Option<&Path>,
) -> anyhow::Result<Option<AtomicFile>> {
    let same = matches!(
        (std::fs::canonicalize(log), std::fs::canonicalize(dest)),
        (Ok(a), Ok(b)) if a == b
    );
    tracing::info!("build log: {} → {}", log.display(), dest.display());
    if same {
        return Ok(None);
    }
    // pi-gen appends to its build.log across runs: the image's log is the last run's.
    let (file, _) = crate::input::open("the build log (--build-log, BUILD_LOG)", log, base)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut bytes)
        .with_context(|| format!("cannot read build log `{}`", log.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut out = AtomicFile::create(dest)?;
    std::io::Write::write_all(out.file(), crate::buildlog::current_run(&text).as_bytes())
        .with_context(|| format!("cannot copy build log `{}`", log.display()))?;
    Ok(Some(out))
}

/// `mkdir -p` that reports which directories it created (for --chown).
fn create_dir_all_tracked(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    atomic::create_dirs(dir).with_context(|| {
        format!(
            "cannot create output directory `{}`: check OUTPUT_DIR and permissions",
            dir.display()
        )
    })
}

/// Entry point: parse → gather → plan → run → publish.
pub fn main(gha: &Gha, args: Args) -> anyhow::Result<()> {
    atomic::install_signal_handlers()?;
    let input = Input::from_args(args, |k| std::env::var(k).ok())?;
    let facts = gather(&input)?;
    let plan = plan(&input, &facts)?;
    if gha.print_plan(&plan)? {
        return Ok(());
    }
    let outcome = run(gha, &input, &plan)?;
    gha.publish(&outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> Input {
        Input {
            paths: ArtifactPaths::new(Path::new("out"), "sugarkube"),
            deploy_dir: "deploy".into(),
            max_depth: 6,
            select: None,
            preset: Preset::default(),
            threads: 0,
            move_source: false,
            no_sbom: false,
            no_bmap: false,
            chown: None,
            pi_gen_dir: None,
            build_log: None,
        }
    }

    fn facts(rels: &[&str]) -> Facts {
        Facts {
            candidates: rels
                .iter()
                .map(|r| {
                    Candidate::new(
                        Path::new("deploy").join(r),
                        (*r).into(),
                        r.matches('/').count() + 1,
                        1,
                    )
                    .unwrap()
                })
                .collect(),
            all_files: rels.iter().map(|r| (*r).to_owned()).collect(),
            ..Facts::default()
        }
    }

    fn chosen(input: &Input, rels: &[&str]) -> anyhow::Result<(String, Action)> {
        plan(input, &facts(rels)).map(|p| (p.source.rel, p.action))
    }

    #[test]
    fn format_preference_within_one_image() {
        let rels = [
            "2026-01-02-sk-lite.img",
            "image_2026-01-02-sk-lite.img.gz",
            "image_2026-01-02-sk-lite.zip",
            "image_2026-01-02-sk-lite.img.xz",
        ];
        assert_eq!(
            chosen(&input(), &rels).unwrap(),
            ("image_2026-01-02-sk-lite.img.xz".into(), Action::CopyXz)
        );
        assert_eq!(
            chosen(&input(), &rels[..3]).unwrap(),
            ("image_2026-01-02-sk-lite.zip".into(), Action::Compress)
        );
        assert_eq!(
            chosen(&input(), &rels[..2]).unwrap().0,
            "image_2026-01-02-sk-lite.img.gz"
        );
    }

    #[test]
    fn newest_export_wins_and_shallowest_breaks_ties() {
        let p = plan(
            &input(),
            &facts(&[
                "image_2026-01-01-sk-lite.img.xz",
                "image_2026-03-01-sk-lite.zip",
            ]),
        )
        .unwrap();
        assert_eq!(p.source.rel, "image_2026-03-01-sk-lite.zip");
        assert_eq!(p.ignored.len(), 1);
        assert_eq!(
            chosen(&input(), &["a/b/x.img", "x.img"]).unwrap().0,
            "x.img"
        );
    }

    #[test]
    fn several_images_need_a_choice() {
        let rels = [
            "image_2026-01-02-sk-lite.zip",
            "image_2026-01-02-sk-full.zip",
            "image_2026-01-02-sk.zip",
        ];
        let err = chosen(&input(), &rels).unwrap_err();
        assert!(err.downcast_ref::<crate::error::UsageError>().is_some());
        let msg = err.to_string();
        assert!(
            msg.contains("--image") && rels.iter().all(|r| msg.contains(r)),
            "{msg}"
        );
        let mut i = input();
        i.select = Some("-full".into());
        assert_eq!(chosen(&i, &rels).unwrap().0, "image_2026-01-02-sk-full.zip");
        i.select = Some("sk".into());
        assert_eq!(chosen(&i, &rels).unwrap().0, "image_2026-01-02-sk.zip");
        i.select = Some("image_2026-01-02-sk-lite.zip".into());
        assert_eq!(chosen(&i, &rels).unwrap().0, "image_2026-01-02-sk-lite.zip");
        i.select = Some("-nope".into());
        assert!(
            chosen(&i, &rels)
                .unwrap_err()
                .to_string()
                .contains("matches none")
        );
    }

    #[test]
    fn empty_deploy_dir_says_so() {
        let msg = chosen(&input(), &[]).unwrap_err().to_string();
        assert!(
            msg.contains("no image found under `deploy`") && msg.contains("no files at all"),
            "{msg}"
        );
        let mut f = facts(&[]);
        f.all_files = vec!["build.log".into()];
        let msg = plan(&input(), &f).unwrap_err().to_string();
        assert!(msg.contains("build.log"), "{msg}");
    }

    #[test]
    fn previous_output_in_deploy_is_ignored_unless_alone() {
        let mut f = facts(&["sugarkube.img.xz", "image_2026-01-02-sugarkube-lite.zip"]);
        f.output_is = Some(PathBuf::from("deploy/sugarkube.img.xz"));
        assert_eq!(
            plan(&input(), &f).unwrap().source.rel,
            "image_2026-01-02-sugarkube-lite.zip"
        );
        f.candidates.truncate(1);
        assert_eq!(plan(&input(), &f).unwrap().action, Action::InPlace);
    }

    #[test]
    fn move_only_for_xz() {
        let mut i = input();
        i.move_source = true;
        assert_eq!(chosen(&i, &["x.img.xz"]).unwrap().1, Action::MoveXz);
        assert_eq!(chosen(&i, &["x.img"]).unwrap().1, Action::Compress);
    }

    #[test]
    fn owners_parse_as_uid_gid_and_default_to_the_sudo_user() {
        assert_eq!(parse_owner("1000:100").unwrap(), (1000, 100));
        assert!(parse_owner("1000").is_err() && parse_owner("a:b").is_err());
        let env = |k: &str| match k {
            "SUDO_UID" => Some("1001".to_owned()),
            "SUDO_GID" => Some("1002".to_owned()),
            _ => None,
        };
        assert_eq!(default_owner(true, env), Some((1001, 1002)));
        assert_eq!(default_owner(false, env), None);
        assert_eq!(default_owner(true, |_| None), None);
    }
}
