//! `smoke`'s decision: which QEMU machine boots the image, with which kernel, device
//! tree, initramfs and command line. Pure: it works on what [`super::gather`] read.

use std::path::{Path, PathBuf};

use anyhow::bail;

use super::firmware;
use super::qemu::{Arch, Machine};
use super::{Facts, Input, MachineChoice};
use crate::error::usage;

/// The boot to perform.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    pub machine: Machine,
    pub arch: Arch,
    /// The QEMU binary to run.
    pub program: String,
    /// Why this machine (for `auto`).
    pub reason: String,
    pub kernel: String,
    pub dtb: Option<String>,
    pub initramfs: Option<String>,
    pub cmdline: String,
    /// The boot files copied out of the boot partition, and where to.
    pub extract: Vec<Extract>,
    /// QEMU's arguments, for every boot.
    pub qemu_args: Vec<String>,
}

/// One file of the boot partition, copied into the scratch directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Extract {
    pub name: String,
    pub dest: PathBuf,
}

/// Device trees QEMU's raspi models can boot, Pi OS naming first, then mainline.
const RASPI3B_DTBS: &[&str] = &[
    "bcm2710-rpi-3-b.dtb",
    "bcm2837-rpi-3-b.dtb",
    "bcm2710-rpi-3-b-plus.dtb",
    "bcm2837-rpi-3-b-plus.dtb",
];

const RASPI2B_DTBS: &[&str] = &["bcm2709-rpi-2-b.dtb", "bcm2836-rpi-2-b.dtb"];

