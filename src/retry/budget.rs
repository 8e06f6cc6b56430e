//! How much a policy may retry: at most `max_retries` times for one request, and only while the
//! retry budget that every clone of the policy shares has some left.

use std::sync::Arc;
use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};

/// The default budget: retries may add 20 % to the load over a 10 s window, plus one a second.
pub(super) fn default_budget() -> TpsBudget {
    TpsBudget::new(Duration::from_secs(10), 1, 0.2)
}

/// The retries one request has made, and the budget they are taken from.
///
/// # Clone
///
/// tower's `Retry` clones the policy for every request, so a clone counts the retries of its
/// own request (from the count of the policy it was cloned from: 0 for a layer's) and shares
/// the budget with every other clone.
#[derive(Clone)]
pub(super) struct Allowance {
    pub(super) budget: Arc<TpsBudget>,
    /// Retries made so far for the request this clone of the policy follows.
    pub(super) attempts: u32,
}

impl Allowance {
    pub(super) fn new(budget: Arc<TpsBudget>) -> Self {
        Allowance {
            budget,
            attempts: 0,
        }
    }

    /// Whether the request has had its `max_retries` retries.
    pub(super) fn used_up(&self, max_retries: u32) -> bool {
        self.attempts >= max_retries
    }

    /// Called at every call of a request: the first one (no retry made yet) is a request the
    /// budget counts, the ones after a retry are not.
    pub(super) fn on_call(&self) {
        if self.attempts == 0 {
            self.budget.deposit();
        }
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub(super) fn withdraw(&self) -> bool {
        self.budget.withdraw()
    }

    /// Counts a retry that is going ahead.
    pub(super) fn count_retry(&mut self) {
        self.attempts += 1;
    }
}
