//! What this machine can do, probed once and shared by `doctor` and `run-pi-gen`:
//! the kernel features pi-gen's export needs (loop devices with MBR partition scanning,
//! vfat), ARM emulation through `binfmt_misc`, root or sudo, and free disk.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::process::{CmdSpec, find_program};

/// Whether the host has a feature, and how that is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    Yes(String),
    No(String),
    /// Could not be told here (no kernel config, no root for a probe).
    Unknown(String),
}

impl Known {
    pub fn is_no(&self) -> bool {
        matches!(self, Known::No(_))
    }
    pub fn detail(&self) -> &str {
        match self {
            Known::Yes(d) | Known::No(d) | Known::Unknown(d) => d,
        }
    }
}

/// `PI_IMAGE_KERNEL_CONFIG`: a kernel configuration to judge instead of this host's
/// (tests use it to stand for kernels they do not run on). Nothing else is consulted then.
fn config_override() -> Option<String> {
    std::env::var_os("PI_IMAGE_KERNEL_CONFIG")
        .filter(|v| !v.is_empty())
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
}

/// The running kernel's build configuration (`/proc/config.gz`, or
/// `/boot/config-$(uname -r)` as Debian and Ubuntu install it).
fn kernel_config() -> Option<String> {
    if let Some(c) = config_override() {
        return Some(c);
    }
    if let Ok(f) = std::fs::File::open("/proc/config.gz") {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(f)
            .read_to_string(&mut text)
            .is_ok()
        {
            return Some(text);
        }
    }
    std::fs::read_to_string(format!("/boot/config-{}", kernel_release())).ok()
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `y`, `m` or `n` for one option of a kernel config text.
fn config_value(config: &str, option: &str) -> Option<char> {
    for line in config.lines() {
        if line == format!("# {option} is not set") {
            return Some('n');
        }
        if let Some(v) = line.strip_prefix(&format!("{option}=")) {
            return v.chars().next();
        }
    }
    None
}

/// A loadable module of the running kernel, by file name (`vfat.ko`, `vfat.ko.zst`…).
fn has_module(name: &str) -> bool {
    let dir = PathBuf::from("/lib/modules").join(kernel_release());
    let listed = |file: &str| {
        std::fs::read_to_string(dir.join(file)).is_ok_and(|t| {
            t.lines().any(|l| {
                let path = l.split(':').next().unwrap_or_default();
                path.rsplit('/')
                    .next()
                    .is_some_and(|f| f == name || f.starts_with(&format!("{name}.")))
            })
        })
    };
    listed("modules.dep") || listed("modules.builtin")
}

/// vfat, which pi-gen's export mounts the boot partition with.
pub fn vfat() -> Known {
    if let Some(c) = config_override() {
        return match config_value(&c, "CONFIG_VFAT_FS") {
            Some('y' | 'm') => Known::Yes("CONFIG_VFAT_FS (PI_IMAGE_KERNEL_CONFIG)".into()),
            _ => Known::No("the kernel is built without it (CONFIG_VFAT_FS is not set)".into()),
        };
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if filesystems.split_whitespace().any(|w| w == "vfat") {
        return Known::Yes("in /proc/filesystems".into());
    }
    if has_module("vfat.ko") {
        return Known::Yes("loadable module".into());
    }
    match kernel_config().and_then(|c| config_value(&c, "CONFIG_VFAT_FS")) {
        Some('y') => Known::Yes("built in (CONFIG_VFAT_FS=y)".into()),
        Some('m') => Known::No(format!(
            "CONFIG_VFAT_FS=m, but the module is not installed for kernel {}",
            kernel_release()
        )),
        Some(_) => Known::No("the kernel is built without it (CONFIG_VFAT_FS is not set)".into()),
        None if !Path::new("/lib/modules").join(kernel_release()).is_dir() => Known::No(
            "not in /proc/filesystems, and the kernel has no loadable modules installed".into(),
        ),
        None => Known::Unknown("not loaded, and the kernel configuration is not readable".into()),
    }
}

/// Loop devices, and the kernel's scan of an MBR partition table on them (pi-gen's
/// export runs `losetup --partscan` and formats `/dev/loopNp1` and `p2`). Probed for
/// real when this process may use losetup (root, or `sudo -n`); otherwise from the
/// kernel configuration.
pub fn loop_partitions() -> Known {
    let config = kernel_config();
    let msdos = config
        .as_deref()
        .and_then(|c| config_value(c, "CONFIG_MSDOS_PARTITION"));
    if config_override().is_some() {
        return match msdos {
            Some('y') => Known::Yes("CONFIG_MSDOS_PARTITION=y (PI_IMAGE_KERNEL_CONFIG)".into()),
            _ => Known::No(
                "the kernel cannot read MBR partition tables (CONFIG_MSDOS_PARTITION is not set), so `losetup --partscan` makes no /dev/loopNp1".into(),
            ),
        };
    }
    if msdos == Some('n') {
        return Known::No(
            "the kernel cannot read MBR partition tables (CONFIG_MSDOS_PARTITION is not set), so `losetup --partscan` makes no /dev/loopNp1".into(),
        );
    }
    match probe_loop_partscan() {
        Ok(true) => Known::Yes("losetup --partscan found the partition of a test image".into()),
        Ok(false) => Known::No(
            "`losetup --partscan` attached a test image but the kernel found no partition on it (MBR partition scanning missing)".into(),
        ),
        Err(why) if msdos.is_some() => Known::Yes(format!(
            "CONFIG_MSDOS_PARTITION={} (not probed: {why})",
            msdos.unwrap_or('?')
        )),
        Err(why) => Known::Unknown(format!("not probed: {why}")),
    }
}

/// The command prefix that runs a tool as root here: nothing, `sudo -n`, or `None`.
pub fn as_root() -> Option<Vec<&'static str>> {
    if rustix::process::geteuid().is_root() {
        return Some(Vec::new());
    }
    let sudo_ok = find_program("sudo").is_some()
        && CmdSpec::new("sudo", "check for password-less sudo")
            .arg("-n")
            .arg("true")
            .output()
            .is_ok();
    sudo_ok.then(|| vec!["sudo", "-n"])
}

fn root_cmd(prefix: &[&str], tool: &str, summary: &str) -> CmdSpec {
    match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = CmdSpec::new(first, summary);
            for a in rest {
                c = c.arg(a);
            }
            c.arg(tool)
        }
        None => CmdSpec::new(tool, summary),
    }
}

