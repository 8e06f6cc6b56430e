//! What a credential helper printed, read as a key: one line of plain text, a Kubernetes
//! `ExecCredential`, or an OAuth2 token response.
//!
//! No error here quotes the output: it holds the secret, and a malformed one may hold it
//! anywhere. Errors say what was wrong and where (a JSON line and column), nothing more.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use super::rfc3339;
use crate::{ApiKey, KeyError, KeyErrorKind};

/// The `apiVersion`s of the Kubernetes client authentication API that carry a token.
const EXEC_CREDENTIAL_VERSIONS: [&str; 2] = [
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
];

/// The longest `expires_in` taken seriously: ten years. More is a bug in the helper.
pub(super) const MAX_EXPIRES_IN: Duration = Duration::from_secs(10 * 365 * 86_400);

/// The error codes of RFC 6749, section 5.2: safe to name, since they are not free text.
const OAUTH2_ERRORS: [&str; 6] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
];

fn fail(kind: KeyErrorKind, cause: impl Into<String>) -> KeyError {
    KeyError::new(kind, cause.into())
}

/// The key in `stdout`, read at `now`. `refresh_after` is the hint for a key whose output
/// gives no expiry.
pub(super) fn parse(
    stdout: &[u8],
    now: SystemTime,
    refresh_after: Option<Duration>,
) -> Result<ApiKey, KeyError> {
    let first = stdout.iter().position(|b| !b.is_ascii_whitespace());
    let Some(first) = first else {
        return Err(fail(KeyErrorKind::Missing, "printed nothing on stdout"));
    };
    let (token, expiry) = if stdout[first] == b'{' {
        parse_json(stdout, now)?
    } else {
        (plain(stdout)?, None)
    };
    let key = ApiKey::new(token)?;
    match expiry {
        Some(at) if at <= now => {
            let ago = now.duration_since(at).unwrap_or_default().as_secs();
            Err(fail(
                KeyErrorKind::Expired,
                format!("printed a token that expired {ago} s ago"),
            ))
        }
        Some(at) => Ok(key.expires_at(at)),
        None => Ok(match refresh_after {
            Some(ttl) => key.refresh_after(ttl),
            None => key,
        }),
    }
}

