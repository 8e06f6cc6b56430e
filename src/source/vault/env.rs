//! The Vault CLI's environment: its variables, and the token helper's `~/.vault-token`.

use std::path::PathBuf;

use secrecy::SecretString;

use crate::{KeyError, KeyErrorKind};

const ORIGIN: &str = "vault CLI environment";

/// The token as the Vault CLI finds it: `VAULT_TOKEN`, else `~/.vault-token`.
pub(crate) fn cli_token() -> Result<SecretString, KeyError> {
    let token = match env_var("VAULT_TOKEN")? {
        Some(token) => token,
        None => token_helper_file()?,
    };
    Ok(SecretString::from(token))
}

/// A variable's value; unset and empty are both `None`, as the Vault CLI takes them.
pub(crate) fn env_var(name: &str) -> Result<Option<String>, KeyError> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v.trim().to_owned())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(KeyError::new(
            KeyErrorKind::Config,
            format!("environment variable {name} is not valid Unicode"),
        )
        .with_origin(ORIGIN)),
    }
}

/// The token the Vault CLI's default token helper keeps in `~/.vault-token`.
fn token_helper_file() -> Result<String, KeyError> {
    let missing = |cause: String| KeyError::new(KeyErrorKind::Missing, cause).with_origin(ORIGIN);
    let home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            missing("VAULT_TOKEN is not set and there is no home directory (HOME) to find ~/.vault-token in".into())
        })?;
    let file = PathBuf::from(home).join(".vault-token");
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(missing(format!(
            "VAULT_TOKEN is not set and {} does not exist (run `vault login`, or set VAULT_TOKEN)",
            file.display()
        )))
        }
        Err(e) => {
            return Err(KeyError::new(
                KeyErrorKind::Unreadable,
                format!(
                    "VAULT_TOKEN is not set and {} cannot be read: {e}",
                    file.display()
                ),
            )
            .with_origin(ORIGIN))
        }
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(missing(format!(
            "VAULT_TOKEN is not set and {} is empty",
            file.display()
        )));
    }
    Ok(token.to_owned())
}

/// The Vault CLI's TLS variables this source does not support. Ignoring them would trust, or
/// present, something else than the user asked for, so `cli_env` refuses them.
const UNSUPPORTED_TLS_VARS: [(&str, &str); 5] = [
    (
        "VAULT_CAPATH",
        "put the CA certificates in one PEM file and set VAULT_CACERT",
    ),
    (
        "VAULT_SKIP_VERIFY",
        "certificate checks cannot be turned off; set VAULT_CACERT to the Vault's CA",
    ),
    (
        "VAULT_TLS_SERVER_NAME",
        "use the name the certificate holds in VAULT_ADDR",
    ),
    (
        "VAULT_CLIENT_CERT",
        "TLS client certificates are not supported; use a token or a login method",
    ),
    (
        "VAULT_CLIENT_KEY",
        "TLS client certificates are not supported; use a token or a login method",
    ),
];

/// Fails with `Config` naming the first unsupported TLS variable that is set
/// (`VAULT_SKIP_VERIFY` only when it asks to skip: `false`/`0` are fine).
pub(crate) fn refuse_unsupported_tls_vars() -> Result<(), KeyError> {
    for (name, advice) in UNSUPPORTED_TLS_VARS {
        let Some(value) = env_var(name)? else {
            continue;
        };
        if name == "VAULT_SKIP_VERIFY"
            && matches!(value.to_ascii_lowercase().as_str(), "false" | "0" | "f")
        {
            continue;
        }
        return Err(KeyError::new(
            KeyErrorKind::Config,
            format!("{name} is set, and this source does not support it: {advice}"),
        )
        .with_origin(ORIGIN));
    }
    Ok(())
}
