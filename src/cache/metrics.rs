//! Feature `metrics`: the key's health through the `metrics` facade, so any exporter
//! (Prometheus, OpenTelemetry, statsd) sees it. Recorded on loads, 401s and replays, never per
//! request. Labels are low-cardinality: the layer's name (`layer`, "default" when unnamed) and
//! an outcome or reason; never a key or a fingerprint.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `tower_bearer_loads_total` | counter | `layer`, `outcome` (`ok`, or the error kind: `unavailable`, `timeout`…) |
//! | `tower_bearer_rotations_total` | counter | `layer`, `reason` (`initial`, `refresh`, `rejected`, `manual`) |
//! | `tower_bearer_replays_total` | counter | `layer`, `outcome` (`replayed`, `body_not_replayable`, `same_key`, `reload_failed`, `key_expired`) |
//! | `tower_bearer_expired_total` | counter | `layer` |
//! | `tower_bearer_consecutive_failures` | gauge | `layer` |
//! | `tower_bearer_key_loaded_timestamp_seconds` | gauge | `layer` |
//! | `tower_bearer_key_expiry_timestamp_seconds` | gauge | `layer` (`+Inf` for a key with no expiry) |
//!
//! Ages are exported as timestamps, as Prometheus advises: the key's age is
//! `time() - tower_bearer_key_loaded_timestamp_seconds`, its time to expiry
//! `tower_bearer_key_expiry_timestamp_seconds - time()`.

use std::time::SystemTime;

use super::LoadSettings;
use crate::event::{KeyEvent, SkipReason};
use crate::{ApiKey, KeyError, KeyErrorKind, RotationReason};

fn layer(settings: &LoadSettings) -> String {
    settings.name.as_deref().unwrap_or("default").to_owned()
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A load finished.
pub(super) fn load(settings: &LoadSettings, outcome: Result<&ApiKey, &KeyError>) {
    let layer = layer(settings);
    let label = match outcome {
        Ok(_) => "ok",
        Err(err) => kind_label(err.kind()),
    };
    metrics::counter!("tower_bearer_loads_total", "layer" => layer.clone(), "outcome" => label)
        .increment(1);
    if let Ok(key) = outcome {
        metrics::gauge!("tower_bearer_key_loaded_timestamp_seconds", "layer" => layer.clone())
            .set(unix_seconds(SystemTime::now()));
        // +Inf for a key that never expires: an alert on `expiry - time() < 300` stays quiet,
        // and the expiry of a key no longer in use does not linger.
        let expiry = key.expiry().map_or(f64::INFINITY, unix_seconds);
        metrics::gauge!("tower_bearer_key_expiry_timestamp_seconds", "layer" => layer).set(expiry);
    }
}

/// Loads that failed in a row.
pub(super) fn failures(settings: &LoadSettings, failures: u32) {
    metrics::gauge!("tower_bearer_consecutive_failures", "layer" => layer(settings))
        .set(f64::from(failures));
}

/// An event the hooks hear.
pub(super) fn record(settings: &LoadSettings, event: &KeyEvent) {
    let layer = layer(settings);
    match event {
        KeyEvent::Rotated(rotation) => {
            let reason = match rotation.reason() {
                RotationReason::Initial => "initial",
                RotationReason::Refresh => "refresh",
                RotationReason::Rejected => "rejected",
                RotationReason::Manual => "manual",
            };
            metrics::counter!("tower_bearer_rotations_total", "layer" => layer, "reason" => reason)
                .increment(1);
        }
        KeyEvent::Replayed(_) => {
            metrics::counter!("tower_bearer_replays_total", "layer" => layer, "outcome" => "replayed")
                .increment(1);
        }
        KeyEvent::ReplaySkipped(skip) => {
            let outcome = match skip.reason() {
                SkipReason::BodyNotReplayable => "body_not_replayable",
                SkipReason::SameKey => "same_key",
                SkipReason::ReloadFailed => "reload_failed",
                SkipReason::KeyExpired => "key_expired",
                SkipReason::CopyUnusable => "copy_unusable",
            };
            metrics::counter!("tower_bearer_replays_total", "layer" => layer, "outcome" => outcome)
                .increment(1);
        }
        KeyEvent::Expired(_) => {
            metrics::counter!("tower_bearer_expired_total", "layer" => layer).increment(1);
        }
        // Counted by `load`, which sees the good loads too.
        KeyEvent::LoadFailed(_) => {}
    }
}

fn kind_label(kind: KeyErrorKind) -> &'static str {
    match kind {
        KeyErrorKind::Invalid => "invalid",
        KeyErrorKind::Missing => "missing",
        KeyErrorKind::Unreadable => "unreadable",
        KeyErrorKind::Denied => "denied",
        KeyErrorKind::Unavailable => "unavailable",
        KeyErrorKind::Timeout => "timeout",
        KeyErrorKind::Config => "config",
        KeyErrorKind::Expired => "expired",
        _ => "other",
    }
}
