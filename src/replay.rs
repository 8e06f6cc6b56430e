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

use std::any::Any;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use tower::BoxError;

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

/// What the 401 replay keeps of a request it sent: method, version, extensions, the body (by
/// reference count for `Full<Bytes>`) and, packed as bytes, the URI and the headers.
///
/// Packing, rather than cloning the `Uri` and `HeaderMap`, is what keeps this cheap: cloning
/// them costs an atomic reference count per URI part and per header value (and a first clone
/// of a `Bytes` built from a `&str` allocates), where packing is a copy of a few dozen bytes,
/// inline when they fit (a URI and a few headers do). The `Uri` and `HeaderMap` are rebuilt
/// only for a replay, which is rare.
pub(crate) struct ReplayCopy<B> {
    method: Method,
    version: Version,
    head: Head,
    extensions: Extensions,
    body: B,
}

impl<B: 'static> ReplayCopy<B> {
    /// A copy of `req`, if its body can be had again. See the module docs.
    #[inline(always)]
    pub(crate) fn of(req: &Request<B>) -> Option<Self> {
        let body = try_clone_body(req.body())?;
        let mut copy = ReplayCopy {
            method: req.method().clone(),
            version: req.version(),
            head: Head::Inline {
                len: 0,
                buf: [0; INLINE],
            },
            extensions: if req.extensions().is_empty() {
                Extensions::new()
            } else {
                req.extensions().clone()
            },
            body,
        };
        // Packed where it stays: the inline bytes are not moved after they are written.
        copy.head.fill(req.uri(), req.headers());
        Some(copy)
    }

    /// Whether the copy can be sent now. Only a [`ReplayableBody`] can say no.
    pub(crate) fn can_replay(&self) -> bool {
        match (&self.body as &dyn Any).downcast_ref::<ReplayableBody>() {
            Some(body) => body.can_replay(),
            None => true,
        }
    }

    /// The request again, as it was copied. `None` only if its URI or headers, which were valid
    /// when copied, do not parse back (they always should).
    pub(crate) fn into_request(self) -> Option<Request<B>> {
        let (uri, headers) = self.head.unpack()?;
        let mut req = Request::new(self.body);
        *req.method_mut() = self.method;
        *req.uri_mut() = uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = headers;
        *req.extensions_mut() = self.extensions;
        Some(req)
    }
}

/// Bytes packed inline in a [`ReplayCopy`]: room for a typical API URI and a few headers.
const INLINE: usize = 124;

/// The URI and headers of a [`ReplayCopy`].
///
/// Packed layout: the URI as [`PackedUri`], then per header value: flags (1 = sensitive), name
/// length and value length (u16 LE each), name, value; in `HeaderMap::iter` order.
enum Head {
    Inline {
        len: u16,
        buf: [u8; INLINE],
    },
    Spilled(Box<[u8]>),
    /// A part too long for a u16 length, or a URI with no text form: cloned as it is.
    Cloned(Box<(Uri, HeaderMap)>),
}

const SENSITIVE: u8 = 1;

impl Head {
    /// Packs `uri` and `headers` into `self`, an empty `Head::Inline`.
    #[inline(always)]
    fn fill(&mut self, uri: &Uri, headers: &HeaderMap) {
        // The scheme as a tag: no copy for http and https.
        let (tag, other) = match uri.scheme_str() {
            None => (NO_SCHEME, ""),
            Some("https") => (HTTPS, ""),
            Some("http") => (HTTP, ""),
            Some(other) => (OTHER_SCHEME, other),
        };
        let authority = uri.authority().map_or("", |a| a.as_str());
        let path = uri.path_and_query().map_or("", |p| p.as_str());
        let text =
            if other.is_empty() { 0 } else { other.len() + 3 } + authority.len() + path.len();
        if text <= u16::MAX as usize && (text != 0 || tag != NO_SCHEME) {
            let packed = PackedUri {
                tag,
                other,
                authority,
                path,
                text,
            };
            // One pass in the common case: it fits inline.
            if let Head::Inline { len, buf } = self {
                if let Some(used) = pack(buf, &packed, headers) {
                    *len = used as u16;
                    return;
                }
            }
            if let Some(len) = packed_len(&packed, headers) {
                let mut buf = vec![0u8; len].into_boxed_slice();
                if pack(&mut buf, &packed, headers).is_some() {
                    *self = Head::Spilled(buf);
                    return;
                }
            }
        }
        *self = Head::Cloned(Box::new((uri.clone(), headers.clone())));
    }

