//! The 401 replay's copy of a request: the URI and headers packed as bytes.

use std::marker::PhantomData;

use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

use super::kept::KeptBody;
use super::pool::{pooled, Recycled};

/// What the 401 replay keeps of a request it sent: method, version, extensions, the body (by
/// reference count for `Full<Bytes>`) and, packed as bytes, the URI and the headers; in a box
/// of this thread's spares (`pool.rs`), so that the response future holding it stays small.
///
/// Packing, rather than cloning the `Uri` and `HeaderMap`, is what keeps this cheap: cloning
/// them costs an atomic reference count per URI part and per header value (and a first clone
/// of a `Bytes` built from a `&str` allocates), where packing is a copy of a few dozen bytes,
/// inline when they fit (a URI and a few headers do). The `Uri` and `HeaderMap` are rebuilt
/// only for a replay, which is rare.
pub(crate) struct ReplayCopy<B> {
    parts: Recycled<Parts>,
    body: PhantomData<fn() -> B>,
}

/// What is kept, whatever the request's body type: one type for all, so that its boxes can go
/// to any thread's spares. A kept box keeps its inline buffer (zeroed where it was written):
/// the next copy writes only the bytes it packs, and no field is built elsewhere and moved in.
#[derive(Default)]
struct Parts {
    method: Method,
    version: Version,
    head: Head,
    extensions: Extensions,
    /// `None` once cleared (or taken for the replay).
    body: Option<KeptBody>,
}

pooled!(Parts, |parts| {
    // The request's own values (user code: a body's or an extension's `Drop`) go; the inline
    // buffer stays, zeroed, for the next copy to write.
    parts.body = None;
    if !parts.extensions.is_empty() {
        parts.extensions = Extensions::new();
    }
    parts.method = Method::GET;
    match &mut parts.head {
        // The packed bytes go too: a header value of the caller's (a cookie, a key for
        // another service) does not stay readable in a spare for the life of the process.
        // (The whole buffer: a store of known size, where a slice of it is a `memset` call.)
        Head::Inline { len, buf } => {
            *buf = [0; INLINE];
            *len = 0;
        }
        head => *head = Head::default(),
    }
});

impl<B: 'static> ReplayCopy<B> {
    /// A copy of `req`, if its body can be had again. See the module docs.
    #[inline(always)]
    pub(crate) fn of(req: &Request<B>) -> Option<Self> {
        let body = KeptBody::clone_of(req.body())?;
        let mut copy = ReplayCopy {
            parts: Recycled::empty(),
            body: PhantomData,
        };
        // Written where it stays: nothing is built elsewhere and moved.
        let parts = copy.parts.get_mut();
        parts.body = Some(body);
        if *req.method() != Method::GET {
            parts.method = req.method().clone();
        }
        parts.version = req.version();
        if !req.extensions().is_empty() {
            parts.extensions = req.extensions().clone();
        }
        parts.head.fill(req.uri(), req.headers());
        Some(copy)
    }

    /// Whether the copy can be sent now. Only a [`ReplayableBody`] can say no.
    pub(crate) fn can_replay(&self) -> bool {
        let body = self.parts.get().body.as_ref();
        body.is_some_and(KeptBody::can_replay)
    }

    /// Where the copy's box is, to tell a reused one.
    #[cfg(test)]
    pub(crate) fn address(&self) -> *const () {
        self.parts.get() as *const Parts as *const ()
    }

    /// The request again, as it was copied. `None` only if its URI or headers, which were valid
    /// when copied, do not parse back (they always should).
    pub(crate) fn into_request(mut self) -> Option<Request<B>> {
        let parts = self.parts.get_mut();
        let (uri, headers) = std::mem::take(&mut parts.head).unpack()?;
        let mut req = Request::new(parts.body.take()?.into_body()?);
        *req.method_mut() = std::mem::take(&mut parts.method);
        *req.uri_mut() = uri;
        *req.version_mut() = parts.version;
        *req.headers_mut() = headers;
        *req.extensions_mut() = std::mem::take(&mut parts.extensions);
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
    /// The bytes are `buf[..len]`; the rest is zero.
    Inline {
        len: u16,
        buf: [u8; INLINE],
    },
    Spilled(Box<[u8]>),
    /// A part too long for a u16 length, or a URI with no text form: cloned as it is.
    Cloned(Box<(Uri, HeaderMap)>),
}

const SENSITIVE: u8 = 1;

impl Default for Head {
    fn default() -> Self {
        Head::Inline {
            len: 0,
            buf: [0; INLINE],
        }
    }
}

impl Head {
    /// Packs `uri` and `headers` into `self`, a `Head::Inline` (whatever its bytes).
    #[inline(always)]
    fn fill(&mut self, uri: &Uri, headers: &HeaderMap) {
        // The scheme as a tag: no copy for http and https.
        let (tag, other) = match uri.scheme_str() {
            None => (NO_SCHEME, ""),
            Some("https") => (HTTPS, ""),
            Some("http") => (HTTP, ""),
            Some(other) => (OTHER_SCHEME, other),
        };
        // A scheme whose text is `http` or `https` in another case is not http's own (built
        // from text: `Uri::builder().scheme("HTTPS")`), but as text it would parse back as
        // http's own, another request (audit round 9). Such a URI is cloned instead.
        let standard_text = tag == OTHER_SCHEME
            && (other.eq_ignore_ascii_case("https") || other.eq_ignore_ascii_case("http"));
        let authority = uri.authority().map_or("", |a| a.as_str());
        let path = uri.path_and_query().map_or("", |p| p.as_str());
        let text =
            if other.is_empty() { 0 } else { other.len() + 3 } + authority.len() + path.len();
        // After an authority, only a path that starts with `/` or `?` ends it in the text:
        // `*` (`OPTIONS *` to a given host, by `Uri::from_parts`) would parse back as part of
        // the authority, another host (audit round 8). Such a URI is cloned instead.
        let ends_authority =
            authority.is_empty() || path.is_empty() || matches!(path.as_bytes()[0], b'/' | b'?');
        if text <= u16::MAX as usize
            && (text != 0 || tag != NO_SCHEME)
            && ends_authority
            && !standard_text
        {
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
