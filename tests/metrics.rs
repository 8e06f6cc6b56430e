//! Feature `metrics`: what the layer records through the `metrics` facade, read back with
//! `metrics-util`'s debugging recorder, exact values. One test: the recorder is global.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use support::advance;
use support::sources::{accepting, api, send};
use tower::Layer;
use tower_bearer::{ApiKey, BearerAuthLayer, KeyError, KeyErrorKind, KeyFuture, KeySource};

struct Source {
    n: AtomicUsize,
    down: AtomicBool,
}

impl KeySource for Source {
    fn load(&self) -> KeyFuture<'_> {
        let n = self.n.load(Ordering::SeqCst);
        let down = self.down.load(Ordering::SeqCst);
        Box::pin(async move {
            if down {
                return Err(KeyError::new(KeyErrorKind::Unavailable, "down"));
            }
            let key = ApiKey::new(format!("sk-metrics-key-{n:08}"))?;
            Ok(key.expires_at(SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000)))
        })
    }
}

type Seen = HashMap<(MetricKind, String, Vec<(String, String)>), DebugValue>;

fn snapshot(snapshotter: &metrics_util::debugging::Snapshotter) -> Seen {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((kind, key.name().to_owned(), labels), value)
        })
        .collect()
}

fn get<'a>(
    seen: &'a Seen,
    kind: MetricKind,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    seen.get(&(kind, name.to_owned(), labels))
}

#[tokio::test(start_paused = true)]
async fn loads_rotations_replays_failures_and_timestamps_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");

    let source = Arc::new(Source {
        n: AtomicUsize::new(1),
        down: AtomicBool::new(false),
    });
    let layer = BearerAuthLayer::new(source.clone()).name("azerion");
    let accepted = accepting("sk-metrics-key-00000001");
    let mut svc = layer.layer(api(accepted.clone()));
    send(&mut svc).await.unwrap();
    // A 401, a new key, a replay.
    source.n.store(2, Ordering::SeqCst);
    *accepted.lock().unwrap() = "sk-metrics-key-00000002".to_owned();
    send(&mut svc).await.unwrap();
    // A 401 and the same key back: not replayed.
    *accepted.lock().unwrap() = "sk-metrics-key-00000003".to_owned();
    send(&mut svc).await.unwrap();
    // Two failed manual rotations.
    source.down.store(true, Ordering::SeqCst);
    layer.handle().rotate().await.unwrap_err();
    advance(Duration::from_secs(1)).await;
    layer.handle().rotate().await.unwrap_err();

    let seen = snapshot(&snapshotter);
    let counter =
        |name: &str, labels: &[(&str, &str)]| match get(&seen, MetricKind::Counter, name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!(
                "{name} {labels:?}: {other:?} in {:#?}",
                seen.keys().collect::<Vec<_>>()
            ),
        };
    let gauge = |name: &str| match get(&seen, MetricKind::Gauge, name, &[("layer", "azerion")]) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{name}: {other:?}"),
    };
    let layer_label = ("layer", "azerion");
    assert_eq!(
        counter(
            "tower_bearer_loads_total",
            &[layer_label, ("outcome", "ok")]
        ),
        3
    );
    assert_eq!(
        counter(
            "tower_bearer_loads_total",
            &[layer_label, ("outcome", "unavailable")]
        ),
        2
    );
    assert_eq!(
        counter(
            "tower_bearer_rotations_total",
            &[layer_label, ("reason", "initial")]
        ),
        1
    );
    assert_eq!(
        counter(
            "tower_bearer_rotations_total",
            &[layer_label, ("reason", "rejected")]
        ),
        1
    );
    assert_eq!(
        counter(
            "tower_bearer_replays_total",
            &[layer_label, ("outcome", "replayed")]
        ),
        1
    );
    assert_eq!(
        counter(
            "tower_bearer_replays_total",
            &[layer_label, ("outcome", "same_key")]
        ),
        1
    );
    // The same-key reload counts as a failure; the two failed rotations add to it.
    assert_eq!(gauge("tower_bearer_consecutive_failures"), 3.0);
    assert_eq!(
        gauge("tower_bearer_key_expiry_timestamp_seconds"),
        4_000_000_000.0
    );
    let loaded = gauge("tower_bearer_key_loaded_timestamp_seconds");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - loaded).abs() < 60.0, "{loaded} vs {now}");
    // No label value carries a key or a fingerprint.
    for (_, name, labels) in seen.keys() {
        for (_, value) in labels {
            assert!(!value.contains("sk-"), "{name}: {value}");
        }
    }
}
