//! `IMG_NAME.rpi-imager.json`: a Raspberry Pi Imager repository with this one image, so
//! `rpi-imager --repo <its release URL>` offers it with Imager's OS customisation.
//!
//! The fields are those of Imager's own schema, `doc/json-schema/os-list-schema.json` in
//! raspberrypi/rpi-imager (vendored under `tests/fixtures/third-party/rpi-imager/`, which
//! names the version; the tests validate every file written against it). Imager takes the
//! device list it shows ("CHOOSE DEVICE") from the repository's own `imager.devices`, and
//! filters `os_list` by the tags those devices carry, so the file defines both: the tags
//! are ours and consistent by construction.
//!
//! Pure: it decides from the input, the digests and the image's package list.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

/// Imager's `init_format`: how it applies its OS customisation on first boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitFormat {
    /// From the image's packages: cloud-init with Raspberry Pi's module → `cloudinit-rpi`,
    /// cloud-init → `cloudinit`, raspberrypi-sys-mods' firstboot → `systemd`, else `none`
    Auto,
    /// A firstrun.sh on the boot partition, run by systemd (bookworm-style firstboot)
    Systemd,
    /// cloud-init `user-data` and `network-config` on the boot partition
    Cloudinit,
    /// cloud-init with the Raspberry Pi module (`cc_raspberry_pi`, rpi-cloud-init-mods)
    CloudinitRpi,
    /// `rpi-preseed.toml` on the boot partition, applied by the rpi-preseed package
    RpiPreseed,
    /// No customisation
    None,
}

impl InitFormat {
    /// The value Imager reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Systemd => "systemd",
            Self::Cloudinit => "cloudinit",
            Self::CloudinitRpi => "cloudinit-rpi",
            Self::RpiPreseed => "rpi-preseed",
            Self::None => "none",
        }
    }
}

/// A Raspberry Pi family the image can be offered for (its tag in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Device {
    Pi5,
    Pi4,
    Pi3,
    Pi2,
    Pi1,
}

impl Device {
    const ALL: [Self; 5] = [Self::Pi5, Self::Pi4, Self::Pi3, Self::Pi2, Self::Pi1];

    fn tag(self) -> &'static str {
        match self {
            Self::Pi5 => "pi5",
            Self::Pi4 => "pi4",
            Self::Pi3 => "pi3",
            Self::Pi2 => "pi2",
            Self::Pi1 => "pi1",
        }
    }

    /// Name and description as Imager's device list shows them, and the architecture
    /// Imager sorts by (`armv8`: 64-bit capable).
    fn entry(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Pi5 => (
                "Raspberry Pi 5",
                "Raspberry Pi 5, 500 and Compute Module 5",
                "armv8",
            ),
            Self::Pi4 => (
                "Raspberry Pi 4",
                "Raspberry Pi 4, 400 and Compute Module 4",
                "armv8",
            ),
            Self::Pi3 => (
                "Raspberry Pi 3",
                "Raspberry Pi 3, Compute Module 3 and Zero 2 W",
                "armv8",
            ),
            Self::Pi2 => ("Raspberry Pi 2", "Raspberry Pi 2 Model B", "armhf"),
            Self::Pi1 => (
                "Raspberry Pi 1 and Zero",
                "Raspberry Pi 1, Zero, Zero W and Compute Module 1",
                "armhf",
            ),
        }
    }
}

/// Which boards run the image: arm64 needs a 64-bit core (Pi 3 and later; the first Pi 2
/// has a Cortex-A7); Debian's armhf needs ARMv7 (not the Pi 1 or Zero's ARMv6), which
/// Raspbian's armhf is built for.
pub fn supported(arm64: bool, os_id: Option<&str>) -> Vec<Device> {
    Device::ALL
        .into_iter()
        .filter(|d| match d {
            Device::Pi5 | Device::Pi4 | Device::Pi3 => true,
            Device::Pi2 => !arm64,
            Device::Pi1 => !arm64 && os_id == Some("raspbian"),
        })
        .collect()
}

/// What the user chose, checked in `Input`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub name: String,
    pub description: Option<String>,
    pub icon: String,
    pub init_format: InitFormat,
    /// Empty: every board the image runs on.
    pub devices: Vec<Device>,
}

