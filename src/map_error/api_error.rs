//! [`ApiError`] and [`ApiErrorKind`]: a non-success HTTP response as a typed error.

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};

use super::body::{parse_error_body, ErrorBody};
use crate::redact::safe_message;
use crate::retry::parse_retry_after;

/// The longest message [`ApiError`]'s `Display` shows, in characters; the rest is cut with `…`.
const DISPLAY_MESSAGE_CHARS: usize = 300;

/// Headers whose values are secrets, or may be: redacted in `Debug` and marked sensitive in
/// [`ApiError::headers`].
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
];

/// What kind of failure a status stands for. See [`ApiErrorKind::from_status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// 400: the request was malformed or invalid.
    BadRequest,
    /// 401: the key was missing, wrong or revoked.
    Unauthorized,
    /// 403: the key may not do this.
    Forbidden,
    /// 404: no such resource (or model).
    NotFound,
    /// 409: a conflict with the resource's state (retryable: it is often a lock).
    Conflict,
    /// 422: well-formed but semantically invalid.
    Unprocessable,
    /// 429: rate limited or out of quota. See [`ApiError::retry_after`].
    RateLimited,
    /// 408 or 504: the request or an upstream timed out.
    Timeout,
    /// Any other 5xx: the server failed.
    Server,
    /// Any other status (405, 410, 413, 418, …, and anything that is not 4xx or 5xx).
    Other,
}

impl ApiErrorKind {
    /// The kind of `status`.
    ///
    /// ```
    /// use http::StatusCode;
    /// use tower_bearer::ApiErrorKind;
    ///
    /// assert_eq!(ApiErrorKind::from_status(StatusCode::TOO_MANY_REQUESTS), ApiErrorKind::RateLimited);
    /// assert_eq!(ApiErrorKind::from_status(StatusCode::GATEWAY_TIMEOUT), ApiErrorKind::Timeout);
    /// assert_eq!(ApiErrorKind::from_status(StatusCode::BAD_GATEWAY), ApiErrorKind::Server);
    /// assert_eq!(ApiErrorKind::from_status(StatusCode::IM_A_TEAPOT), ApiErrorKind::Other);
    /// ```
    pub fn from_status(status: StatusCode) -> ApiErrorKind {
        match status.as_u16() {
            400 => ApiErrorKind::BadRequest,
            401 => ApiErrorKind::Unauthorized,
            403 => ApiErrorKind::Forbidden,
            404 => ApiErrorKind::NotFound,
            409 => ApiErrorKind::Conflict,
            422 => ApiErrorKind::Unprocessable,
            429 => ApiErrorKind::RateLimited,
            408 | 504 => ApiErrorKind::Timeout,
            500..=599 => ApiErrorKind::Server,
            _ => ApiErrorKind::Other,
        }
    }

    /// A short lowercase name: `"rate limited"`, `"server error"`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            ApiErrorKind::BadRequest => "bad request",
            ApiErrorKind::Unauthorized => "unauthorized",
            ApiErrorKind::Forbidden => "forbidden",
            ApiErrorKind::NotFound => "not found",
            ApiErrorKind::Conflict => "conflict",
            ApiErrorKind::Unprocessable => "unprocessable",
            ApiErrorKind::RateLimited => "rate limited",
            ApiErrorKind::Timeout => "timeout",
            ApiErrorKind::Server => "server error",
            ApiErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ApiErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a response with `status` is worth sending again: 408, 409, 429, and 5xx but 501.
pub(crate) fn is_transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 429 | 500 | 502..=599)
}

/// A response whose status was not a success, as an error.
///
/// Made by [`ErrorMapping`](crate::ErrorMapping) for every status of 400 and above, and
/// returned as a [`tower::BoxError`]: get it back with `err.downcast_ref::<ApiError>()`.
/// Built by hand with [`ApiError::new`] from a response you read yourself.
///
/// The body is parsed once, when the error is made, for the Azerion/OpenAI shape
/// `{"error":{"message","type","code","param"}}` and a few common others (see
/// [`message`](ApiError::message)).
///
/// `Display` shows the status, the kind and the message (cut to 300 characters, control
/// characters replaced, and anything that looks like an API key or bearer token redacted);
/// never a header. `Debug` shows the headers with the values of `authorization`,
/// `proxy-authorization`, `cookie`, `set-cookie`, `x-api-key`, `api-key` and of any header marked
/// sensitive redacted, the server's other text (type, code, param, request id) redacted and cut
/// like the message, and the body's length, not its content.
///
/// ```
/// use bytes::Bytes;
/// use http::{HeaderMap, StatusCode};
/// use tower_bearer::{ApiError, ApiErrorKind};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-request-id", "req_123".parse().unwrap());
/// headers.insert("retry-after", "2".parse().unwrap());
/// let body = Bytes::from_static(br#"{"error":{"message":"Slow down","type":"rate_limit","code":"rate_limit_exceeded"}}"#);
///
/// let err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, headers, body);
/// assert_eq!(err.kind(), ApiErrorKind::RateLimited);
/// assert_eq!(err.message(), Some("Slow down"));
/// assert_eq!(err.code(), Some("rate_limit_exceeded"));
/// assert_eq!(err.request_id(), Some("req_123"));
/// assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(2)));
/// assert!(err.is_retryable());
/// assert_eq!(err.to_string(), "HTTP 429 Too Many Requests (rate limited): Slow down");
/// ```
#[derive(Clone)]
pub struct ApiError {
    status: StatusCode,
    kind: ApiErrorKind,
    parsed: ErrorBody,
    retry_after: Option<Duration>,
    headers: HeaderMap,
    body: Bytes,
    body_truncated: bool,
}

