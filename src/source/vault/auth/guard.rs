//! What keeps the source from hammering Vault's login: a refused credential is remembered (as
//! a digest) and not sent again until it changes or a long backoff has passed, and logins
//! forced by a refused token are rate-limited.

use std::time::Duration;

use tokio::time::Instant;

/// How long a credential Vault refused is not sent again (unless it changes). Long, because
/// every refused login counts toward Vault's lockout of the role for every instance.
pub(crate) const REFUSED_LOGIN_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// At most one login forced by a refused token (a 403 that `lookup-self` confirms) per this.
pub(crate) const FORCED_LOGIN_INTERVAL: Duration = Duration::from_secs(30);

/// A login Vault refused: the credential's digest, when, and what Vault said.
struct Refusal {
    digest: [u8; 32],
    at: Instant,
    cause: String,
}

/// A refused login that is still in force for the same credential.
pub(crate) struct StillRefused<'a> {
    pub(crate) ago: Duration,
    pub(crate) wait: Duration,
    pub(crate) cause: &'a str,
}

#[derive(Default)]
pub(crate) struct Guards {
    refused: Option<Refusal>,
    last_forced: Option<Instant>,
}

impl Guards {
    /// Whether a login with the credential of `digest` must not be tried at `now`.
    pub(crate) fn still_refused(
        &self,
        digest: &[u8; 32],
        now: Instant,
    ) -> Option<StillRefused<'_>> {
        let r = self.refused.as_ref()?;
        let ago = now.saturating_duration_since(r.at);
        if r.digest != *digest || ago >= REFUSED_LOGIN_BACKOFF {
            return None;
        }
        Some(StillRefused {
            ago,
            wait: REFUSED_LOGIN_BACKOFF - ago,
            cause: &r.cause,
        })
    }

    pub(crate) fn refused(&mut self, digest: [u8; 32], cause: String, now: Instant) {
        self.refused = Some(Refusal {
            digest,
            at: now,
            cause,
        });
    }

    pub(crate) fn accepted(&mut self) {
        self.refused = None;
    }

    /// How long until a forced login is allowed again, if not now.
    pub(crate) fn forced_login_wait(&self, now: Instant) -> Option<Duration> {
        let since = now.saturating_duration_since(self.last_forced?);
        (since < FORCED_LOGIN_INTERVAL).then(|| FORCED_LOGIN_INTERVAL - since)
    }

    pub(crate) fn forced_login(&mut self, now: Instant) {
        self.last_forced = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_holds_for_the_same_credential_until_the_backoff_ends() {
        let t0 = Instant::now();
        let mut g = Guards::default();
        assert!(g.still_refused(&[1; 32], t0).is_none());
        g.refused([1; 32], "login refused".into(), t0);
        let r = g
            .still_refused(&[1; 32], t0 + Duration::from_secs(60))
            .unwrap();
        assert_eq!(r.wait, Duration::from_secs(240));
        assert_eq!(r.cause, "login refused");
        assert!(
            g.still_refused(&[2; 32], t0).is_none(),
            "a new credential is tried"
        );
        assert!(g
            .still_refused(&[1; 32], t0 + REFUSED_LOGIN_BACKOFF)
            .is_none());
        g.accepted();
        assert!(g.still_refused(&[1; 32], t0).is_none());
    }

    #[test]
    fn forced_logins_are_rate_limited() {
        let t0 = Instant::now();
        let mut g = Guards::default();
        assert_eq!(g.forced_login_wait(t0), None, "the first is free");
        g.forced_login(t0);
        assert_eq!(
            g.forced_login_wait(t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(20))
        );
        assert_eq!(g.forced_login_wait(t0 + FORCED_LOGIN_INTERVAL), None);
    }
}
