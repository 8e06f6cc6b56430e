//! Which responses say "this key was rejected": [`Rejection`].

use http::{HeaderMap, Response, StatusCode};

/// A response that means the server rejected the key, for
/// [`BearerAuthLayer::rejected_when`](crate::BearerAuthLayer::rejected_when): the key is
/// reloaded (once, however many requests got it) and the request replayed with the new key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// HTTP 401 Unauthorized: the default.
    Status401,
    /// HTTP 403 Forbidden, for APIs that answer a revoked key with 403. Opt-in: most APIs use
    /// 403 for "this key may not do that", which a new key would not change.
    Status403,
    /// gRPC status 16, `UNAUTHENTICATED`, in the response headers (a trailers-only response).
    GrpcUnauthenticated,
    /// gRPC status 7, `PERMISSION_DENIED`, in the response headers. Opt-in, as 403 is.
    GrpcPermissionDenied,
}

/// A set of [`Rejection`]s, one bit each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rejections(u8);

impl Rejections {
    /// The default: 401 only, checked by one comparison of the status.
    pub(crate) const STATUS_401: Rejections = Rejections(1);

    pub(crate) fn of(signals: impl IntoIterator<Item = Rejection>) -> Rejections {
        Rejections(signals.into_iter().fold(0, |bits, r| bits | bit(r)))
    }

    /// The set with `signal` added.
    #[cfg(feature = "grpc")]
    pub(crate) fn with(self, signal: Rejection) -> Rejections {
        Rejections(self.0 | bit(signal))
    }

    /// Whether `response` is one of the rejections in the set.
    #[inline(always)]
    pub(crate) fn matches<R>(self, response: &Response<R>) -> bool {
        if self == Rejections::STATUS_401 {
            return response.status() == http::StatusCode::UNAUTHORIZED;
        }
        self.matches_any(response)
    }

    // Out of line, taking the response as before: the request path's code stays the same.
    #[cold]
    fn matches_any<R>(self, response: &Response<R>) -> bool {
        self.matches_head(response.status(), response.headers())
    }

    /// Whether a response with this status and these headers (or a stream's trailers, with a
    /// status of 200) is one of the rejections in the set.
    #[inline]
    pub(crate) fn matches_head(self, status: StatusCode, headers: &HeaderMap) -> bool {
        let has = |r| self.0 & bit(r) != 0;
        // The status's own signal, if asked for; else the gRPC status (a gateway may answer
        // a gRPC call with 401 or 403 and `grpc-status: 16`, which tonic reports as such).
        match status.as_u16() {
            401 if has(Rejection::Status401) => return true,
            403 if has(Rejection::Status403) => return true,
            _ => {}
        }
        if !(has(Rejection::GrpcUnauthenticated) || has(Rejection::GrpcPermissionDenied)) {
            return false;
        }
        // One `grpc-status` header; two are malformed and not a rejection.
        let mut statuses = headers.get_all("grpc-status").iter();
        let (Some(status), None) = (statuses.next(), statuses.next()) else {
            return false;
        };
        match status.as_bytes() {
            b"16" => has(Rejection::GrpcUnauthenticated),
            b"7" => has(Rejection::GrpcPermissionDenied),
            _ => false,
        }
    }
}

fn bit(rejection: Rejection) -> u8 {
    match rejection {
        Rejection::Status401 => 1,
        Rejection::Status403 => 2,
        Rejection::GrpcUnauthenticated => 4,
        Rejection::GrpcPermissionDenied => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, grpc: &[&str]) -> Response<()> {
        let mut builder = Response::builder().status(status);
        for value in grpc {
            builder = builder.header("grpc-status", *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn each_signal_only_when_asked_for() {
        let default = Rejections::STATUS_401;
        assert!(default.matches(&response(401, &[])));
        assert!(!default.matches(&response(403, &[])));
        assert!(!default.matches(&response(200, &["16"])));

        let grpc = Rejections::of([Rejection::GrpcUnauthenticated]);
        assert!(grpc.matches(&response(200, &["16"])));
        assert!(!grpc.matches(&response(200, &["7"])));
        assert!(!grpc.matches(&response(200, &["0"])));
        assert!(!grpc.matches(&response(401, &[])), "401 not asked for");
        assert!(
            grpc.matches(&response(403, &["16"])),
            "the gRPC status of a 403"
        );
        assert!(!grpc.matches(&response(200, &["16", "16"])), "two statuses");
        assert!(!grpc.matches(&response(200, &[" 16"])));

        let all = Rejections::of([
            Rejection::Status401,
            Rejection::Status403,
            Rejection::GrpcUnauthenticated,
            Rejection::GrpcPermissionDenied,
        ]);
        for (status, grpc) in [(401, &[][..]), (403, &[]), (200, &["16"]), (200, &["7"])] {
            assert!(all.matches(&response(status, grpc)), "{status} {grpc:?}");
        }
        assert!(!all.matches(&response(500, &["13"])));
        assert!(!Rejections::of([]).matches(&response(401, &[])));
    }
}