    fn unpack(self) -> Option<(Uri, HeaderMap)> {
        let packed = match &self {
            Head::Inline { len, buf } => &buf[..*len as usize],
            Head::Spilled(buf) => &buf[..],
            Head::Cloned(_) => {
                let Head::Cloned(cloned) = self else {
                    unreachable!()
                };
                return Some(*cloned);
            }
        };
        let mut r = Reader(packed);
        let tag = r.take(1)?[0];
        let text_len = r.u16()?;
        let prefix: &[u8] = match tag {
            HTTP => b"http://",
            HTTPS => b"https://",
            _ => b"",
        };
        let mut text = Vec::with_capacity(prefix.len() + text_len);
        text.extend_from_slice(prefix);
        text.extend_from_slice(r.take(text_len)?);
        let uri = Uri::try_from(text).ok()?;
        let mut headers = HeaderMap::new();
        while !r.0.is_empty() {
            let flags = r.take(1)?[0];
            let (n, v) = (r.u16()?, r.u16()?);
            let name = HeaderName::from_bytes(r.take(n)?).ok()?;
            let mut value = HeaderValue::from_bytes(r.take(v)?).ok()?;
            value.set_sensitive(flags & SENSITIVE != 0);
            headers.append(name, value);
        }
        Some((uri, headers))
    }
}

const NO_SCHEME: u8 = 0;
const HTTP: u8 = 1;
const HTTPS: u8 = 2;
/// A scheme other than http and https: written out, with its `://`, before the authority.
const OTHER_SCHEME: u8 = 3;

/// A URI's parts as [`pack`] writes them: `tag`, the text length (u16 LE), then the text
/// (`other://` if the scheme is neither http nor https, authority, path and query).
struct PackedUri<'a> {
    tag: u8,
    other: &'a str,
    authority: &'a str,
    path: &'a str,
    text: usize,
}

/// Writes the packed head into `buf`; `None` if it does not fit or a part is too long for
/// its u16 length.
#[inline(always)]
fn pack(buf: &mut [u8], uri: &PackedUri<'_>, headers: &HeaderMap) -> Option<usize> {
    let mut w = Writer { buf, at: 0 };
    let len = (uri.text as u16).to_le_bytes();
    w.put(&[uri.tag, len[0], len[1]])?;
    if !uri.other.is_empty() {
        w.put(uri.other.as_bytes())?;
        w.put(b"://")?;
    }
    w.put(uri.authority.as_bytes())?;
    w.put(uri.path.as_bytes())?;
    if !headers.is_empty() {
        for (name, value) in headers {
            let (name, bytes) = (name.as_str().as_bytes(), value.as_bytes());
            let n = u16::try_from(name.len()).ok()?.to_le_bytes();
            let v = u16::try_from(bytes.len()).ok()?.to_le_bytes();
            let flags = if value.is_sensitive() { SENSITIVE } else { 0 };
            w.put(&[flags, n[0], n[1], v[0], v[1]])?;
            w.put(name)?;
            w.put(bytes)?;
        }
    }
    Some(w.at)
}

/// The length [`pack`] needs; `None` if a part is too long for its u16 length.
fn packed_len(uri: &PackedUri<'_>, headers: &HeaderMap) -> Option<usize> {
    let mut len = 3 + uri.text;
    for (name, value) in headers {
        let (n, v) = (name.as_str().len(), value.as_bytes().len());
        if n > u16::MAX as usize || v > u16::MAX as usize {
            return None;
        }
        len += 5 + n + v;
    }
    Some(len)
}

struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.at + bytes.len();
        self.buf.get_mut(self.at..end)?.copy_from_slice(bytes);
        self.at = end;
        Some(())
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<usize> {
        let b = self.take(2)?;
        Some(u16::from_le_bytes([b[0], b[1]]) as usize)
    }
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
    // The type tests are constants after monomorphization: no cost for other body types.
    let any = body as &dyn Any;
    if let Some(b) = any.downcast_ref::<Full<Bytes>>() {
        return cast(b.clone());
    }
    if let Some(b) = any.downcast_ref::<Empty<Bytes>>() {
        return cast(*b);
    }
    if let Some(b) = any.downcast_ref::<String>() {
        return cast(b.clone());
    }
    if let Some(b) = any.downcast_ref::<ReplayableBody>() {
        return cast(b.replay_handle());
    }
    None
}

/// Turns a `T` into a `U` known to be the same type, without boxing.
fn cast<T: 'static, U: 'static>(value: T) -> Option<U> {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
}

/// A streaming request body that can be replayed once it has been sent, if it was small enough.
///
/// Wrap a streaming body (an incoming request being proxied, a channel) in it when the request
/// should survive a 401 replay or a transient retry. It keeps each frame it sends (by reference
/// count for `Bytes` frames) until the cap; past the cap it drops what it kept and the request
/// is not replayed. In-memory bodies (`Full<Bytes>`, `Empty<Bytes>`, `String`) need no wrapper.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use tower_bearer::ReplayableBody;
///
/// # tokio_test_block_on(async {
/// let body = ReplayableBody::new(Full::new(Bytes::from_static(b"{\"model\":\"x\"}")));
/// let collected = body.collect().await.unwrap().to_bytes();
/// assert_eq!(collected, "{\"model\":\"x\"}");
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
pub struct ReplayableBody {
    state: State,
}