/// `auto`'s choice, with the reason, from the installed package names.
pub fn derive_init_format<'a>(
    mut packages: impl Iterator<Item = &'a str> + Clone,
) -> (InitFormat, &'static str) {
    let has = |name: &str| packages.clone().any(|p| p == name);
    if has("cloud-init") && has("rpi-cloud-init-mods") {
        (
            InitFormat::CloudinitRpi,
            "cloud-init and rpi-cloud-init-mods are installed",
        )
    } else if has("cloud-init") {
        (InitFormat::Cloudinit, "cloud-init is installed")
    } else if has("raspberrypi-sys-mods") {
        (
            InitFormat::Systemd,
            "raspberrypi-sys-mods (bookworm-style firstboot) is installed",
        )
    } else if packages.next().is_some() {
        (
            InitFormat::None,
            "neither cloud-init nor raspberrypi-sys-mods is installed",
        )
    } else {
        (
            InitFormat::None,
            "the image's packages are unknown (no package lock)",
        )
    }
}

/// Percent-encodes one URL path segment (a tag holds `+`, which GitHub's own asset URLs
/// encode).
fn segment(s: &str) -> String {
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// The URL `release` gives an asset of the release `tag`.
pub fn asset_url(server_url: &str, repository: &str, tag: &str, asset: &str) -> String {
    format!(
        "{}/{repository}/releases/download/{}/{}",
        server_url.trim_end_matches('/'),
        segment(tag),
        segment(asset)
    )
}

/// What the entry describes.
pub struct Image<'a> {
    pub server_url: &'a str,
    pub repository: &'a str,
    pub tag: &'a str,
    pub image_name: &'a str,
    pub image_size: u64,
    pub image_sha256: &'a str,
    pub raw_size: u64,
    pub raw_sha256: &'a str,
    pub bmap_name: Option<&'a str>,
    /// `YYYY-MM-DD`.
    pub release_date: String,
    pub arm64: bool,
    pub os_id: Option<&'a str>,
    pub init_format: InitFormat,
}

/// The repository file's JSON. `opts.init_format` is already resolved (not `auto`).
pub fn repository(opts: &Options, img: &Image<'_>) -> Value {
    let supported = supported(img.arm64, img.os_id);
    let devices: Vec<Device> = if opts.devices.is_empty() {
        supported
    } else {
        opts.devices.clone()
    };
    let url = |asset: &str| asset_url(img.server_url, img.repository, img.tag, asset);
    let description = opts.description.clone().unwrap_or_else(|| {
        format!(
            "{} ({}), release {}",
            opts.name,
            if img.arm64 { "64-bit" } else { "32-bit" },
            img.tag
        )
    });
    let mut entry = json!({
        "name": opts.name,
        "description": description,
        "icon": opts.icon,
        "url": url(img.image_name),
        "extract_size": img.raw_size,
        "extract_sha256": img.raw_sha256,
        "image_download_size": img.image_size,
        "image_download_sha256": img.image_sha256,
        "release_date": img.release_date,
        "init_format": img.init_format.as_str(),
        "devices": devices.iter().map(|d| d.tag()).collect::<Vec<_>>(),
        "architecture": if img.arm64 { "armv8" } else { "armhf" },
        "website": format!("{}/{}", img.server_url.trim_end_matches('/'), img.repository),
    });
    if let (Some(bmap), Some(obj)) = (img.bmap_name, entry.as_object_mut()) {
        obj.insert("bmap_url".into(), Value::from(url(bmap)));
    }
    let device_list: Vec<Value> = devices
        .iter()
        .map(|d| {
            let (name, description, arch) = d.entry();
            json!({
                "name": name,
                "description": description,
                "tags": [d.tag()],
                "architecture": arch,
            })
        })
        .collect();
    json!({
        "imager": { "devices": device_list },
        "os_list": [entry],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boards_follow_the_architecture_and_the_distribution() {
        use Device::*;
        assert_eq!(supported(true, Some("debian")), [Pi5, Pi4, Pi3]);
        assert_eq!(supported(false, Some("debian")), [Pi5, Pi4, Pi3, Pi2]);
        assert_eq!(
            supported(false, Some("raspbian")),
            [Pi5, Pi4, Pi3, Pi2, Pi1]
        );
    }

    #[test]
    fn auto_init_format_reads_the_packages() {
        let f = |p: &[&str]| derive_init_format(p.iter().copied()).0;
        assert_eq!(
            f(&["cloud-init", "rpi-cloud-init-mods"]),
            InitFormat::CloudinitRpi
        );
        assert_eq!(f(&["cloud-init", "libc6"]), InitFormat::Cloudinit);
        assert_eq!(f(&["raspberrypi-sys-mods", "systemd"]), InitFormat::Systemd);
        assert_eq!(f(&["systemd"]), InitFormat::None);
        assert_eq!(f(&[]), InitFormat::None);
    }

    #[test]
    fn asset_urls_encode_the_tag() {
        assert_eq!(
            asset_url(
                "https://github.com/",
                "o/r",
                "v2026.12.03+gabcdef0",
                "x.img.xz"
            ),
            "https://github.com/o/r/releases/download/v2026.12.03%2Bgabcdef0/x.img.xz"
        );
    }
}
