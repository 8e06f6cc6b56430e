//! Request replay, shared by the 401 retry and the transient retry policy.
//!
//! A request can be sent again when its body can be had again:
//!
//! - **In-memory bodies** — `Full<Bytes>`, `Empty<Bytes>` and `String` — are cloned. For
//!   `Full<Bytes>` that is a reference count, not a copy of the data, whatever the size.
//! - **Streaming bodies** wrapped in [`ReplayableBody`] keep the frames they send, up to a cap
//!   (64 KiB by default). A body that was sent in full within the cap is replayed from those
//!   frames; a bigger one, or one the server answered before it was sent in full, is not.
//! - **Any other body** is not replayed: the response goes back as it came.
//!
//! The head (method, URI, headers, extensions) is copied before the `Authorization` header is
//! added. For the 401 replay ([`ReplayCopy`]) the URI and headers are packed as bytes, inline
//! when they fit (a typical API URI and a few headers do): no allocation and no reference
//! count per request. The transient retry clones the `Request` ([`try_clone_request`]).

mod body;
mod kept;
mod packed;
mod pool;

use std::any::Any;

use http::{Method, Request, Version};

pub use body::ReplayableBody;
use kept::KeptBody;
pub(crate) use packed::ReplayCopy;

/// Default number of body bytes a [`ReplayableBody`] keeps for a replay.
pub const DEFAULT_REPLAY_CAP: usize = 64 * 1024;

/// Clones `req` for a later replay, if its body can be had again. See the module docs.
#[inline]
pub(crate) fn try_clone_request<B: 'static>(req: &Request<B>) -> Option<Request<B>> {
    let body = try_clone_body(req.body())?;
    // `Request::new` starts from defaults (GET, `/`, HTTP/1.1, no headers, no extensions):
    // overwrite only what differs, so a plain request pays for no default it then drops.
    let mut copy = Request::new(body);
    if req.method() != Method::GET {
        *copy.method_mut() = req.method().clone();
    }
    *copy.uri_mut() = req.uri().clone();
    if req.version() != Version::HTTP_11 {
        *copy.version_mut() = req.version();
    }
    if !req.headers().is_empty() {
        *copy.headers_mut() = req.headers().clone();
    }
    if !req.extensions().is_empty() {
        *copy.extensions_mut() = req.extensions().clone();
    }
    Some(copy)
}

/// Whether a copy made by [`try_clone_request`] can be sent now. Only a [`ReplayableBody`]
/// can say no: its original may have outgrown the cap or not been sent in full.
pub(crate) fn can_replay<B: 'static>(copy: &Request<B>) -> bool {
    match (copy.body() as &dyn Any).downcast_ref::<ReplayableBody>() {
        Some(body) => body.can_replay(),
        None => true,
    }
}

