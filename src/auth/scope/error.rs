//! [`ScopeError`]: why the layer refused to put its key on a request.

use std::fmt;

/// A request the layer refused to put its key on. Nothing was sent.
///
/// ```
/// # use tower_bearer::ScopeError;
/// # fn check(err: &tower::BoxError) {
/// if let Some(refused) = err.downcast_ref::<ScopeError>() {
///     eprintln!("not sending the key to {:?}: {refused}", refused.host());
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeError {
    pub(super) host: Option<String>,
    /// The scheme of a request refused for cleartext, as it was written.
    pub(super) scheme: Option<String>,
    pub(super) reason: Refusal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    OutOfScope,
    NoHost,
    Cleartext,
    /// Origin form (`/v1/models`): where the request goes is up to the connection it is sent on.
    NoOrigin,
    /// The `Host` header names another host than the URI, or cannot be read.
    HostMismatch,
    /// More than one `Host` header.
    DuplicateHost,
    /// An origin-form request, and the value given to `BearerAuthLayer::origin` is unusable.
    BadOrigin(&'static str),
}

impl ScopeError {
    /// The host the request was for, if it named one.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// Whether the request was refused because it could travel in clear text: a scheme other
    /// than `https` to a host that is not loopback, or no scheme and no host at all.
    pub fn is_cleartext(&self) -> bool {
        matches!(self.reason, Refusal::Cleartext | Refusal::NoOrigin)
    }
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host.as_deref().unwrap_or("");
        match self.reason {
            Refusal::OutOfScope => write!(
                f,
                "refusing to send the API key to host `{host}`: it is not one of the hosts the \
                 layer is restricted to"
            ),
            Refusal::NoHost => f.write_str(
                "refusing to send the API key: the request names no host (no authority in the \
                 URI and no Host header) and the layer is restricted to certain hosts",
            ),
            Refusal::Cleartext => write!(
                f,
                "refusing to send the API key over {}:// to `{host}`, which is not a loopback \
                 address: only https:// counts as encrypted; use https:// or \
                 allow_insecure_http(true)",
                self.scheme.as_deref().unwrap_or("")
            ),
            Refusal::NoOrigin => f.write_str(
                "refusing to send the API key: the request has no scheme and no host (origin \
                 form, as gRPC clients send), so nothing says where it goes; tell the layer \
                 with BearerAuthLayer::origin(\"https://host\"), or use an absolute URI",
            ),
            Refusal::BadOrigin(why) => write!(
                f,
                "refusing to send the API key: the request is origin form and the value given \
                 to BearerAuthLayer::origin is unusable: {why}"
            ),
            Refusal::HostMismatch => write!(
                f,
                "refusing to send the API key to `{host}`: its Host header names another host \
                 or cannot be read"
            ),
            Refusal::DuplicateHost => f.write_str(
                "refusing to send the API key: the request has more than one Host header",
            ),
        }
    }
}

impl std::error::Error for ScopeError {}
