//! The FAT boot partition, read without mounting (the runner's kernel may not even
//! have vfat) through mtools, and the Pi firmware's `config.txt` / `cmdline.txt`.

use std::path::Path;

use anyhow::Context as _;

use crate::process::CmdSpec;

/// `image@@offset`, mtools' syntax for a partition inside a disk image.
fn mtools_target(image: &Path, offset: u64) -> String {
    format!("{}@@{offset}", image.display())
}

/// Every file in the partition, as `/`-rooted lowercase-insensitive paths (`/kernel8.img`).
pub fn list(image: &Path, offset: u64) -> anyhow::Result<Vec<String>> {
    let out = CmdSpec::new("mdir", "list the boot partition (mtools)")
        .arg("-b")
        .arg("-/")
        .arg("-i")
        .arg(mtools_target(image, offset))
        .arg("::/")
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .context("cannot read the FAT boot partition: is it really FAT (partition type 0x0c)?")?;
    Ok(out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("::"))
        .map(str::to_owned)
        .collect())
}

/// Copies `/name` out of the partition.
pub fn extract(image: &Path, offset: u64, name: &str, dest: &Path) -> anyhow::Result<()> {
    CmdSpec::new(
        "mcopy",
        &format!("copy `{name}` out of the boot partition (mtools)"),
    )
    .arg("-n")
    .arg("-i")
    .arg(mtools_target(image, offset))
    .arg(format!("::{name}"))
    .arg(dest)
    .env("MTOOLS_SKIP_CHECK", "1")
    .output()
    .map(|_| ())
}