/// Which kernel the firmware would start, and so the image's architecture: an explicit
/// `kernel=`, else `kernel8.img` (unless `arm_64bit=0`), else the 32-bit `kernel7*.img`.
fn pick_kernel(
    facts: &Facts,
    has: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(String, Arch)> {
    if let Some(k) = &facts.config.kernel {
        let arch = match facts.config.arm_64bit {
            Some(true) => Arch::Arm64,
            Some(false) => Arch::Armhf,
            None if k.contains('8') => Arch::Arm64,
            None => Arch::Armhf,
        };
        return has(k).map(|f| (f, arch)).ok_or_else(|| {
            anyhow::anyhow!(
                "no kernel in the boot partition: config.txt names `{k}`, which is missing"
            )
        });
    }
    if facts.config.arm_64bit != Some(false)
        && let Some(k) = has("kernel8.img")
    {
        return Ok((k, Arch::Arm64));
    }
    for name in ["kernel7.img", "kernel7l.img"] {
        if let Some(k) = has(name) {
            return Ok((k, Arch::Armhf));
        }
    }
    bail!(
        "no kernel in the boot partition: `kernel8.img` is missing, and no 32-bit `kernel7.img` either (files: {})",
        facts
            .files
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Chooses machine and boot files. Pure.
pub fn plan(input: &Input, facts: &Facts) -> anyhow::Result<Plan> {
    let has = |name: &str| {
        firmware::find(&facts.files, name).map(|f| f.trim_start_matches('/').to_owned())
    };
    let (kernel, arch) = pick_kernel(facts, &has)?;
    let (board, board_dtbs, qemu_bin, qemu) = match arch {
        Arch::Arm64 => (
            Machine::Raspi3b,
            RASPI3B_DTBS,
            &input.qemu,
            &facts.qemu_aarch64,
        ),
        Arch::Armhf => (
            Machine::Raspi2b,
            RASPI2B_DTBS,
            &input.qemu_arm,
            &facts.qemu_arm,
        ),
    };
    let machines = match qemu {
        Ok((_, m)) => m,
        Err(e) => {
            return Err(usage(format!(
                "{e} (needed for this {} image)",
                if arch == Arch::Arm64 {
                    "arm64"
                } else {
                    "armhf"
                }
            )));
        }
    };
    let dtb = match &facts.config.device_tree {
        Some(named) => has(named).or_else(|| has(&format!("broadcom/{named}"))),
        None => None,
    }
    .or_else(|| {
        board_dtbs
            .iter()
            .find_map(|d| has(d).or_else(|| has(&format!("broadcom/{d}"))))
    });
    let board_ok = machines.iter().any(|m| m == board.name());
    let virt_ok = machines.iter().any(|m| m == "virt");
    let wanted = match input.machine {
        MachineChoice::Raspi3b => Some(Machine::Raspi3b),
        MachineChoice::Raspi2b => Some(Machine::Raspi2b),
        _ => None,
    };
    if let Some(w) = wanted
        && w != board
    {
        return Err(usage(format!(
            "--machine {} cannot boot this {} image; use {} or virt",
            w.name(),
            if arch == Arch::Arm64 {
                "arm64 (kernel8.img)"
            } else {
                "armhf (kernel7*.img)"
            },
            board.name()
        )));
    }
    let kvm = facts.kvm && arch == Arch::Arm64 && virt_ok;
    let (machine, reason) = match input.machine {
        // Hardware virtualisation beats any emulated board by far; the kernel needs
        // virtio drivers, as on any virt boot.
        MachineChoice::Auto if kvm => (
            Machine::Virt,
            "KVM is usable on this arm64 host: virt with hardware virtualisation".to_owned(),
        ),
        MachineChoice::Auto | MachineChoice::Raspi3b | MachineChoice::Raspi2b
            if board_ok && dtb.is_some() =>
        {
            (
                board,
                format!(
                    "a Raspberry Pi {} device tree is in the boot partition",
                    if board == Machine::Raspi3b { 3 } else { 2 }
                ),
            )
        }
        MachineChoice::Raspi3b | MachineChoice::Raspi2b if !board_ok => {
            return Err(usage(format!(
                "`{qemu_bin}` has no {} machine: install QEMU 7.2 or newer (apt-get install qemu-system-arm)",
                board.name()
            )));
        }
        MachineChoice::Raspi3b | MachineChoice::Raspi2b => bail!(
            "--machine {} needs one of these device trees in the boot partition: {}",
            board.name(),
            board_dtbs.join(", ")
        ),
        MachineChoice::Virt | MachineChoice::Auto if virt_ok => {
            let why = if input.machine == MachineChoice::Virt {
                "chosen with --machine virt".to_owned()
            } else if !board_ok {
                format!(
                    "`{qemu_bin}` has no {} machine; falling back to virt (the kernel needs virtio drivers)",
                    board.name()
                )
            } else {
                format!(
                    "no device tree for {} ({}) in the boot partition; falling back to virt (the kernel needs virtio drivers)",
                    board.name(),
                    board_dtbs.join(", ")
                )
            };
            (Machine::Virt, why)
        }
        _ => {
            return Err(usage(format!(
                "`{qemu_bin}` has no virt machine: install qemu-system-arm"
            )));
        }
    };
    let initramfs = match &facts.config.initramfs {
        Some(name) => match has(name) {
            Some(found) => Some(found),
            None => bail!(
                "config.txt names the initramfs `{name}` but the boot partition has no such file"
            ),
        },
        // auto_initramfs only loads the file when it is there, as the firmware does.
        None if facts.config.auto_initramfs => {
            firmware::auto_initramfs_name(&kernel).and_then(|n| has(&n))
        }
        None => None,
    };
    let dtb = if machine == Machine::Virt { None } else { dtb };
    let cmdline = firmware::rewrite_cmdline(&facts.cmdline, machine.root_device(), &input.append);
    // A fixed scratch name per file keeps the image's own names out of QEMU's options.
    let extract_to = |name: &str| Extract {
        name: name.to_owned(),
        dest: facts.scratch.join(name.replace('/', "_")),
    };
    let kernel_file = extract_to(&kernel);
    let dtb_file = dtb.as_deref().map(extract_to);
    let initrd_file = initramfs.as_deref().map(extract_to);
    let qemu_args = qemu_args(
        Board {
            machine,
            arch,
            kvm: kvm && machine == Machine::Virt,
        },
        &kernel_file.dest,
        dtb_file.as_ref().map(|f| f.dest.as_path()),
        initrd_file.as_ref().map(|f| f.dest.as_path()),
        &cmdline,
        &facts.disk,
    );
    Ok(Plan {
        machine,
        arch,
        program: qemu_bin.clone(),
        reason,
        cmdline,
        kernel,
        dtb,
        initramfs,
        extract: std::iter::once(kernel_file)
            .chain(dtb_file)
            .chain(initrd_file)
            .collect(),
        qemu_args,
    })
}

/// QEMU option values are comma-separated; a literal comma is written twice.
fn qemu_escape(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// Arguments for `qemu-system-aarch64` (arm64) or `qemu-system-arm` (armhf). The raspi
/// boards take exactly 1 GiB (the only size their models accept). raspi3b runs
/// single-threaded TCG, measured faster on 2-core runners than MTTCG with 4 emulated
/// cores; raspi2b must not: its 32-bit kernel then hangs in a `stop_machine` TLB flush.
/// 32-bit virt needs `highmem=off` for its PCI virtio disk.
/// What QEMU emulates: the machine, the image's architecture, and whether KVM runs it.
#[derive(Debug, Clone, Copy)]
struct Board {
    machine: Machine,
    arch: Arch,
    kvm: bool,
}

fn qemu_args(
    Board { machine, arch, kvm }: Board,
    kernel: &Path,
    dtb: Option<&Path>,
    initrd: Option<&Path>,
    cmdline: &str,
    disk: &Path,
) -> Vec<String> {
    let board: &[&str] = match (machine, arch) {
        (Machine::Raspi3b, _) => &["-M", "raspi3b", "-accel", "tcg,thread=single", "-m", "1G"],
        (Machine::Raspi2b, _) => &["-M", "raspi2b", "-m", "1G"],
        (Machine::Virt, Arch::Arm64) if kvm => &[
            "-M", "virt", "-accel", "kvm", "-cpu", "host", "-m", "1G", "-nic", "none",
        ],
        (Machine::Virt, Arch::Arm64) => &[
            "-M",
            "virt",
            "-cpu",
            "cortex-a72",
            "-m",
            "1G",
            "-nic",
            "none",
        ],
        (Machine::Virt, Arch::Armhf) => &[
            "-M",
            "virt,highmem=off",
            "-cpu",
            "cortex-a15",
            "-m",
            "1G",
            "-nic",
            "none",
        ],
    };
    let mut a: Vec<String> = board.iter().map(|s| (*s).to_owned()).collect();
    a.extend(
        [
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ]
        .map(String::from),
    );
    a.extend(["-kernel".into(), kernel.display().to_string()]);
    if let Some(dtb) = dtb {
        a.extend(["-dtb".into(), dtb.display().to_string()]);
    }
    if let Some(initrd) = initrd {
        a.extend(["-initrd".into(), initrd.display().to_string()]);
    }
    a.extend(["-append".into(), cmdline.to_owned()]);
    let drive = match machine {
        Machine::Raspi3b | Machine::Raspi2b => {
            format!("file={},if=sd,format=raw", qemu_escape(disk))
        }
        Machine::Virt => format!("file={},if=virtio,format=raw", qemu_escape(disk)),
    };
    a.extend(["-drive".into(), drive]);
    a
}

#[cfg(test)]
mod tests {
    use super::super::qemu::shell_words;
    use super::*;

    #[test]
    fn raspi3b_boots_single_threaded_from_the_sd_card_with_commas_doubled() {
        let a = qemu_args(
            Board {
                machine: Machine::Raspi3b,
                arch: Arch::Arm64,
                kvm: false,
            },
            Path::new("/w/kernel8.img"),
            Some(Path::new("/w/x.dtb")),
            None,
            "console=ttyAMA0,115200 root=/dev/mmcblk0p2",
            Path::new("/w/a,b.img"),
        );
        let s = shell_words(&a);
        assert_eq!(
            s,
            "-M raspi3b -accel tcg,thread=single -m 1G -display none -monitor none -serial stdio -no-reboot \
             -kernel /w/kernel8.img -dtb /w/x.dtb -append 'console=ttyAMA0,115200 root=/dev/mmcblk0p2' \
             -drive file=/w/a,,b.img,if=sd,format=raw"
        );
    }

    /// On an arm64 host with KVM, virt runs the image's kernel on the host's CPU.
    #[test]
    fn with_kvm_virt_uses_the_hosts_cpu() {
        let a = qemu_args(
            Board {
                machine: Machine::Virt,
                arch: Arch::Arm64,
                kvm: true,
            },
            Path::new("/k"),
            None,
            None,
            "root=/dev/vda2",
            Path::new("/d.img"),
        );
        assert_eq!(&a[..6], ["-M", "virt", "-accel", "kvm", "-cpu", "host"]);
        assert!(!a.contains(&"cortex-a72".to_owned()));
    }

    #[test]
    fn virt_boots_from_virtio_with_the_initramfs_and_no_network() {
        let a = qemu_args(
            Board {
                machine: Machine::Virt,
                arch: Arch::Arm64,
                kvm: false,
            },
            Path::new("/k"),
            None,
            Some(Path::new("/i")),
            "root=/dev/vda2",
            Path::new("/d.img"),
        );
        assert!(a.windows(2).any(|w| w == ["-initrd", "/i"]));
        assert!(a.contains(&"file=/d.img,if=virtio,format=raw".to_owned()));
        assert!(a.windows(2).any(|w| w == ["-nic", "none"]));
        assert!(!a.contains(&"-dtb".to_owned()));
    }

    #[test]
    fn armhf_boots_raspi2b_multi_threaded_and_virt_without_highmem() {
        let a = qemu_args(
            Board {
                machine: Machine::Raspi2b,
                arch: Arch::Armhf,
                kvm: false,
            },
            Path::new("/k7"),
            Some(Path::new("/d")),
            None,
            "x",
            Path::new("/i"),
        );
        assert_eq!(&a[..4], ["-M", "raspi2b", "-m", "1G"]);
        assert!(!a.contains(&"tcg,thread=single".to_owned()));
        let v = qemu_args(
            Board {
                machine: Machine::Virt,
                arch: Arch::Armhf,
                kvm: false,
            },
            Path::new("/k7"),
            None,
            None,
            "x",
            Path::new("/i"),
        );
        assert_eq!(&v[..4], ["-M", "virt,highmem=off", "-cpu", "cortex-a15"]);
    }
}
