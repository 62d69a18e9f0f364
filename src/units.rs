//! Sizes and durations as people read them, for log lines, summaries and notes.

/// Sizes as people read them: `112.8 MiB`, `2.1 KiB`, `83 B`.
pub fn human_size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KIB * KIB * KIB {
        format!("{:.2} GiB", b / (KIB * KIB * KIB))
    } else if b >= KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{bytes} B")
    }
}

/// `1h 2m 3s`, `1m 0s`, `59s`.
pub fn human_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_size(83), "83 B");
        assert_eq!(human_size(2150), "2.1 KiB");
        assert_eq!(human_size(118_325_364), "112.8 MiB");
        assert_eq!(human_size(3 << 30), "3.00 GiB");
    }

    #[test]
    fn durations_read_in_hours_minutes_and_seconds() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(60), "1m 0s");
        assert_eq!(human_duration(3661), "1h 1m 1s");
        assert_eq!(human_duration(3600), "1h 0m 0s");
    }
}
