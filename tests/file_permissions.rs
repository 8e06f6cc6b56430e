//! The permission warning of `FileKeySource`, alone in its test binary: `tracing` caches
//! per-callsite interest process-wide, and another test hitting the same warning at the moment
//! this one installs its capturing subscriber can leave that cache stale.

#![cfg(all(unix, feature = "file"))]

mod support;

use tower_bearer::{FileKeySource, KeySource};

const KEY: &str = "sk-file-key-0123456789abcdef";

#[tokio::test]
async fn warns_once_when_group_or_others_can_read_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    let closed = dir.path().join("closed");
    for (path, mode) in [(&open, 0o644), (&closed, 0o600)] {
        std::fs::write(path, KEY).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let (dispatch, logs) = support::logs::capture();
    let _guard = tracing::dispatcher::set_default(&dispatch);

    FileKeySource::new(&closed).load().await.unwrap();
    assert!(
        !logs.text().contains("readable by group or others"),
        "{}",
        logs.text()
    );

    let source = FileKeySource::new(&open);
    source.load().await.unwrap();
    source.load().await.unwrap();
    let text = logs.text();
    assert_eq!(
        text.matches("readable by group or others").count(),
        1,
        "{text}"
    );
    assert!(text.contains("644"), "{text}");
    assert!(!text.contains(KEY));
}
