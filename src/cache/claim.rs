//! The right to drive a due refresh, held by one request at a time.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Current, KeyCache, LoadSettings};
use crate::KeyError;

/// An owned claim on the refresh: however its holder ends (finished, dropped before its first
/// poll, cancelled mid-load, panicked), dropping it gives the claim back and moves the epoch,
/// so every clone that kept the due key meanwhile looks at the clock again.
pub(crate) struct RefreshClaim {
    cache: Arc<KeyCache>,
}

impl KeyCache {
    /// Claims the due refresh; `None` when another request holds it.
    pub(crate) fn claim_refresh(self: &Arc<Self>) -> Option<RefreshClaim> {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(RefreshClaim {
            cache: self.clone(),
        })
    }
}

impl RefreshClaim {
    /// Runs the refresh. The future owns the claim from the moment it is made.
    pub(crate) async fn refresh(
        self,
        settings: Arc<LoadSettings>,
    ) -> Result<Arc<Current>, KeyError> {
        self.cache.clone().refresh(settings).await
    }
}

impl Drop for RefreshClaim {
    fn drop(&mut self) {
        self.cache.refreshing.store(false, Ordering::Release);
        self.cache.bump_epoch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApiKey, StaticKey};

    #[test]
    fn a_claim_dropped_unpolled_is_given_back_and_moves_the_epoch() {
        let cache = KeyCache::new(Box::new(StaticKey::new(
            ApiKey::new("sk-claim-test-0000000").unwrap(),
        )));
        let claim = cache.claim_refresh().expect("first claim");
        assert!(cache.claim_refresh().is_none(), "held");
        let epoch = cache.epoch();
        let fut = claim.refresh(Arc::default());
        drop(fut);
        assert!(cache.epoch() > epoch, "clones must look again");
        assert!(cache.claim_refresh().is_some(), "given back");
    }
}