impl ApiError {
    /// An error for a response with `status`, `headers` and the whole of its `body`.
    ///
    /// Headers that carry secrets (`set-cookie`, …) are marked sensitive. A `Retry-After` in the
    /// form of a date is read relative to now.
    pub fn new(status: StatusCode, headers: HeaderMap, body: Bytes) -> ApiError {
        ApiError::read(status, headers, body, false)
    }

    /// An error whose `body` may be only the start of the body the server sent.
    pub(crate) fn read(
        status: StatusCode,
        mut headers: HeaderMap,
        body: Bytes,
        body_truncated: bool,
    ) -> ApiError {
        for name in SECRET_HEADERS {
            if let http::header::Entry::Occupied(mut entry) = headers.entry(*name) {
                for value in entry.iter_mut() {
                    value.set_sensitive(true);
                }
            }
        }
        let parsed = parse_error_body(&body);
        ApiError {
            status,
            kind: ApiErrorKind::from_status(status),
            parsed,
            retry_after: parse_retry_after(&headers, SystemTime::now()),
            headers,
            body,
            body_truncated,
        }
    }

    /// The response's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The kind of failure, from the status.
    pub fn kind(&self) -> ApiErrorKind {
        self.kind
    }

    /// The error message from the body: `error.message` in the Azerion/OpenAI shape, else a
    /// top-level `error` (a string), `message`, `detail` (a string, or FastAPI's list of
    /// `{"loc","msg"}`), or `errors` (a list of strings or of objects with a `message`), lists
    /// joined with `; `. `None` when the body is none of these (HTML, plain text, empty, or cut
    /// off by the body cap).
    pub fn message(&self) -> Option<&str> {
        self.parsed.message.as_deref()
    }

    /// The error's `type` (`"invalid_request_error"`, …), if the body has one.
    pub fn error_type(&self) -> Option<&str> {
        self.parsed.error_type.as_deref()
    }

    /// The error's `code` (`"invalid_api_key"`, …); a numeric code is given as its decimal text.
    pub fn code(&self) -> Option<&str> {
        self.parsed.code.as_deref()
    }

    /// The request parameter the error is about, if the body names one.
    pub fn param(&self) -> Option<&str> {
        self.parsed.param.as_deref()
    }

    /// How long the server asked to wait before a retry, from `retry-after-ms` or `retry-after`
    /// (seconds or an HTTP date). See [`parse_retry_after`](crate::retry::parse_retry_after)
    /// for what is ignored.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The server's request id, from `x-request-id` or else `request-id`: quote it to support.
    pub fn request_id(&self) -> Option<&str> {
        ["x-request-id", "request-id"]
            .iter()
            .find_map(|name| self.headers.get(*name)?.to_str().ok())
    }

    /// The response body as read: at most the body cap (64 KiB by default) of it.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Whether [`body`](ApiError::body) is not the whole body: it was longer than the cap, or
    /// reading it failed or timed out.
    pub fn body_truncated(&self) -> bool {
        self.body_truncated
    }

    /// The response headers. Those that carry secrets (`set-cookie`, …) are marked sensitive.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Whether sending the request again may succeed: 408, 409, 429, and 5xx but 501.
    pub fn is_retryable(&self) -> bool {
        is_transient_status(self.status)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status.as_u16())?;
        if let Some(reason) = self.status.canonical_reason() {
            write!(f, " {reason}")?;
        }
        write!(f, " ({})", self.kind)?;
        if let Some(message) = self.message() {
            write!(f, ": {}", safe_message(message, DISPLAY_MESSAGE_CHARS))?;
        }
        Ok(())
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.status)
            .field("kind", &self.kind)
            .field(
                "message",
                &self
                    .message()
                    .map(|m| safe_message(m, DISPLAY_MESSAGE_CHARS)),
            )
            // The server's text, like the message: a key echoed in any of them is redacted.
            .field("error_type", &self.error_type().map(safe_field))
            .field("code", &self.code().map(safe_field))
            .field("param", &self.param().map(safe_field))
            .field("retry_after", &self.retry_after)
            .field("request_id", &self.request_id().map(safe_field))
            .field("headers", &RedactedHeaders(&self.headers))
            .field("body_len", &self.body.len())
            .field("body_truncated", &self.body_truncated)
            .finish()
    }
}

impl std::error::Error for ApiError {}

fn safe_field(text: &str) -> String {
    safe_message(text, DISPLAY_MESSAGE_CHARS)
}

struct RedactedHeaders<'a>(&'a HeaderMap);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.0 {
            if value.is_sensitive() || is_secret_header(name) {
                map.entry(name, &format_args!("[redacted]"));
            } else {
                // A server may echo the key in any header: redact what looks like one.
                let text = String::from_utf8_lossy(value.as_bytes());
                map.entry(name, &safe_message(&text, DISPLAY_MESSAGE_CHARS));
            }
        }
        map.finish()
    }
}

fn is_secret_header(name: &HeaderName) -> bool {
    SECRET_HEADERS.contains(&name.as_str())
}

#[cfg(test)]
mod tests;
