//! What the Pi firmware makes of the boot partition: the file it would load for a
//! name (FAT ignores case), `config.txt` as a Pi 3 reads it, and the kernel command
//! line for an emulated boot. Pure text work on what [`super::bootfs`] read.

/// Finds `name` in a listing, ignoring case as FAT does.
pub fn find<'a>(files: &'a [String], name: &str) -> Option<&'a str> {
    let want = format!("/{}", name.trim_start_matches('/'));
    files
        .iter()
        .map(String::as_str)
        .find(|f| f.eq_ignore_ascii_case(&want))
}

/// What the firmware would read from `config.txt` for a Pi 3.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirmwareConfig {
    pub kernel: Option<String>,
    pub device_tree: Option<String>,
    pub initramfs: Option<String>,
    /// `auto_initramfs=1` (Pi OS since bookworm): the firmware loads the initramfs that
    /// matches the kernel's name when there is one.
    pub auto_initramfs: bool,
    pub arm_64bit: Option<bool>,
}

/// Parses `config.txt`, honouring the sections a Pi 3 obeys (`[all]`, `[pi3]`, and
/// lines before any section) and ignoring others (`[pi4]`, `[pi5]`, `[cm4]`, …).
pub fn parse_config(text: &str) -> FirmwareConfig {
    let mut cfg = FirmwareConfig::default();
    let mut active = true;
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            active = matches!(
                section.trim().to_ascii_lowercase().as_str(),
                "all" | "pi3" | "pi3+" | "none"
            );
            continue;
        }
        if !active {
            continue;
        }
        if let Some(rest) = line.strip_prefix("initramfs") {
            // `initramfs FILE [followkernel|ADDRESS]`
            if let Some(file) = rest.split_whitespace().next() {
                cfg.initramfs = Some(file.to_owned());
            }
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_owned();
        match k.trim() {
            "kernel" => cfg.kernel = Some(v),
            "device_tree" => cfg.device_tree = Some(v),
            "arm_64bit" => cfg.arm_64bit = Some(v == "1"),
            "auto_initramfs" => cfg.auto_initramfs = v == "1",
            _ => {}
        }
    }
    cfg
}

/// The initramfs `auto_initramfs=1` makes the firmware look for next to `kernel`:
/// `kernel8.img` → `initramfs8`, `kernel7l.img` → `initramfs7l`, `kernel_2712.img` →
/// `initramfs_2712`. `None` for a custom kernel name.
pub fn auto_initramfs_name(kernel: &str) -> Option<String> {
    let stem = kernel.strip_suffix(".img").unwrap_or(kernel);
    stem.strip_prefix("kernel")
        .map(|suffix| format!("initramfs{suffix}"))
}

/// Rewrites Pi OS's kernel command line for an emulated machine: the root device and
/// the serial console are replaced, `rootwait` and `panic=-1` (so a panic ends QEMU
/// instead of hanging) are ensured; everything else — `init=`, `resize`, quiet flags —
/// stays, because first boot depends on it.
pub fn rewrite_cmdline(original: &str, root_device: &str, extra: &[String]) -> String {
    let mut tokens: Vec<String> = original
        .split_whitespace()
        .filter(|t| !t.starts_with("root=") && !t.starts_with("console="))
        .map(str::to_owned)
        .collect();
    tokens.insert(0, format!("root={root_device}"));
    tokens.insert(0, "console=ttyAMA0,115200".to_owned());
    if !tokens.iter().any(|t| t == "rootwait") {
        tokens.push("rootwait".into());
    }
    if !tokens.iter().any(|t| t.starts_with("panic=")) {
        tokens.push("panic=-1".into());
    }
    tokens.extend(extra.iter().cloned());
    tokens.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_txt_is_read_as_a_pi_3_reads_it() {
        let cfg = parse_config(
            "# comment\nkernel=k.img\n[pi4]\ndevice_tree=bcm2711.dtb\n[all]\narm_64bit=1\ninitramfs initramfs8 followkernel\n[pi3]\ndevice_tree=bcm2710-rpi-3-b.dtb # pi3\n",
        );
        assert_eq!(cfg.kernel.as_deref(), Some("k.img"));
        assert_eq!(cfg.device_tree.as_deref(), Some("bcm2710-rpi-3-b.dtb"));
        assert_eq!(cfg.initramfs.as_deref(), Some("initramfs8"));
        assert!(!cfg.auto_initramfs);
        assert!(parse_config("auto_initramfs=1\n").auto_initramfs);
        assert_eq!(
            auto_initramfs_name("kernel8.img").as_deref(),
            Some("initramfs8")
        );
        assert_eq!(
            auto_initramfs_name("kernel7l.img").as_deref(),
            Some("initramfs7l")
        );
        assert_eq!(
            auto_initramfs_name("kernel_2712.img").as_deref(),
            Some("initramfs_2712")
        );
        assert_eq!(auto_initramfs_name("vmlinuz"), None);
        assert_eq!(cfg.arm_64bit, Some(true));
    }

    #[test]
    fn cmdline_for_emulation() {
        let pi_os = "console=serial0,115200 console=tty1 root=PARTUUID=5eed1234-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot";
        assert_eq!(
            rewrite_cmdline(pi_os, "/dev/mmcblk0p2", &[]),
            "console=ttyAMA0,115200 root=/dev/mmcblk0p2 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot panic=-1"
        );
        assert_eq!(
            rewrite_cmdline("root=/dev/sda2 panic=5", "/dev/vda2", &["smoke=1".into()]),
            "console=ttyAMA0,115200 root=/dev/vda2 panic=5 rootwait smoke=1"
        );
    }

    #[test]
    fn fat_names_ignore_case() {
        let files = vec!["/KERNEL8.IMG".to_owned(), "/config.txt".to_owned()];
        assert_eq!(find(&files, "kernel8.img"), Some("/KERNEL8.IMG"));
        assert_eq!(find(&files, "cmdline.txt"), None);
    }
}
