//! From the token endpoint's answers to [`KeyError`]s: a kind per RFC 6749 error code and HTTP
//! status, and a cause that names the code, the server's description (redacted, with the
//! client secret taken out wherever the server echoed it) and the status. The origin (token URL,
//! client id) is added by the caller.

use secrecy::{ExposeSecret, SecretString};

use super::response::{parse_error_response, ErrorResponse, TokenError};
use crate::redact::safe_message;
use crate::source::https::{Reply, TransportError};
use crate::{KeyError, KeyErrorKind};

/// The most characters of the server's `error_description` that go into a message.
const MAX_DESCRIPTION: usize = 200;
/// The most characters of an `error` code or an `error_uri`.
const MAX_CODE: usize = 64;
const MAX_URI: usize = 120;

/// The error for a non-success answer, or a success that holds an error response.
pub(super) fn status_error(reply: &Reply, secret: &SecretString) -> KeyError {
    let status = reply.status.as_u16();
    let said = parse_error_response(&reply.body).unwrap_or_default();
    let code = said.code.as_deref().map(|c| error_code(c, secret));
    let by_code = said.code.as_deref().and_then(code_meaning);
    let (kind, what, hint) = match (status, by_code) {
        (429, _) => (KeyErrorKind::Unavailable, "rate limited", None),
        (500..=599, _) => (KeyErrorKind::Unavailable, "server error", None),
        (_, Some(meaning)) => meaning,
        (401, None) => (
            KeyErrorKind::Denied,
            "the token endpoint refused the client",
            Some(CHECK_CREDENTIALS),
        ),
        (403, None) => (KeyErrorKind::Denied, "forbidden", None),
        (400, None) => (KeyErrorKind::Config, "bad request", None),
        (404 | 405, None) => (
            KeyErrorKind::Config,
            "no token endpoint at this URL",
            Some("check .token_url(..)"),
        ),
        (_, None) => (KeyErrorKind::Other, "unexpected answer", None),
    };
    let mut cause = String::from(what);
    if let Some(code) = &code {
        cause.push_str(&format!(" ({code})"));
    }
    if let Some(description) = &said.description {
        cause.push_str(": ");
        cause.push_str(&server_text(description, secret, MAX_DESCRIPTION));
    }
    cause.push_str(&format!(" (HTTP {status}"));
    if let Some(after) = &reply.retry_after {
        cause.push_str(&format!(", Retry-After {after}"));
    }
    if let Some(uri) = &said.uri {
        cause.push_str("; see ");
        cause.push_str(&server_text(uri, secret, MAX_URI));
    }
    if let Some(hint) = hint {
        cause.push_str("; ");
        cause.push_str(hint);
    }
    cause.push(')');
    let error = KeyError::new(kind, cause);
    match reply.retry_after_wait() {
        Some(wait) if kind == KeyErrorKind::Unavailable => error.with_retry_after(wait),
        _ => error,
    }
}

const CHECK_CREDENTIALS: &str =
    "check the client_id, the client secret and the client authentication method (Basic or body)";

type Meaning = (KeyErrorKind, &'static str, Option<&'static str>);

/// What an RFC 6749 section 5.2 code (and the two of section 4.1.2.1 that token endpoints send
/// too) says, `None` for a code the RFC does not define.
fn code_meaning(code: &str) -> Option<Meaning> {
    Some(match code {
        "invalid_client" => (
            KeyErrorKind::Denied,
            "client authentication failed",
            Some(CHECK_CREDENTIALS),
        ),
        "unauthorized_client" => (
            KeyErrorKind::Denied,
            "the client may not use the client_credentials grant",
            None,
        ),
        "invalid_scope" => (
            KeyErrorKind::Config,
            "a requested scope is invalid, unknown or not allowed to this client",
            Some("check .scope(..)"),
        ),
        "invalid_grant" => (KeyErrorKind::Config, "the grant was refused", None),
        "unsupported_grant_type" => (
            KeyErrorKind::Config,
            "the server does not offer the client_credentials grant",
            None,
        ),
        "invalid_request" => (
            KeyErrorKind::Config,
            "the server found the request malformed",
            Some("check .param(..) and the client authentication method"),
        ),
        "temporarily_unavailable" | "server_error" => {
            (KeyErrorKind::Unavailable, "server error", None)
        }
        "access_denied" => (KeyErrorKind::Denied, "access denied", None),
        _ => return None,
    })
}

/// The `error` code as shown: RFC 6749 allows printable ASCII but `"` and `\`; anything else
/// (or a code too long) is not shown.
fn error_code(code: &str, secret: &SecretString) -> String {
    let rfc_chars = code
        .bytes()
        .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e));
    if !rfc_chars || code.len() > MAX_CODE {
        return "an error code RFC 6749 does not allow".into();
    }
    server_text(code, secret, MAX_CODE)
}

/// Server text fit for a message: the client secret taken out wherever it appears (as it is,
/// and form-urlencoded), then capped and redacted like any server text.
fn server_text(text: &str, secret: &SecretString, max: usize) -> String {
    let secret = secret.expose_secret();
    if secret.is_empty() {
        return safe_message(text, max);
    }
    let mut clean = text.replace(secret, "[redacted]");
    let encoded = super::form::encode(secret);
    if encoded.as_str() != secret {
        clean = clean.replace(encoded.as_str(), "[redacted]");
    }
    safe_message(&clean, max)
}

/// The error for a request that got no usable answer.
pub(super) fn transport_error(error: TransportError) -> KeyError {
    let kind = match &error {
        TransportError::Timeout(_) => KeyErrorKind::Timeout,
        TransportError::Connect(..) | TransportError::Body(_) => KeyErrorKind::Unavailable,
        TransportError::Redirect(_) | TransportError::Token(_) => KeyErrorKind::Config,
    };
    let cause = format!("token request: {error}");
    match error {
        TransportError::Connect(_, source) => KeyError::new(kind, cause).with_source(source),
        _ => KeyError::new(kind, cause),
    }
}

/// The error for a success whose body held no usable token.
pub(super) fn token_error(error: &TokenError) -> KeyError {
    let kind = match error {
        TokenError::NotBearer(_) => KeyErrorKind::Invalid,
        TokenError::Malformed(_) | TokenError::NoToken(_) | TokenError::BadExpiresIn(_) => {
            KeyErrorKind::Unreadable
        }
    };
    KeyError::new(kind, error.to_string())
}

/// Whether a successful answer is an error response in disguise (a `200` with `error` and no
/// `access_token`), as a few servers send.
pub(super) fn is_error_response(reply: &Reply) -> bool {
    parse_error_response(&reply.body).is_some_and(|e: ErrorResponse| e.code.is_some())
}

#[cfg(test)]
mod tests;
