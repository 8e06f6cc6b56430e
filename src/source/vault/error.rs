//! From Vault's answers to [`KeyError`]s: one kind per failure, and a cause that says which
//! step failed (reading the secret, logging in, renewing the token) and why, with Vault's own
//! `errors` strings where it sent some. Origins (address, mount, path, field) are added by the
//! caller; nothing here ever sees a token or a secret value.
//!
//! A `Retry-After` on a 429 or a 503 (Vault sends one on a rate-limit quota's 429 when
//! `sys/quotas/config` has `enable_rate_limit_response_headers`) becomes
//! [`KeyError::with_retry_after`], read with the crate's own parser (seconds or an HTTP date,
//! `Reply::retry_after_wait`): the layer then waits at least that long before it loads again.

use std::time::Duration;

use http::StatusCode;

use super::response::{vault_messages, KvError};
use super::transport::{Reply, TransportError};
use crate::{KeyError, KeyErrorKind};

/// A request the source makes, named in error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    /// `GET` of the secret; the API path, e.g. `secret/data/azerion`.
    Read(&'a str),
    /// A login; the method's name and its API path, e.g. `auth/approle/login`.
    Login(&'static str, &'a str),
    /// `POST auth/token/renew-self`.
    Renew,
    /// `GET auth/token/lookup-self`.
    Lookup,
    /// `POST auth/token/revoke-self`.
    Revoke,
}

impl std::fmt::Display for Step<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Read(path) => write!(f, "reading {path}"),
            Step::Login(method, path) => write!(f, "{method} login at {path}"),
            Step::Renew => f.write_str("renewing the token at auth/token/renew-self"),
            Step::Lookup => f.write_str("checking the token at auth/token/lookup-self"),
            Step::Revoke => f.write_str("revoking the token at auth/token/revoke-self"),
        }
    }
}

/// The error for a non-success answer to `step`, e.g. `reading secret/data/azerion: service
/// unavailable: Vault is sealed (HTTP 503)`.
pub(crate) fn status_error(step: Step<'_>, reply: &Reply) -> KeyError {
    let status = reply.status;
    let said = vault_messages(&reply.body).join("; ");
    let login = matches!(step, Step::Login(..));
    let wait = match status.as_u16() {
        429 | 503 => reply.retry_after_wait(),
        _ => None,
    };
    let (kind, what, hint) = match status.as_u16() {
        400 if login => (KeyErrorKind::Denied, "login refused", None),
        400 => (KeyErrorKind::Other, "bad request", None),
        401 | 403 => {
            let hint = match step {
                Step::Read(path) => Some(format!("the token's policy must allow read on {path}")),
                _ => None,
            };
            (KeyErrorKind::Denied, "permission denied", hint)
        }
        404 => {
            let hint = match step {
                Step::Read(_) => "no secret at this path, or the mount is of the other KV version",
                Step::Login(..) => "is the auth method enabled at this path?",
                Step::Renew | Step::Lookup | Step::Revoke => "the token is gone",
            };
            (KeyErrorKind::Missing, "not found", Some(hint.to_owned()))
        }
        412 => (
            KeyErrorKind::Unavailable,
            "precondition failed",
            Some("a standby node is not yet up to date; try again".to_owned()),
        ),
        429 => {
            let hint = match (wait, &reply.retry_after) {
                (Some(wait), _) => Some(format!("Vault asks to wait {}", show_wait(wait))),
                (None, Some(_)) => Some("its Retry-After gives no wait to keep".to_owned()),
                (None, None) => None,
            };
            (KeyErrorKind::Unavailable, "rate limited", hint)
        }
        503 => {
            let mut hint = said
                .is_empty()
                .then(|| "sealed, a standby with no active node, or in maintenance".to_owned());
            if let Some(wait) = wait {
                let asks = format!("Vault asks to wait {}", show_wait(wait));
                hint = Some(hint.map_or(asks.clone(), |h| format!("{h}; {asks}")));
            }
            (KeyErrorKind::Unavailable, "service unavailable", hint)
        }
        500..=599 => (KeyErrorKind::Unavailable, "server error", None),
        _ => (KeyErrorKind::Other, "unexpected answer", None),
    };
    let mut cause = format!("{step}: {what}");
    if !said.is_empty() && !said.to_ascii_lowercase().contains(what) {
        cause.push_str(": ");
        cause.push_str(&said);
    }
    cause.push_str(&format!(" ({}", status_code(status)));
    if let Some(hint) = hint {
        cause.push_str("; ");
        cause.push_str(&hint);
    }
    cause.push(')');
    let error = KeyError::new(kind, cause);
    match wait {
        Some(wait) => error.with_retry_after(wait),
        None => error,
    }
}

/// `3 s`, `1.5 s`.
fn show_wait(wait: Duration) -> String {
    let secs = wait.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.0} s")
    } else {
        format!("{secs:.1} s")
    }
}

/// The error for a request to `step` that got no usable answer.
pub(crate) fn transport_error(step: Step<'_>, error: TransportError) -> KeyError {
    let kind = match &error {
        TransportError::Timeout(_) => KeyErrorKind::Timeout,
        TransportError::Connect(..) | TransportError::Body(_) => KeyErrorKind::Unavailable,
        TransportError::Redirect(_) | TransportError::Token(_) => KeyErrorKind::Config,
    };
    let cause = format!("{step}: {error}");
    match error {
        TransportError::Connect(_, source) => KeyError::new(kind, cause).with_source(source),
        _ => KeyError::new(kind, cause),
    }
}

