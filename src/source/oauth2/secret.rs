//! The client secret: given as it is, or read from a file or an environment variable at each
//! load (so a rotated secret is picked up), into buffers zeroed when dropped.

use std::io::Read;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::{KeyError, KeyErrorKind};

/// Secret files bigger than this are the wrong file: a client secret is a few dozen bytes.
const SECRET_CAP: usize = 64 * 1024;

/// Where the client secret comes from.
#[derive(Clone)]
pub(super) enum ClientSecret {
    Value(SecretString),
    File(PathBuf),
    Env(String),
}

impl ClientSecret {
    /// `the client secret given to the builder`, `client secret file /path`, `client secret
    /// variable NAME`: for messages and `Debug`, never the secret.
    pub(super) fn describe(&self) -> String {
        match self {
            ClientSecret::Value(_) => "the client secret given to the builder".into(),
            ClientSecret::File(path) => format!("client secret file {}", path.display()),
            ClientSecret::Env(var) => format!("client secret variable {var}"),
        }
    }

    /// The secret, trimmed (a file or a variable), read now.
    pub(super) async fn read(&self) -> Result<SecretString, KeyError> {
        let fail = |kind, cause: &str| KeyError::new(kind, format!("{}: {cause}", self.describe()));
        let bytes: Zeroizing<Vec<u8>> = match self {
            ClientSecret::Value(secret) => return Ok(secret.clone()),
            ClientSecret::Env(var) => match std::env::var(var) {
                Ok(v) => Zeroizing::new(v.into_bytes()),
                Err(std::env::VarError::NotPresent) => {
                    return Err(fail(KeyErrorKind::Missing, "is not set"))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(fail(KeyErrorKind::Unreadable, "is not valid Unicode"))
                }
            },
            ClientSecret::File(path) => {
                let path = path.clone();
                match tokio::task::spawn_blocking(move || read_capped(&path)).await {
                    Ok(Ok(bytes)) => bytes,
                    Ok(Err(e)) => {
                        let kind = match e.kind() {
                            std::io::ErrorKind::NotFound => KeyErrorKind::Missing,
                            _ => KeyErrorKind::Unreadable,
                        };
                        return Err(fail(kind, &e.to_string()).with_source(e));
                    }
                    Err(join) => return Err(fail(KeyErrorKind::Other, &join.to_string())),
                }
            }
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return Err(fail(KeyErrorKind::Unreadable, "is not valid UTF-8"));
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(fail(KeyErrorKind::Missing, "is empty"));
        }
        Ok(SecretString::from(trimmed.to_owned()))
    }
}

/// Reads at most [`SECRET_CAP`] bytes into a buffer allocated once (no reallocation leaves a
/// copy behind) and zeroed on drop.
fn read_capped(path: &Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(SECRET_CAP + 1));
    std::fs::File::open(path)?
        .take(SECRET_CAP as u64 + 1)
        .read_to_end(&mut buf)?;
    if buf.len() > SECRET_CAP {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("is larger than {} KiB", SECRET_CAP / 1024),
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[tokio::test]
    async fn files_are_read_trimmed_at_each_call() {
        let dir = std::env::temp_dir().join(format!("tb-oauth2-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        let secret = ClientSecret::File(path.clone());
        let e = secret.read().await.unwrap_err();
        assert_eq!(e.kind(), KeyErrorKind::Missing);
        assert!(
            e.cause()
                .starts_with(&format!("client secret file {}: ", path.display())),
            "{e}"
        );
        std::fs::write(&path, "  first-secret\n").unwrap();
        assert_eq!(secret.read().await.unwrap().expose_secret(), "first-secret");
        std::fs::write(&path, "second-secret\n").unwrap();
        assert_eq!(
            secret.read().await.unwrap().expose_secret(),
            "second-secret"
        );
        std::fs::write(&path, " \n").unwrap();
        let e = secret.read().await.unwrap_err();
        assert_eq!(e.kind(), KeyErrorKind::Missing);
        assert!(e.to_string().ends_with("is empty"), "{e}");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert_eq!(
            secret.read().await.unwrap_err().kind(),
            KeyErrorKind::Unreadable
        );
        std::fs::write(&path, vec![b'a'; SECRET_CAP + 1]).unwrap();
        let e = secret.read().await.unwrap_err();
        assert!(e.to_string().contains("larger than 64 KiB"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn descriptions_never_hold_the_secret() {
        let value = ClientSecret::Value(SecretString::from("hunter2-hunter2".to_owned()));
        assert_eq!(value.describe(), "the client secret given to the builder");
        assert_eq!(
            ClientSecret::Env("CLIENT_SECRET".into()).describe(),
            "client secret variable CLIENT_SECRET"
        );
    }
}
