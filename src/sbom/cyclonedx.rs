//! `IMG_NAME.cdx.json`: the same inventory as the SPDX document, as a CycloneDX 1.6 JSON
//! BOM: the image is the `operating-system` component the BOM describes (by the raw disk
//! image's SHA-256), every installed package a `library` component with its purl, and
//! the image depends on each. Written by hand with serde_json like the SPDX document (a
//! crate would add a model of every CycloneDX field for the few used here); the tests
//! validate it against CycloneDX's own schema.

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::Inventory;
use super::spdx::{Subject, distro, publisher, purl};

/// An RFC 4122 version 5-style UUID (name-based, SHA hash) from the image and the
/// generation time: a new serial number for each BOM, as CycloneDX asks, that a
/// reproducible build (`SOURCE_DATE_EPOCH`) reproduces.
fn serial_number(subject: &Subject<'_>) -> String {
    let mut h = Sha256::new();
    h.update(b"pi-image cyclonedx\0");
    h.update(subject.raw_sha256.as_bytes());
    h.update(b"\0");
    h.update(subject.created.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = crate::checksum::hex(&b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The BOM (serialise with [`crate::model::to_canonical_json`]).
pub fn document(subject: &Subject<'_>, inv: &Inventory) -> Value {
    let os = &inv.os;
    let distro = distro(os);
    let mut refs = Vec::with_capacity(inv.packages.len());
    let components: Vec<Value> = inv
        .packages
        .iter()
        .map(|(p, namespace)| {
            let purl = purl(p, namespace, distro.as_deref());
            refs.push(purl.clone());
            let mut c = json!({
                "type": "library",
                "bom-ref": purl,
                "name": p.name,
                "version": p.version,
                "purl": purl,
                "properties": [
                    { "name": "pi-image:deb:architecture", "value": p.arch },
                    { "name": "pi-image:deb:source", "value": format!("{} {}", p.source, p.source_version) },
                ],
            });
            if let (Some(name), Some(obj)) = (publisher(namespace), c.as_object_mut()) {
                obj.insert("publisher".into(), Value::from(name));
            }
            c
        })
        .collect();
    let image_ref = format!("image:{}", subject.file_name);
    let mut image = json!({
        "type": "operating-system",
        "bom-ref": image_ref,
        "name": subject.name,
        "description": os.pretty_name.clone().unwrap_or_else(|| os.id.clone()),
        "hashes": [{ "alg": "SHA-256", "content": subject.raw_sha256 }],
        "properties": [{ "name": "pi-image:file", "value": subject.file_name }],
    });
    if let (Some(v), Some(obj)) = (&os.version_id, image.as_object_mut()) {
        obj.insert("version".into(), Value::from(format!("{} {v}", os.id)));
    }
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial_number(subject),
        "version": 1,
        "metadata": {
            "timestamp": subject.created,
            "tools": { "components": [{
                "type": "application",
                "name": "pi-image",
                "version": env!("CARGO_PKG_VERSION"),
            }] },
            "component": image,
        },
        "components": components,
        "dependencies": [{ "ref": image_ref, "dependsOn": refs }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serial_number_is_an_rfc_4122_uuid_new_for_each_generation() {
        let at = |created| Subject {
            name: "sk",
            file_name: "sk.img.xz",
            raw_sha256: "ab",
            created,
        };
        let a = serial_number(&at("2026-12-03T00:00:00Z"));
        let re = regex::Regex::new(
            "^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
        )
        .unwrap();
        assert!(re.is_match(&a), "{a}");
        assert_eq!(a, serial_number(&at("2026-12-03T00:00:00Z")));
        assert_ne!(a, serial_number(&at("2026-12-03T00:00:01Z")));
    }
}
