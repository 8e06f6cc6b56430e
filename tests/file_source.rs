//! `FileKeySource` against real files: trimming, every error, permissions, refresh hint.

#![cfg(all(feature = "env", feature = "file"))]

mod support;

use std::path::Path;
use std::time::Duration;

use tower_bearer::{FileKeySource, KeyErrorKind, KeySource};

const KEY: &str = "sk-file-key-0123456789abcdef";

async fn load(path: &Path) -> Result<tower_bearer::ApiKey, tower_bearer::KeyError> {
    FileKeySource::new(path).load().await
}

#[tokio::test]
async fn trims_surrounding_whitespace_and_sets_the_refresh_hint() {
    let dir = tempfile::tempdir().unwrap();
    for (i, content) in [
        format!("{KEY}\n"),
        format!("{KEY}\r\n"),
        format!("  \t{KEY} \n\n"),
        KEY.to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let path = dir.path().join(format!("k{i}"));
        std::fs::write(&path, content).unwrap();
        let key = load(&path).await.unwrap();
        assert_eq!(key.expose_secret(), KEY);
        assert_eq!(key.refresh_hint(), Some(Duration::from_secs(60)));
    }
    let path = dir.path().join("k0");
    let custom = FileKeySource::new(&path).refresh_after(Duration::from_secs(5));
    assert_eq!(
        custom.load().await.unwrap().refresh_hint(),
        Some(Duration::from_secs(5))
    );
    let never = FileKeySource::new(&path).no_refresh();
    assert_eq!(never.load().await.unwrap().refresh_hint(), None);
}

#[tokio::test]
async fn every_error_names_the_path_and_the_cause_but_not_the_contents() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: Vec<(&str, Vec<u8>, KeyErrorKind, &str)> = vec![
        ("empty", b"".to_vec(), KeyErrorKind::Missing, "is empty"),
        (
            "blank",
            b"  \n\t\n".to_vec(),
            KeyErrorKind::Missing,
            "is empty",
        ),
        (
            "two-lines",
            format!("{KEY}\nsk-second-line-000000000000\n").into_bytes(),
            KeyErrorKind::Invalid,
            "more than one line",
        ),
        (
            "binary",
            vec![0xff, 0xfe, 0x00, 0x41],
            KeyErrorKind::Unreadable,
            "not UTF-8",
        ),
        (
            "huge",
            vec![b'k'; 64 * 1024 + 1],
            KeyErrorKind::Invalid,
            "larger than 65536 bytes",
        ),
        (
            "spaced",
            b"sk-file key-0123456789abcdef".to_vec(),
            KeyErrorKind::Invalid,
            "space",
        ),
        (
            "bearer",
            format!("Bearer {KEY}").into_bytes(),
            KeyErrorKind::Invalid,
            "Bearer",
        ),
    ];
    for (name, content, kind, cause) in cases {
        let path = d.join(name);
        std::fs::write(&path, &content).unwrap();
        let err = load(&path).await.unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.kind(), kind, "{name}: {msg}");
        assert!(
            msg.starts_with(&format!("key file {}: ", path.display())),
            "{name}: {msg}"
        );
        assert!(msg.contains(cause), "{name}: {msg}");
        assert!(!msg.contains("0123456789"), "{name} leaks: {msg}");
        assert!(
            !format!("{err:?}").contains("0123456789"),
            "{name} leaks in Debug"
        );
    }

    let missing = d.join("nope");
    let err = load(&missing).await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Missing);
    assert!(err.to_string().ends_with("does not exist"), "{err}");

    let err = load(d).await.unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[cfg(unix)]
#[tokio::test]
async fn unreadable_files_say_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked");
    std::fs::write(&path, KEY).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&path).is_ok() {
        // Root (as in CI containers) reads anything: the denial cannot be staged here.
        eprintln!("skipped: running with privileges that ignore file modes");
        return;
    }
    let err = load(&path).await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Unreadable);
    assert!(err.to_string().contains("permission denied"), "{err}");
}