enum State {
    /// The original, streaming and recording.
    Recording {
        inner: UnsyncBoxBody<Bytes, BoxError>,
        tape: Arc<Mutex<Tape>>,
    },
    /// A replay, playing back a finished tape.
    Replaying { tape: Arc<Mutex<Tape>>, next: usize },
}

struct Tape {
    frames: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    len: usize,
    cap: usize,
    /// The original went past the cap: nothing is kept.
    overflowed: bool,
    /// The original reached its end.
    complete: bool,
}

impl ReplayableBody {
    /// Wraps `body`, keeping up to 64 KiB for a replay.
    pub fn new<B>(body: B) -> ReplayableBody
    where
        B: Body + Send + 'static,
        B::Error: Into<BoxError>,
    {
        ReplayableBody::with_cap(body, DEFAULT_REPLAY_CAP)
    }

    /// Wraps `body`, keeping up to `cap` bytes for a replay.
    pub fn with_cap<B>(body: B, cap: usize) -> ReplayableBody
    where
        B: Body + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let inner = body
            .map_frame(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
            .map_err(Into::into)
            .boxed_unsync();
        ReplayableBody {
            state: State::Recording {
                inner,
                tape: Arc::new(Mutex::new(Tape {
                    frames: Vec::new(),
                    trailers: None,
                    len: 0,
                    cap,
                    overflowed: false,
                    complete: false,
                })),
            },
        }
    }

    fn tape(&self) -> &Arc<Mutex<Tape>> {
        match &self.state {
            State::Recording { tape, .. } | State::Replaying { tape, .. } => tape,
        }
    }

    fn replay_handle(&self) -> ReplayableBody {
        ReplayableBody {
            state: State::Replaying {
                tape: self.tape().clone(),
                next: 0,
            },
        }
    }

    fn can_replay(&self) -> bool {
        let tape = lock(self.tape());
        tape.complete && !tape.overflowed
    }
}

fn lock(tape: &Mutex<Tape>) -> std::sync::MutexGuard<'_, Tape> {
    // A panic while holding the lock cannot leave the tape half-written in a way that matters:
    // `complete` is set last.
    tape.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Body for ReplayableBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.state {
            State::Recording { inner, tape } => {
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                let mut tape = lock(tape);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        tape.record(frame);
                        // A body of known length is complete with its last byte: a server that
                        // answers 401 at once may never let the client poll for the end.
                        if inner.is_end_stream() {
                            tape.complete = true;
                        }
                    }
                    Poll::Ready(None) => tape.complete = true,
                    _ => {}
                }
                polled
            }
            State::Replaying { tape, next } => {
                let tape = lock(tape);
                if !tape.complete || tape.overflowed {
                    return Poll::Ready(Some(Err(
                        "the request body cannot be replayed: it was not kept in full".into(),
                    )));
                }
                let i = *next;
                *next += 1;
                Poll::Ready(match tape.frames.get(i) {
                    Some(data) => Some(Ok(Frame::data(data.clone()))),
                    None if i == tape.frames.len() => {
                        tape.trailers.clone().map(|t| Ok(Frame::trailers(t)))
                    }
                    None => None,
                })
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Recording { inner, .. } => inner.is_end_stream(),
            State::Replaying { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Recording { inner, .. } => inner.size_hint(),
            State::Replaying { tape, .. } => {
                let tape = lock(tape);
                if tape.complete && !tape.overflowed {
                    SizeHint::with_exact(tape.len as u64)
                } else {
                    SizeHint::default()
                }
            }
        }
    }
}

impl Tape {
    fn record(&mut self, frame: &Frame<Bytes>) {
        if self.overflowed {
            return;
        }
        if let Some(data) = frame.data_ref() {
            self.len += data.len();
            if self.len > self.cap {
                self.overflowed = true;
                self.frames = Vec::new();
                return;
            }
            self.frames.push(data.clone());
        } else if let Some(trailers) = frame.trailers_ref() {
            self.trailers = Some(trailers.clone());
        }
    }
}

impl fmt::Debug for ReplayableBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tape = lock(self.tape());
        f.debug_struct("ReplayableBody")
            .field("replaying", &matches!(self.state, State::Replaying { .. }))
            .field("kept_bytes", &tape.len)
            .field("cap", &tape.cap)
            .field("complete", &tape.complete)
            .field("overflowed", &tape.overflowed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

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
