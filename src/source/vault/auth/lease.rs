//! A token had by logging in, and when to use, renew or replace it. Pure arithmetic on
//! `Instant`s and `Duration`s, none of which can overflow whatever lease Vault sends.

use std::time::Duration;

use secrecy::SecretString;
use tokio::time::Instant;

/// The longest lease taken from Vault's answers: a year. Anything longer (up to
/// `u64::MAX` seconds, which is valid JSON) is read as a year, so no arithmetic overflows.
pub(crate) const MAX_LEASE: Duration = Duration::from_secs(365 * 24 * 3600);

/// `secs` seconds, at most [`MAX_LEASE`].
pub(crate) fn lease_secs(secs: u64) -> Duration {
    Duration::from_secs(secs).min(MAX_LEASE)
}

/// A token from a login, with its lease.
pub(crate) struct Held {
    pub(crate) token: SecretString,
    pub(crate) obtained: Instant,
    /// Zero: the token never expires (a login that grants no lease).
    pub(crate) lease: Duration,
    /// The lease the login granted, asked for again at each renewal.
    pub(crate) granted: Duration,
    pub(crate) renewable: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Use,
    Renew,
    Login,
}

impl Held {
    pub(crate) fn new(token: SecretString, lease: Duration, renewable: bool) -> Held {
        let lease = lease.min(MAX_LEASE);
        Held {
            token,
            obtained: Instant::now(),
            lease,
            granted: lease,
            renewable,
        }
    }

    fn left(&self, now: Instant) -> Duration {
        self.lease
            .saturating_sub(now.saturating_duration_since(self.obtained))
    }

    /// The renewal margin: `renew_within` (default a third of the lease), at most half the
    /// lease, so a margin wider than the lease does not renew at every load.
    fn margin(&self, renew_within: Option<Duration>) -> Duration {
        renew_within.unwrap_or(self.lease / 3).min(self.lease / 2)
    }

    /// What to do with this token at `now`: use it; renew it once less than the margin is
    /// left; log in again when it is not renewable or about to expire.
    pub(crate) fn next(&self, now: Instant, renew_within: Option<Duration>) -> Next {
        if self.lease.is_zero() {
            return Next::Use;
        }
        let left = self.left(now);
        let safety = (self.lease / 10).min(Duration::from_secs(10));
        if left <= safety {
            return Next::Login;
        }
        if left <= self.margin(renew_within) {
            return if self.renewable {
                Next::Renew
            } else {
                Next::Login
            };
        }
        Next::Use
    }

    /// How long until the token should be renewed (or replaced); `None` if it never expires.
    pub(crate) fn renew_in(
        &self,
        now: Instant,
        renew_within: Option<Duration>,
    ) -> Option<Duration> {
        if self.lease.is_zero() {
            return None;
        }
        Some(self.left(now).saturating_sub(self.margin(renew_within)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(lease: u64, renewable: bool, at: Instant) -> Held {
        Held {
            token: SecretString::from("t".to_owned()),
            obtained: at,
            lease: Duration::from_secs(lease),
            granted: Duration::from_secs(lease),
            renewable,
        }
    }

    #[test]
    fn lease_lifecycle() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let h = held(1200, true, t0);
        assert_eq!(h.next(t0, None), Next::Use);
        assert_eq!(h.next(t0 + s(799), None), Next::Use);
        assert_eq!(h.next(t0 + s(800), None), Next::Renew); // a third left
        assert_eq!(h.next(t0 + s(1190), None), Next::Login); // about to expire
        assert_eq!(h.next(t0 + s(5000), None), Next::Login); // expired
        assert_eq!(h.renew_in(t0, None), Some(s(800)));
        assert_eq!(h.renew_in(t0 + s(900), None), Some(s(0)));
        assert_eq!(h.next(t0 + s(1000), Some(s(60))), Next::Use);
        assert_eq!(h.next(t0 + s(1150), Some(s(60))), Next::Renew);
    }

    /// Issue 19 Low 8: `renew_token_within(2h)` on a shorter lease renewed at every load and
    /// hinted 5 s; the margin is now at most half the lease.
    #[test]
    fn a_wide_margin_is_capped_at_half_the_lease() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let h = held(3600, true, t0);
        let wide = Some(s(7200));
        assert_eq!(h.next(t0, wide), Next::Use);
        assert_eq!(h.next(t0 + s(1799), wide), Next::Use);
        assert_eq!(h.next(t0 + s(1800), wide), Next::Renew);
        assert_eq!(h.renew_in(t0, wide), Some(s(1800)));
    }

    #[test]
    fn not_renewable_logs_in_again_instead() {
        let t0 = Instant::now();
        let h = held(1200, false, t0);
        assert_eq!(h.next(t0 + Duration::from_secs(800), None), Next::Login);
    }

    #[test]
    fn no_lease_never_expires() {
        let t0 = Instant::now();
        let h = held(0, false, t0);
        assert_eq!(h.next(t0 + Duration::from_secs(1 << 30), None), Next::Use);
        assert_eq!(h.renew_in(t0, None), None);
    }

    /// Issue 11 item 5 / 19: a lease of `u64::MAX` seconds is clamped; nothing panics.
    #[test]
    fn a_huge_lease_is_clamped() {
        assert_eq!(lease_secs(u64::MAX), MAX_LEASE);
        let h = Held::new(
            SecretString::from("t".to_owned()),
            lease_secs(u64::MAX),
            true,
        );
        let now = Instant::now();
        assert_eq!(h.next(now, Some(Duration::MAX)), Next::Use);
        assert!(h.renew_in(now, Some(Duration::MAX)).unwrap() <= MAX_LEASE);
    }
}