fn try_clone_body<B: 'static>(body: &B) -> Option<B> {
    KeptBody::clone_of(body)?.into_body()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use bytes::Bytes;
    use http::HeaderValue;
    use http_body::{Body, Frame};
    use http_body_util::BodyExt;
    use http_body_util::StreamBody;
    use http_body_util::{Empty, Full};

    fn stream(chunks: &[&'static [u8]]) -> ReplayableBody {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        ReplayableBody::with_cap(StreamBody::new(futures_util::stream::iter(frames)), 8)
    }

    #[tokio::test]
    async fn replays_a_small_stream_after_it_was_sent() {
        let req = Request::new(stream(&[b"ab", b"cd"]));
        let copy = try_clone_request(&req).unwrap();
        assert!(!can_replay(&copy), "nothing sent yet");
        let sent = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(sent, "abcd");
        assert!(can_replay(&copy));
        let again = copy.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(again, "abcd");
    }

    #[test]
    fn an_empty_body_is_replayable_without_being_polled() {
        // hyper never polls a body whose `is_end_stream()` is true (an empty GET's).
        for body in [
            ReplayableBody::new(Empty::<Bytes>::new()),
            ReplayableBody::new(Full::new(Bytes::new())),
        ] {
            let req = Request::new(body);
            assert!(req.body().is_end_stream());
            let copy = try_clone_request(&req).unwrap();
            assert!(
                can_replay(&copy),
                "nothing to send: complete from the start"
            );
            assert!(ReplayCopy::of(&req).unwrap().can_replay());
            assert!(copy.body().is_end_stream(), "the replay is empty too");
            assert_eq!(copy.body().size_hint().exact(), Some(0));
        }
    }

    #[tokio::test]
    async fn a_replay_says_when_it_is_at_its_end() {
        let req = Request::new(stream(&[b"ab", b"cd"]));
        let copy = try_clone_request(&req).unwrap();
        req.into_body().collect().await.unwrap();
        let mut replay = copy.into_body();
        assert!(!replay.is_end_stream());
        assert_eq!(replay.size_hint().exact(), Some(4));
        replay.frame().await.unwrap().unwrap();
        assert!(!replay.is_end_stream());
        replay.frame().await.unwrap().unwrap();
        assert!(replay.is_end_stream(), "no trailers: the end");
        assert!(replay.frame().await.is_none());
    }

    #[tokio::test]
    async fn refuses_a_stream_over_the_cap() {
        let req = Request::new(stream(&[b"abcdef", b"ghijkl"]));
        let copy = try_clone_request(&req).unwrap();
        let sent = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(sent.len(), 12, "the original is sent whole");
        assert!(!can_replay(&copy));
    }

    #[test]
    fn clones_in_memory_bodies_without_copying() {
        let data = Bytes::from(vec![7u8; 1 << 20]);
        let req = Request::builder()
            .method("POST")
            .uri("https://api.example/v1/x")
            .header("x-a", "1")
            .body(Full::new(data.clone()))
            .unwrap();
        let copy = try_clone_request(&req).unwrap();
        assert_eq!(copy.method(), "POST");
        assert_eq!(copy.uri(), req.uri());
        assert_eq!(copy.headers()["x-a"], "1");
        assert!(can_replay(&copy));
        assert!(try_clone_request(&Request::new(String::from("s"))).is_some());
        assert!(try_clone_request(&Request::new(Empty::<Bytes>::new())).is_some());
    }

    fn round_trip(req: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
        let copy = ReplayCopy::of(req).expect("cloneable body");
        assert!(copy.can_replay());
        copy.into_request().expect("parses back")
    }

    fn same_head(a: &Request<Full<Bytes>>, b: &Request<Full<Bytes>>) {
        assert_eq!(a.method(), b.method());
        assert_eq!(a.uri(), b.uri());
        assert_eq!(a.uri().to_string(), b.uri().to_string());
        assert_eq!(a.version(), b.version());
        let pairs = |r: &Request<Full<Bytes>>| {
            r.headers()
                .iter()
                .map(|(n, v)| (n.clone(), v.clone(), v.is_sensitive()))
                .collect::<Vec<_>>()
        };
        assert_eq!(pairs(a), pairs(b));
        assert_eq!(a.headers().len(), b.headers().len());
    }

    #[test]
    fn replay_copy_gives_the_same_request_back() {
        let data = Bytes::from(vec![7u8; 1 << 20]);
        let mut secret = HeaderValue::from_static("token");
        secret.set_sensitive(true);
        let mut req = Request::builder()
            .method("PATCH")
            .uri("https://api.example:8443/v1/x?a=1&b=%20")
            .version(http::Version::HTTP_2)
            .header("content-type", "application/json")
            .header("x-multi", "1")
            .header("accept", "*/*")
            .header("x-multi", "2")
            .header("x-obs", HeaderValue::from_bytes(b"caf\xe9\t!").unwrap())
            .header("x-secret", secret)
            .extension(42u32)
            .body(Full::new(data.clone()))
            .unwrap();
        let back = round_trip(&req);
        same_head(&req, &back);
        assert_eq!(back.extensions().get::<u32>(), Some(&42));
        assert!(back.headers()["x-secret"].is_sensitive());
        assert_eq!(
            back.headers().get_all("x-multi").iter().collect::<Vec<_>>(),
            ["1", "2"]
        );
        // spilled: more than fits inline
        req.headers_mut()
            .insert("x-long", HeaderValue::from_str(&"v".repeat(300)).unwrap());
        same_head(&req, &round_trip(&req));
        // cloned: a value too long for the packed layout
        req.headers_mut().insert(
            "x-huge",
            HeaderValue::from_str(&"h".repeat(70_000)).unwrap(),
        );
        same_head(&req, &round_trip(&req));
    }

    /// The copy's box is kept with its fields, cleared, and the next copy writes over them: no
    /// method, extension, header, URI byte or body of an earlier request can come back.
    #[test]
    fn a_reused_copy_shows_nothing_of_the_previous_request() {
        struct Owned(#[allow(dead_code)] Arc<()>);
        impl AsRef<[u8]> for Owned {
            fn as_ref(&self) -> &[u8] {
                b"earlier body"
            }
        }
        std::thread::spawn(|| {
            let alive = Arc::new(());
            let mut earlier = Request::builder()
                .method(http::Method::from_bytes(b"PURGE").unwrap())
                .uri("https://earlier.example:8443/a/very/long/path/with/more/than/enough?q=1")
                .version(http::Version::HTTP_2)
                .header("x-earlier", "1")
                .extension(42u32)
                .body(Full::new(Bytes::from_owner(Owned(alive.clone()))))
                .unwrap();
            let copy = ReplayCopy::of(&earlier).unwrap();
            let at = copy.address();
            drop(copy);
            assert_eq!(Arc::strong_count(&alive), 2, "the copy's body is dropped");
            for later in [
                Request::new(Full::new(Bytes::from_static(b"later"))),
                Request::post("/v1").body(Full::new(Bytes::new())).unwrap(),
            ] {
                let copy = ReplayCopy::of(&later).unwrap();
                assert_eq!(copy.address(), at, "the same box, reused");
                let back = copy.into_request().unwrap();
                same_head(&later, &back);
                assert!(back.extensions().is_empty());
                let body = futures_util::FutureExt::now_or_never(back.into_body().collect());
                let expected = later.body().clone();
                let expected = futures_util::FutureExt::now_or_never(expected.collect());
                assert_eq!(
                    body.unwrap().unwrap().to_bytes(),
                    expected.unwrap().unwrap().to_bytes()
                );
            }
            // Spilled, then cloned heads are cleared back to an inline one too.
            earlier
                .headers_mut()
                .insert("x-long", HeaderValue::from_str(&"v".repeat(300)).unwrap());
            drop(ReplayCopy::of(&earlier).unwrap());
            let later = Request::new(Full::new(Bytes::new()));
            same_head(&later, &round_trip(&later));
            earlier.headers_mut().insert(
                "x-huge",
                HeaderValue::from_str(&"h".repeat(70_000)).unwrap(),
            );
            drop(ReplayCopy::of(&earlier).unwrap());
            same_head(&later, &round_trip(&later));
            drop(earlier);
            assert_eq!(Arc::strong_count(&alive), 1);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn replay_copy_of_every_uri_form() {
        for uri in [
            "/",
            "/v1/models?x=1",
            "*",
            "api.example:443",
            "http://127.0.0.1:8080",
            "https://api.azerion.ai/v1/chat/completions",
            "https://[::1]:8443/p",
            "custom+scheme://host/path",
        ] {
            let req = Request::builder()
                .uri(uri)
                .body(Full::new(Bytes::new()))
                .unwrap();
            same_head(&req, &round_trip(&req));
        }
        let req = Request::new(Full::new(Bytes::new()));
        same_head(&req, &round_trip(&req));
        // An authority then a path-and-query that does not start with `/` (audit round 8): as
        // text, `*` would parse back as part of the authority.
        for path in ["*", "?q=1"] {
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(http::uri::Scheme::HTTPS);
            parts.authority = Some("api.example".parse().unwrap());
            parts.path_and_query = Some(path.parse().unwrap());
            let mut req = Request::new(Full::new(Bytes::new()));
            *req.uri_mut() = http::Uri::from_parts(parts).unwrap();
            let back = round_trip(&req);
            same_head(&req, &back);
            assert_eq!(back.uri().host(), Some("api.example"));
        }
        // A scheme built from the text of a standard one in another case is not the standard
        // one (audit round 9): it comes back as it was, not as http's `https`.
        for scheme in ["HTTPS", "Http"] {
            let uri = http::Uri::builder()
                .scheme(scheme)
                .authority("api.example")
                .path_and_query("/v1")
                .build()
                .unwrap();
            let mut req = Request::new(Full::new(Bytes::new()));
            *req.uri_mut() = uri;
            let back = round_trip(&req);
            same_head(&req, &back);
            assert_eq!(back.uri().scheme(), req.uri().scheme());
            assert_ne!(back.uri().scheme(), Some(&http::uri::Scheme::HTTPS));
        }
    }

    #[test]
    fn replay_copy_of_a_stream_waits_for_the_original() {
        let req = Request::new(stream(&[b"ab"]));
        let copy = ReplayCopy::of(&req).unwrap();
        assert!(!copy.can_replay());
        futures_util::FutureExt::now_or_never(req.into_body().collect())
            .unwrap()
            .unwrap();
        assert!(copy.can_replay());
    }

    #[test]
    fn other_bodies_are_not_cloned() {
        let body = Full::new(Bytes::new()).boxed_unsync();
        assert!(try_clone_request(&Request::new(body)).is_none());
    }
}
