//! When to refresh a key and when to try a failed load again: pure arithmetic that never
//! panics, whatever the hint (hints come from the network, e.g. Vault leases).

use std::time::Duration;

use tokio::time::Instant;

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Refresh hints are clamped to this: `Duration::MAX` means "as good as never", and no
/// deadline computed from a hint may overflow (hints come from the network, e.g. Vault leases).
pub(crate) const MAX_REFRESH_HINT: Duration = Duration::from_secs(365 * 24 * 3600);
/// And from below to this: a zero or tiny hint (`expires_in: 0` from a token endpoint) would
/// make every key due the moment it is stored, and every request load.
pub(crate) const MIN_REFRESH_HINT: Duration = Duration::from_secs(1);

/// `now + wait`, or `None` ("never") when that is past what `Instant` can hold.
pub(crate) fn deadline(now: Instant, wait: Duration) -> Option<Instant> {
    now.checked_add(wait)
}

/// Jittered exponential backoff: 0.5 s, 1 s, 2 s … up to 30 s, each ±20%.
pub(crate) fn backoff(failures: u32) -> Duration {
    let base = BACKOFF_MIN
        .saturating_mul(1u32 << failures.min(16))
        .min(BACKOFF_MAX);
    base.mul_f64(0.8 + 0.4 * fastrand::f64())
}

/// When to start refreshing a key good for `ttl`: somewhere in the last tenth of it. Hints are
/// clamped to [`MIN_REFRESH_HINT`] ..= [`MAX_REFRESH_HINT`].
pub(crate) fn refresh_ahead(ttl: Duration) -> Duration {
    ttl.clamp(MIN_REFRESH_HINT, MAX_REFRESH_HINT)
        .mul_f64(0.9 + 0.1 * fastrand::f64())
}

/// How close to its expiry a key may be refreshed at the latest: this, or half its remaining
/// life when that is shorter (a token that lives 2 s is refreshed after 1 s).
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// When to start refreshing a key that expires in `left`: in the last tenth or so of its life
/// (jittered, so a fleet does not reload in step), and no later than [`EXPIRY_MARGIN`] before
/// the end. Never panics: `left` is clamped like a hint.
pub(crate) fn refresh_before_expiry(left: Duration) -> Duration {
    let left = left.min(MAX_REFRESH_HINT);
    let ahead = left.mul_f64(0.85 + 0.05 * fastrand::f64());
    let latest = left.saturating_sub(EXPIRY_MARGIN.min(left / 2));
    ahead.min(latest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_hint_overflows_a_deadline() {
        let now = Instant::now();
        for ttl in [
            Duration::MAX,
            Duration::from_secs(u64::MAX),
            MAX_REFRESH_HINT * 2,
        ] {
            let ahead = refresh_ahead(ttl);
            assert!(ahead <= MAX_REFRESH_HINT && ahead >= MAX_REFRESH_HINT.mul_f64(0.9));
            assert!(deadline(now, ahead).is_some());
        }
        assert_eq!(deadline(now, Duration::MAX), None);
        assert!(refresh_ahead(Duration::ZERO) >= MIN_REFRESH_HINT.mul_f64(0.9));
    }
}
