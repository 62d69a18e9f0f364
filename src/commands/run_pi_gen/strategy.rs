//! How pi-gen is run: natively, in the container built from the checkout's own
//! Dockerfile, or in plain `debian:bookworm` with pi-gen's dependencies installed.
//! The command lines are built here, purely, so tests can pin them.

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// native, then container, then debian-container
    Auto,
    Native,
    Container,
    DebianContainer,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Auto => "auto",
            Strategy::Native => "native",
            Strategy::Container => "container",
            Strategy::DebianContainer => "debian-container",
        }
    }
}

/// The image that registers ARM emulation on a host without it. It runs privileged, so
/// it is pinned by digest (the tag only says which QEMU it carries): a pushed tag cannot
/// change what runs as root here.
pub const BINFMT_IMAGE: &str = "docker.io/tonistiigi/binfmt:qemu-v10.2.3@sha256:400a4873b838d1b89194d982c45e5fb3cda4593fbfd7e08a02e76b03b21166f0";

/// What the container strategies need to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec<'a> {
    pub image: &'a str,
    pub checkout: &'a str,
    pub deploy: &'a str,
    pub env: &'a [(String, String)],
    pub name: &'a str,
}

/// `docker build` for the pi-gen image from the checkout's own Dockerfile.
pub fn docker_build(image: &str, checkout: &str) -> Vec<String> {
    ["build", "-t", image, checkout].map(String::from).to_vec()
}

fn common_run(spec: &ContainerSpec<'_>) -> Vec<String> {
    let mut a: Vec<String> = ["run", "--rm", "--privileged", "--name"]
        .map(String::from)
        .to_vec();
    a.push(spec.name.to_owned());
    a.extend(["--volume".into(), format!("{}:/pi-gen/deploy", spec.deploy)]);
    a.extend(["--volume".into(), "pi-gen-work-cache:/pi-gen/work".into()]);
    a.extend(["--volume".into(), "pi-gen-apt-cache:/var/cache/apt".into()]);
    // By name: docker takes the value from its own environment, so values (a proxy's
    // credentials) never appear on a command line, in `ps` or in the log.
    for (k, _) in spec.env {
        a.extend(["--env".into(), k.clone()]);
    }
    a
}

/// `IMAGE bash -e -o pipefail -c SCRIPT` at the end of a `docker run`.
fn bash_in(a: &mut Vec<String>, image: &str, script: String) {
    a.push(image.to_owned());
    a.extend(["bash", "-e", "-o", "pipefail", "-c"].map(String::from));
    a.push(script);
}

/// The pi-gen container: the checkout (with our config and sub-stages) is in the image.
/// `./build.sh` runs by its shebang, as pi-gen's own build-docker.sh runs it. pi-gen's
/// Dockerfile installs no bmaptool, so its export would make no bmap: it is installed
/// first when missing (a failure only costs pi-gen's bmap, not the build).
pub fn container_run(spec: &ContainerSpec<'_>) -> Vec<String> {
    let mut a = common_run(spec);
    bash_in(
        &mut a,
        spec.image,
        "dpkg-reconfigure qemu-user-binfmt >/dev/null 2>&1 || true; (mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc || true); \
         command -v bmaptool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bmap-tools; } \
         || echo 'pi-image: bmap-tools could not be installed in the container: pi-gen makes no bmap of its own' >&2; \
         cd /pi-gen && ./build.sh".to_owned(),
    );
    a
}

/// Plain Debian with pi-gen's dependencies; the checkout is mounted.
pub fn debian_run(spec: &ContainerSpec<'_>, packages: &[String]) -> Vec<String> {
    let mut a = common_run(spec);
    // The checkout becomes /pi-gen; the deploy and work volumes mount inside it.
    a.splice(
        4 + 2..4 + 2,
        ["--volume".to_owned(), format!("{}:/pi-gen", spec.checkout)],
    );
    bash_in(
        &mut a,
        "debian:bookworm",
        format!(
            "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {} qemu-user-static binfmt-support bmap-tools && (mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc || true) && update-binfmts --enable && cd /pi-gen && ./build.sh",
            packages.join(" "),
        ),
    );
    a
}

/// A container name derived from the image name (Docker allows `[a-zA-Z0-9_.-]`).
pub fn container_name(img_name: &str) -> String {
    format!(
        "pi-image-{}",
        img_name.replace(
            |c: char| !(c.is_ascii_alphanumeric() || "_.-".contains(c)),
            "-"
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_command_lines() {
        let env = vec![
            ("IMG_NAME".to_owned(), "sk".to_owned()),
            ("ENABLE_SSH".to_owned(), "1".to_owned()),
        ];
        let spec = ContainerSpec {
            image: "pi-gen:bookworm-arm64",
            checkout: "/w/pi-gen",
            deploy: "/w/out/deploy",
            env: &env,
            name: "pi-image-sk",
        };
        let a = container_run(&spec);
        assert_eq!(
            a[..13].join(" "),
            "run --rm --privileged --name pi-image-sk --volume /w/out/deploy:/pi-gen/deploy --volume pi-gen-work-cache:/pi-gen/work \
             --volume pi-gen-apt-cache:/var/cache/apt --env IMG_NAME"
        );
        assert!(a.contains(&"pi-gen:bookworm-arm64".to_owned()));
        let d = debian_run(&spec, &["quilt".into(), "parted".into()]);
        assert_eq!(&d[6..8], ["--volume", "/w/pi-gen:/pi-gen"]);
        assert!(d.contains(&"debian:bookworm".to_owned()));
        assert!(
            d.last().unwrap().contains(
                "apt-get install -y --no-install-recommends quilt parted qemu-user-static"
            )
        );
        assert_eq!(container_name("my image!"), "pi-image-my-image-");
    }
}
