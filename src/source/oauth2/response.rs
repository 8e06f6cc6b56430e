//! Pure parsing of the token endpoint's JSON: a token response (RFC 6749 section 5.1) and an
//! error response (section 5.2).
//!
//! Nothing here does I/O. No error quotes the body: it may hold the token. Causes name what was
//! wrong (a JSON line and column, a missing member, a JSON type), and at most the token type,
//! capped and redacted, which is no secret.

use crate::source::https::json_type;
use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::redact::safe_message;

/// The longest `expires_in` taken as it is: ten years. More is read as ten years.
pub(super) const MAX_EXPIRES_IN: Duration = Duration::from_secs(10 * 365 * 86_400);

/// A token response's parts that matter.
pub(super) struct TokenResponse {
    /// The token, zeroed when dropped unless moved out.
    pub(super) access_token: Zeroizing<String>,
    /// `expires_in`, when the server sent one (at most [`MAX_EXPIRES_IN`]).
    pub(super) expires_in: Option<Duration>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Why a successful answer held no usable token. `Display` is a cause for a `KeyError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TokenError {
    /// Not JSON, or not a JSON object.
    Malformed(String),
    /// No `access_token`, or one that is not a non-empty string.
    NoToken(String),
    /// `token_type` missing, or not `Bearer`; the type shown capped and redacted.
    NotBearer(Option<String>),
    /// `expires_in` is not a number of seconds.
    BadExpiresIn(&'static str),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed(why) => write!(f, "the answer is not a token response: {why}"),
            TokenError::NoToken(why) => write!(f, "the token response {why}"),
            TokenError::NotBearer(None) => f.write_str(
                "the token response has no token_type (RFC 6749 section 5.1 requires one); \
                 this source sends Bearer tokens only",
            ),
            TokenError::NotBearer(Some(kind)) => write!(
                f,
                "the token endpoint issued a token of type {kind:?}, not Bearer; this source \
                 sends Bearer tokens only"
            ),
            TokenError::BadExpiresIn(found) => write!(
                f,
                "the token response's expires_in is {found}, not a number of seconds"
            ),
        }
    }
}

/// Reads a token response.
pub(super) fn parse_token_response(body: &[u8]) -> Result<TokenResponse, TokenError> {
    let mut root = object(body).map_err(TokenError::Malformed)?;
    let access_token = match root.remove("access_token") {
        Some(Value::String(token)) if !token.is_empty() => Zeroizing::new(token),
        Some(Value::String(token)) => {
            drop(Zeroizing::new(token));
            return Err(TokenError::NoToken("has an empty access_token".into()));
        }
        None | Some(Value::Null) => return Err(TokenError::NoToken("has no access_token".into())),
        Some(other) => {
            return Err(TokenError::NoToken(format!(
                "has an access_token that is {}, not a string",
                json_type(&other)
            )))
        }
    };
    match root.get("token_type") {
        Some(Value::String(kind)) if kind.trim().eq_ignore_ascii_case("bearer") => {}
        Some(Value::String(kind)) => {
            return Err(TokenError::NotBearer(Some(safe_message(kind, 40))))
        }
        Some(other @ (Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_))) => {
            return Err(TokenError::NotBearer(Some(json_type(other).to_owned())))
        }
        None | Some(Value::Null) => return Err(TokenError::NotBearer(None)),
    }
    let expires_in = match root.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(seconds(n).ok_or(TokenError::BadExpiresIn(
            "a negative or fractional number out of range",
        ))?),
        // Some servers send it as a string ("3600"): read it if it is digits.
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(TokenError::BadExpiresIn("a string that is not digits"));
            }
            Some(s.parse::<u64>().map_or(MAX_EXPIRES_IN, Duration::from_secs))
        }
        Some(other) => return Err(TokenError::BadExpiresIn(json_type(other))),
    };
    Ok(TokenResponse {
        access_token,
        expires_in: expires_in.map(|d| d.min(MAX_EXPIRES_IN)),
    })
}

/// A whole, non-negative number of seconds (a fraction is dropped).
fn seconds(n: &serde_json::Number) -> Option<Duration> {
    if let Some(s) = n.as_u64() {
        return Some(Duration::from_secs(s));
    }
    let f = n.as_f64()?;
    if !f.is_finite() || f < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(f.floor()).unwrap_or(MAX_EXPIRES_IN))
}

/// An error response's members, as the server sent them (not yet made fit for a message).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct ErrorResponse {
    /// `error`: `invalid_client`, `invalid_scope`…
    pub(super) code: Option<String>,
    /// `error_description`: free text.
    pub(super) description: Option<String>,
    /// `error_uri`: a page about the error.
    pub(super) uri: Option<String>,
}

/// Reads an error response; `None` when the body is not a JSON object with a string `error`.
pub(super) fn parse_error_response(body: &[u8]) -> Option<ErrorResponse> {
    let mut root = object(body).ok()?;
    let mut text = |name: &str| match root.remove(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
        _ => None,
    };
    let code = text("error")?;
    Some(ErrorResponse {
        code: Some(code),
        description: text("error_description"),
        uri: text("error_uri"),
    })
}

fn object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("the body is {}, not an object", json_type(&other))),
        Err(e) => {
            let what = match e.classify() {
                serde_json::error::Category::Eof => "it ends too early",
                _ => "a syntax error",
            };
            if body.iter().all(u8::is_ascii_whitespace) {
                return Err("the body is empty".into());
            }
            Err(format!(
                "not JSON ({what} at line {}, column {})",
                e.line(),
                e.column()
            ))
        }
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