/// Attaches a 4 MiB sparse image holding an MBR with one partition, and looks for the
/// partition the kernel should have found. `Err` when the probe cannot run at all.
fn probe_loop_partscan() -> Result<bool, String> {
    let prefix = as_root().ok_or("needs root or password-less sudo")?;
    find_program("losetup").ok_or("losetup is not installed (util-linux)")?;
    let mut img = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    img.as_file().set_len(4 << 20).map_err(|e| e.to_string())?;
    let mut mbr = [0u8; 512];
    // One primary partition, type 0x83, from sector 2048 for 4096 sectors.
    let entry = &mut mbr[446..462];
    entry[4] = 0x83;
    entry[8..12].copy_from_slice(&2048u32.to_le_bytes());
    entry[12..16].copy_from_slice(&4096u32.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    std::io::Write::write_all(&mut img, &mbr).map_err(|e| e.to_string())?;
    let dev = root_cmd(&prefix, "losetup", "attach a loop device (kernel probe)")
        .arg("--find")
        .arg("--show")
        .arg("--partscan")
        .arg(img.path())
        .output()
        .map_err(|e| format!("cannot attach a loop device: {e:#}"))?;
    let name = dev.trim().trim_start_matches("/dev/").to_owned();
    let found = (0..10).any(|_| {
        let seen = Path::new("/sys/block")
            .join(&name)
            .join(format!("{name}p1"))
            .exists();
        if !seen {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        seen
    });
    let _ = root_cmd(&prefix, "losetup", "detach the probe's loop device")
        .arg("-d")
        .arg(dev.trim())
        .output();
    Ok(found)
}

/// The `binfmt_misc` entry ARM binaries need on this (non-ARM) host, if it is missing.
pub fn missing_binfmt(arm64: bool) -> Option<&'static str> {
    let entry = if arm64 { "qemu-aarch64" } else { "qemu-arm" };
    let host_is_arm = matches!(std::env::consts::ARCH, "aarch64" | "arm");
    (!host_is_arm && !binfmt_dir().join(entry).exists()).then_some(entry)
}

/// Where the kernel lists `binfmt_misc` entries (overridable so tests can simulate a
/// host without them).
fn binfmt_dir() -> PathBuf {
    std::env::var_os("PI_IMAGE_BINFMT_DIR")
        .map_or_else(|| PathBuf::from("/proc/sys/fs/binfmt_misc"), PathBuf::from)
}

/// Free space of the filesystem holding `dir`, in GB.
pub fn free_gb(dir: &Path) -> Option<f64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some((st.f_bavail as f64 * st.f_frsize as f64) / 1e9)
}

/// Why `docker` cannot run containers here, or `None`.
pub fn docker_blocker() -> Option<String> {
    if find_program("docker").is_none() {
        return Some("docker is not installed".into());
    }
    match CmdSpec::new("docker", "ask the Docker daemon for its state")
        .arg("info")
        .output()
    {
        Ok(_) => None,
        Err(_) => Some("Docker daemon is not running or not accessible".into()),
    }
}

/// pi-gen's `depends` file: `tool[:package]` per line.
pub fn pi_gen_depends(pi_gen_dir: &Path) -> Vec<(String, String)> {
    parse_depends(&std::fs::read_to_string(pi_gen_dir.join("depends")).unwrap_or_default())
}

pub fn parse_depends(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (tool, pkg) = l.split_once(':').unwrap_or((l, l));
            (tool.to_owned(), pkg.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_config_values() {
        let c = "CONFIG_A=y\n# CONFIG_VFAT_FS is not set\nCONFIG_MSDOS_PARTITION=m\n";
        assert_eq!(config_value(c, "CONFIG_A"), Some('y'));
        assert_eq!(config_value(c, "CONFIG_VFAT_FS"), Some('n'));
        assert_eq!(config_value(c, "CONFIG_MSDOS_PARTITION"), Some('m'));
        assert_eq!(config_value(c, "CONFIG_B"), None);
    }

    #[test]
    fn this_kernel_is_judged_by_its_own_configuration() {
        // Where the running kernel's configuration is readable and says "not set", the
        // probes must say no (our CI machines' kernels lack both).
        if std::env::var_os("PI_IMAGE_KERNEL_CONFIG").is_some() {
            return;
        }
        let Some(c) = kernel_config() else { return };
        if config_value(&c, "CONFIG_VFAT_FS") == Some('n') {
            assert!(vfat().is_no(), "{:?}", vfat());
        }
        if config_value(&c, "CONFIG_MSDOS_PARTITION") == Some('n') {
            assert!(loop_partitions().is_no(), "{:?}", loop_partitions());
        }
    }

    #[test]
    fn pi_gens_depends_lines_map_tools_to_packages() {
        assert_eq!(
            parse_depends("quilt\n# c\nqemu-arm-static:qemu-user-static\n\n"),
            [
                ("quilt".to_owned(), "quilt".to_owned()),
                ("qemu-arm-static".to_owned(), "qemu-user-static".to_owned())
            ]
        );
    }
}
