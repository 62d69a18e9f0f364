//! How long to wait between attempts of an operation that can fail for a while (a
//! GitHub request, a mirror probe): the waits double from a first one, a server's own
//! hint (`retry-after`) wins, and no wait exceeds a cap. One policy for every retry loop.

use std::time::Duration;

/// The attempts allowed and the waits between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The wait after the first failure; each later one doubles (at most 32 times this).
    pub first: Duration,
    /// No wait is longer, a server's hint included.
    pub max: Duration,
}

impl Backoff {
    /// GitHub's API: 1 s, 2 s, 4 s … at most 120 s, or what `retry-after` says.
    pub fn github(attempts: u32) -> Self {
        Self {
            attempts: attempts.max(1),
            first: Duration::from_secs(1),
            max: Duration::from_secs(120),
        }
    }

    /// A mirror probe: short waits (200 ms, 400 ms …), since a mirror that does not
    /// answer soon is passed over for the next candidate.
    pub fn mirror_probe(retries: u32) -> Self {
        Self {
            attempts: retries.saturating_add(1),
            first: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }

    /// After `failed` attempts have failed: how long to wait before the next one, or
    /// `None` when none is left.
    pub fn next(&self, failed: u32, hint: Option<Duration>) -> Option<Duration> {
        if failed >= self.attempts {
            return None;
        }
        let doubled = self
            .first
            .saturating_mul(1 << failed.saturating_sub(1).min(5));
        Some(hint.unwrap_or(doubled).min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_stop_after_the_last_attempt() {
        let b = Backoff::github(8);
        let waits: Vec<u64> = (1..8).map(|n| b.next(n, None).unwrap().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 32]);
        assert_eq!(b.next(8, None), None);
        assert_eq!(
            Backoff::github(0).next(1, None),
            None,
            "one attempt at least, no retry"
        );
    }

    #[test]
    fn a_servers_hint_wins_but_not_beyond_the_cap() {
        let b = Backoff::github(3);
        assert_eq!(
            b.next(1, Some(Duration::from_secs(7))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            b.next(1, Some(Duration::from_secs(3600))),
            Some(Duration::from_secs(120))
        );
    }

    #[test]
    fn mirror_probes_wait_briefly() {
        let b = Backoff::mirror_probe(2);
        assert_eq!(b.next(1, None), Some(Duration::from_millis(200)));
        assert_eq!(b.next(2, None), Some(Duration::from_millis(400)));
        assert_eq!(b.next(3, None), None);
    }
}
