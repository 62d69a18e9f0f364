//! The DOS (MBR) partition table Raspberry Pi OS images use (not GPT).

use anyhow::bail;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub number: u8,
    pub kind: u8,
    pub start: u64,
    pub size: u64,
}

impl Partition {
    pub fn is_fat(&self) -> bool {
        matches!(self.kind, 0x01 | 0x04 | 0x06 | 0x0b | 0x0c | 0x0e)
    }

    pub fn is_linux(&self) -> bool {
        self.kind == 0x83
    }
}

/// Parses a DOS partition table (Pi OS images use MBR, not GPT).
pub fn parse_mbr(mbr: &[u8; 512], disk_len: u64) -> anyhow::Result<Vec<Partition>> {
    if mbr[510..512] != [0x55, 0xaa] {
        bail!("no MBR partition table (boot signature 55 AA missing)");
    }
    let mut parts = Vec::new();
    for i in 0..4u8 {
        let e = &mbr[446 + 16 * usize::from(i)..][..16];
        let kind = e[4];
        let lba = u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]]));
        let sectors = u64::from(u32::from_le_bytes([e[12], e[13], e[14], e[15]]));
        if kind == 0 || sectors == 0 {
            continue;
        }
        if kind == 0xee {
            bail!("the disk uses GPT; Raspberry Pi OS images use an MBR partition table");
        }
        let (start, size) = (lba * 512, sectors * 512);
        if start + size > disk_len {
            bail!(
                "partition {} ends at byte {} but the image has only {disk_len} bytes: it is truncated",
                i + 1,
                start + size
            );
        }
        parts.push(Partition {
            number: i + 1,
            kind,
            start,
            size,
        });
    }
    if parts.is_empty() {
        bail!("the partition table is empty");
    }
    // One partition over another, or over the table itself, is a damaged table: what
    // one file system calls free the other may use.
    for (i, a) in parts.iter().enumerate() {
        if a.start < 512 {
            bail!(
                "partition {} starts at sector 0, over the partition table: the table is damaged",
                a.number
            );
        }
        if let Some(b) = parts[i + 1..]
            .iter()
            .find(|b| a.start < b.start + b.size && b.start < a.start + a.size)
        {
            bail!(
                "partitions {} and {} overlap: the partition table is damaged",
                a.number,
                b.number
            );
        }
    }
    Ok(parts)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn mbr(entries: &[(u8, u32, u32)]) -> [u8; 512] {
        let mut m = [0u8; 512];
        for (i, (kind, lba, n)) in entries.iter().enumerate() {
            let e = &mut m[446 + 16 * i..][..16];
            e[4] = *kind;
            e[8..12].copy_from_slice(&lba.to_le_bytes());
            e[12..16].copy_from_slice(&n.to_le_bytes());
        }
        m[510] = 0x55;
        m[511] = 0xaa;
        m
    }

    #[test]
    fn pi_os_layout() {
        let p = parse_mbr(
            &mbr(&[(0x0c, 8192, 1_048_576), (0x83, 1_056_768, 4_000_000)]),
            4 << 30,
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[0].is_fat() && p[1].is_linux());
        assert_eq!(p[0].start, 8192 * 512);
    }

    #[test]
    fn an_mbr_without_signature_a_gpt_or_a_truncated_table_is_refused() {
        assert!(
            parse_mbr(&[0u8; 512], 1 << 30)
                .unwrap_err()
                .to_string()
                .contains("55 AA")
        );
        assert!(
            parse_mbr(&mbr(&[(0xee, 1, 100)]), 1 << 30)
                .unwrap_err()
                .to_string()
                .contains("GPT")
        );
        assert!(
            parse_mbr(&mbr(&[(0x83, 8192, 1 << 20)]), 1 << 20)
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        assert!(parse_mbr(&mbr(&[]), 1 << 20).is_err());
    }

    #[test]
    fn overlapping_partitions_or_one_over_the_table_are_refused() {
        let err = |m| parse_mbr(&m, 1 << 30).unwrap_err().to_string();
        assert!(err(mbr(&[(0x0c, 8192, 8192), (0x83, 12288, 8192)])).contains("overlap"));
        assert!(err(mbr(&[(0x0c, 8192, 8192), (0x05, 2048, 1 << 20)])).contains("overlap"));
        assert!(err(mbr(&[(0x83, 0, 8192)])).contains("sector 0"));
        assert!(parse_mbr(&mbr(&[(0x0c, 8192, 8192), (0x83, 16384, 8192)]), 1 << 30).is_ok());
    }
}
