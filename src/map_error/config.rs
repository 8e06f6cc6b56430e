//! What the error mapping's service and future share: its settings and their defaults.

use std::time::Duration;

/// Default for [`ErrorMappingLayer::body_cap`](super::ErrorMappingLayer::body_cap): 64 KiB.
pub const DEFAULT_BODY_CAP: usize = 64 * 1024;

/// Default for [`ErrorMappingLayer::body_timeout`](super::ErrorMappingLayer::body_timeout): 10 s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub(crate) body_cap: usize,
    pub(crate) body_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            body_cap: DEFAULT_BODY_CAP,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}
