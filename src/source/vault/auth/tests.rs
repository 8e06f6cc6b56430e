//! The token file's bad inputs: each a clear error naming the file, never its content.

use secrecy::ExposeSecret;

use super::{read_token_file, Credential};
use crate::KeyErrorKind;

fn file_with(content: &[u8]) -> (tempfile::TempDir, Credential, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, content).unwrap();
    let shown = path.display().to_string();
    (dir, Credential::File(path), shown)
}

#[tokio::test]
async fn a_token_file_is_trimmed() {
    let (_dir, file, _) = file_with(b"  hvs.CAESIagent-token-0001\n");
    let token = read_token_file(&file).await.unwrap();
    assert_eq!(token.expose_secret(), "hvs.CAESIagent-token-0001");
}

#[tokio::test]
async fn bad_token_files_name_the_file_and_hide_the_content() {
    let cases: [(&[u8], KeyErrorKind, &str); 4] = [
        (b"\n \n", KeyErrorKind::Missing, "is empty"),
        (
            b"hvs.secret\x01part",
            KeyErrorKind::Invalid,
            "is not a valid header value",
        ),
        (
            b"hvs.secret\npart",
            KeyErrorKind::Invalid,
            "is not a valid header value",
        ),
        (
            b"hvs.secret\xffpart",
            KeyErrorKind::Unreadable,
            "is not valid UTF-8",
        ),
    ];
    for (content, kind, needle) in cases {
        let (_dir, file, shown) = file_with(content);
        let err = read_token_file(&file).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("the Vault token from file {shown}: ")),
            "{msg}"
        );
        assert!(msg.contains(needle), "{msg}");
        assert!(!msg.contains("secret"), "{msg}");
    }
    let missing = Credential::File("/nonexistent/agent/token".into());
    let err = read_token_file(&missing).await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Missing);
    assert!(
        err.to_string().contains("file /nonexistent/agent/token"),
        "{err}"
    );
}