/// The error for a KV answer whose body did not hold the field.
pub(crate) fn kv_error(step: Step<'_>, status: StatusCode, error: &KvError) -> KeyError {
    let kind = match error {
        KvError::Malformed(_) => KeyErrorKind::Unreadable,
        KvError::Deleted { .. } | KvError::Destroyed { .. } | KvError::MissingField { .. } => {
            KeyErrorKind::Missing
        }
        KvError::NotAString { .. } => KeyErrorKind::Invalid,
    };
    let code = if status.is_success() {
        String::new()
    } else {
        format!(" ({})", status_code(status))
    };
    KeyError::new(kind, format!("{step}: {error}{code}"))
}

/// The error for a login or renewal answer that holds no usable token.
pub(crate) fn auth_body_error(step: Step<'_>, why: &str) -> KeyError {
    KeyError::new(KeyErrorKind::Unreadable, format!("{step}: {why}"))
}

fn status_code(status: StatusCode) -> String {
    format!("HTTP {}", status.as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &'static str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: None,
            body: zeroize::Zeroizing::new(body.as_bytes().to_vec()),
        }
    }

    fn reply_after(status: u16, body: &'static str, retry_after: &str) -> Reply {
        Reply {
            retry_after: Some(retry_after.to_owned()),
            ..reply(status, body)
        }
    }

    /// OpenBao's rate-limit quota answers `Retry-After: 3` (seconds) when
    /// `enable_rate_limit_response_headers` is on; an HTTP date is read too.
    #[test]
    fn retry_after_on_429_and_503() {
        let read = Step::Read("kv/data/a");
        let quota = r#"{"errors":["request path \"kv/data/a\": rate limit quota exceeded"]}"#;
        let e = status_error(read, &reply_after(429, quota, "3"));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(e.kind(), KeyErrorKind::Unavailable);
        assert_eq!(
            e.to_string(),
            "reading kv/data/a: rate limited: request path \"kv/data/a\": rate limit quota \
             exceeded (HTTP 429; Vault asks to wait 3 s)"
        );
        let e = status_error(read, &reply_after(429, "{}", "1.5"));
        assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
        assert!(e.to_string().contains("wait 1.5 s"), "{e}");

        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let e = status_error(
            read,
            &reply_after(429, "{}", &httpdate::fmt_http_date(later)),
        );
        let wait = e.retry_after().expect("an HTTP date is read");
        assert!(
            wait > Duration::from_secs(110) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );

        let sealed = r#"{"errors":["Vault is sealed"]}"#;
        let e = status_error(read, &reply_after(503, sealed, "10"));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(10)));
        assert_eq!(
            e.to_string(),
            "reading kv/data/a: service unavailable: Vault is sealed \
             (HTTP 503; Vault asks to wait 10 s)"
        );
    }

    #[test]
    fn no_usable_retry_after() {
        let read = Step::Read("kv/data/a");
        let e = status_error(read, &reply(429, "{}"));
        assert_eq!(e.retry_after(), None);
        assert_eq!(e.to_string(), "reading kv/data/a: rate limited (HTTP 429)");
        for garbage in ["soon", "-1", "1e3", "Sat, 01 Jan 2000 00:00:00 GMT"] {
            let e = status_error(read, &reply_after(429, "{}", garbage));
            assert_eq!(e.retry_after(), None, "{garbage}");
            assert!(e.to_string().contains("gives no wait to keep"), "{e}");
            assert!(!e.to_string().contains(garbage), "{e}");
        }
        // Only 429 and 503 carry a wait: a 403's Retry-After means nothing.
        let e = status_error(read, &reply_after(403, "{}", "5"));
        assert_eq!(e.retry_after(), None);
        assert_eq!(status_error(read, &reply(503, "{}")).retry_after(), None);
    }

    #[test]
    fn kinds_by_status() {
        let read = Step::Read("secret/data/azerion");
        let cases = [
            (403, KeyErrorKind::Denied),
            (404, KeyErrorKind::Missing),
            (412, KeyErrorKind::Unavailable),
            (429, KeyErrorKind::Unavailable),
            (500, KeyErrorKind::Unavailable),
            (502, KeyErrorKind::Unavailable),
            (503, KeyErrorKind::Unavailable),
            (400, KeyErrorKind::Other),
            (418, KeyErrorKind::Other),
        ];
        for (status, kind) in cases {
            let e = status_error(read, &reply(status, "{\"errors\":[\"x\"]}"));
            assert_eq!(e.kind(), kind, "{status}: {e}");
            let msg = e.to_string();
            assert!(msg.starts_with("reading secret/data/azerion: "), "{msg}");
            assert!(msg.contains(&format!("(HTTP {status}")), "{msg}");
        }
        let login = Step::Login("AppRole", "auth/approle/login");
        assert_eq!(
            status_error(login, &reply(400, "{}")).kind(),
            KeyErrorKind::Denied
        );
    }

    #[test]
    fn sealed_message() {
        let e = status_error(
            Step::Read("secret/data/a"),
            &reply(503, r#"{"errors":["Vault is sealed"]}"#),
        );
        assert_eq!(
            e.to_string(),
            "reading secret/data/a: service unavailable: Vault is sealed (HTTP 503)"
        );
        let e = status_error(
            Step::Read("secret/data/a"),
            &reply(403, r#"{"errors":["permission denied"]}"#),
        );
        assert_eq!(
            e.to_string(),
            "reading secret/data/a: permission denied \
             (HTTP 403; the token's policy must allow read on secret/data/a)"
        );
    }
}