fn plain(stdout: &[u8]) -> Result<String, KeyError> {
    let text = std::str::from_utf8(stdout).map_err(|e| {
        fail(
            KeyErrorKind::Unreadable,
            format!(
                "printed output that is not UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    let line = text.trim();
    if line.contains(['\n', '\r']) {
        return Err(fail(
            KeyErrorKind::Invalid,
            "printed more than one line; a credential helper prints one token, or JSON",
        ));
    }
    Ok(line.to_owned())
}

fn parse_json(stdout: &[u8], now: SystemTime) -> Result<(String, Option<SystemTime>), KeyError> {
    let value: Value = serde_json::from_slice(stdout).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "it ends too early",
            _ => "a syntax error",
        };
        fail(
            KeyErrorKind::Invalid,
            format!(
                "printed malformed JSON ({what} at line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err(fail(
            KeyErrorKind::Invalid,
            "printed JSON that is not an object",
        ));
    };
    if object.contains_key("apiVersion") || object.contains_key("kind") {
        exec_credential(object)
    } else if object.contains_key("access_token") {
        oauth2(object, now)
    } else if let Some(Value::String(code)) = object.remove("error") {
        let code = OAUTH2_ERRORS
            .iter()
            .find(|known| **known == code)
            .map_or(String::new(), |known| format!(" ({known})"));
        Err(fail(
            KeyErrorKind::Denied,
            format!("printed an OAuth2 error response{code} instead of a token"),
        ))
    } else {
        Err(fail(
            KeyErrorKind::Missing,
            "printed JSON that is neither a Kubernetes ExecCredential (status.token) nor an \
             OAuth2 token response (access_token)",
        ))
    }
}

/// A Kubernetes `ExecCredential`: `status.token`, `status.expirationTimestamp`.
fn exec_credential(
    mut object: Map<String, Value>,
) -> Result<(String, Option<SystemTime>), KeyError> {
    if object.get("kind").and_then(Value::as_str) != Some("ExecCredential") {
        return Err(fail(
            KeyErrorKind::Invalid,
            "printed JSON with an apiVersion or kind, but not kind \"ExecCredential\"",
        ));
    }
    let version = object.get("apiVersion").and_then(Value::as_str);
    if !version.is_some_and(|v| EXEC_CREDENTIAL_VERSIONS.contains(&v)) {
        return Err(fail(
            KeyErrorKind::Invalid,
            "printed an ExecCredential of an apiVersion this source does not read (it reads \
             client.authentication.k8s.io/v1 and v1beta1)",
        ));
    }
    let Some(Value::Object(mut status)) = object.remove("status") else {
        return Err(fail(
            KeyErrorKind::Missing,
            "printed an ExecCredential without a status",
        ));
    };
    let token = match status.remove("token") {
        Some(Value::String(token)) => token,
        Some(Value::Null) | None if status.contains_key("clientCertificateData") => {
            return Err(fail(
                KeyErrorKind::Missing,
                "printed an ExecCredential with a client certificate and no status.token; \
                 only tokens are supported",
            ))
        }
        Some(Value::Null) | None => {
            return Err(fail(
                KeyErrorKind::Missing,
                "printed an ExecCredential without status.token",
            ))
        }
        Some(_) => {
            return Err(fail(
                KeyErrorKind::Invalid,
                "printed an ExecCredential whose status.token is not a string",
            ))
        }
    };
    let expiry = match status.get("expirationTimestamp") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(rfc3339::parse(text).ok_or_else(|| {
            fail(
                KeyErrorKind::Invalid,
                "printed an ExecCredential whose status.expirationTimestamp is not an RFC 3339 \
                 time",
            )
        })?),
        Some(_) => {
            return Err(fail(
                KeyErrorKind::Invalid,
                "printed an ExecCredential whose status.expirationTimestamp is not a string",
            ))
        }
    };
    Ok((token, expiry))
}

/// An OAuth2 token response (RFC 6749, section 5.1): `access_token`, `expires_in` seconds.
fn oauth2(
    mut object: Map<String, Value>,
    now: SystemTime,
) -> Result<(String, Option<SystemTime>), KeyError> {
    let invalid = |cause: &str| {
        fail(
            KeyErrorKind::Invalid,
            format!("printed an OAuth2 token response whose {cause}"),
        )
    };
    let token = match object.remove("access_token") {
        Some(Value::String(token)) => token,
        _ => return Err(invalid("access_token is not a string")),
    };
    match object.get("token_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if kind.eq_ignore_ascii_case("bearer") => {}
        Some(_) => return Err(invalid("token_type is not Bearer")),
    }
    let lifetime = match object.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(value) => Some(expires_in(value).ok_or_else(|| {
            invalid("expires_in is not a whole number of seconds between 0 and ten years")
        })?),
    };
    let expiry = match lifetime {
        None => None,
        Some(lifetime) => Some(
            now.checked_add(lifetime)
                .ok_or_else(|| invalid("expires_in is out of range"))?,
        ),
    };
    Ok((token, expiry))
}

/// `expires_in` as a lifetime: a whole number of seconds (some servers send it as a string),
/// at most [`MAX_EXPIRES_IN`].
fn expires_in(value: &Value) -> Option<Duration> {
    let seconds = match value {
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(whole), _) => whole,
            (None, Some(f))
                if f.fract() == 0.0 && (0.0..=MAX_EXPIRES_IN.as_secs_f64()).contains(&f) =>
            {
                f as u64
            }
            _ => return None,
        },
        Value::String(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse().ok()?
        }
        _ => return None,
    };
    let lifetime = Duration::from_secs(seconds);
    (lifetime <= MAX_EXPIRES_IN).then_some(lifetime)
}

#[cfg(test)]
mod tests;
