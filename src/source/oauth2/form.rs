//! The token request's bytes: the form body (`application/x-www-form-urlencoded`) and the
//! `Authorization: Basic` value of RFC 6749 section 2.3.1, each in a buffer zeroed when the last
//! copy of it is dropped (they hold the client secret).

use bytes::Bytes;
use http::HeaderValue;
use zeroize::Zeroizing;

/// Builds a form body, `name=value&name=value`, in a buffer that never reallocates (a
/// reallocation would free a copy of the secret without zeroing it).
pub(super) struct Form {
    buf: Zeroizing<Vec<u8>>,
}

impl Form {
    /// A form of at most `text_len` bytes of names and values before encoding.
    pub(super) fn with_text_len(text_len: usize) -> Form {
        // Encoding makes a byte at most 3 (`%XX`); the `=` and `&` add 2 per pair, and pairs
        // are at least 1 byte each, so 3 per input byte plus a margin bounds the output.
        Form {
            buf: Zeroizing::new(Vec::with_capacity(text_len.saturating_mul(5) + 64)),
        }
    }

    /// Appends `name=value`, both form-urlencoded.
    pub(super) fn pair(&mut self, name: &str, value: &str) {
        if !self.buf.is_empty() {
            self.push(b'&');
        }
        self.encoded(name);
        self.push(b'=');
        self.encoded(value);
    }

    fn encoded(&mut self, text: &str) {
        for &b in text.as_bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => self.push(b),
                b' ' => self.push(b'+'),
                _ => {
                    self.push(b'%');
                    self.push(HEX[usize::from(b >> 4)]);
                    self.push(HEX[usize::from(b & 0xf)]);
                }
            }
        }
    }

    fn push(&mut self, b: u8) {
        if self.buf.len() == self.buf.capacity() {
            // Never reached with the capacity `with_text_len` reserves; if it were, grow by
            // hand so the old buffer is zeroed.
            let mut bigger = Zeroizing::new(Vec::with_capacity(self.buf.capacity() * 2 + 16));
            bigger.extend_from_slice(&self.buf);
            self.buf = bigger;
        }
        self.buf.push(b);
    }

    /// The body; the buffer is zeroed when hyper drops the last copy.
    pub(super) fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self.buf)
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `text` form-urlencoded, zeroed when dropped (to find the secret where a server echoed it).
pub(super) fn encode(text: &str) -> Zeroizing<String> {
    let mut form = Form::with_text_len(text.len());
    form.encoded(text);
    let bytes = std::mem::take(&mut *form.buf);
    Zeroizing::new(String::from_utf8(bytes).expect("the encoding is ASCII"))
}

/// `Basic base64(urlencode(client_id) ":" urlencode(secret))`, as RFC 6749 section 2.3.1 asks,
/// marked sensitive. Every intermediate buffer is zeroed when dropped.
pub(super) fn basic_authorization(client_id: &str, secret: &str) -> HeaderValue {
    let mut pair = Form::with_text_len(client_id.len() + secret.len() + 1);
    pair.encoded(client_id);
    pair.push(b':');
    pair.encoded(secret);
    let mut value = Zeroizing::new(Vec::with_capacity(6 + pair.buf.len().div_ceil(3) * 4));
    value.extend_from_slice(b"Basic ");
    base64(&pair.buf, &mut value);
    let mut header = HeaderValue::from_maybe_shared(Bytes::from_owner(value))
        .expect("base64 is a valid header value");
    header.set_sensitive(true);
    header
}

/// Standard base64 with padding (RFC 4648 section 4), appended to `out` (which has room).
fn base64(input: &[u8], out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63]);
        out.push(ALPHABET[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63]
        } else {
            b'='
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors_of_rfc_4648() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = Vec::new();
            base64(input.as_bytes(), &mut out);
            assert_eq!(out, output.as_bytes(), "{input}");
        }
    }

    #[test]
    fn form_urlencoding() {
        assert_eq!(*encode("az AZ09*-._"), "az+AZ09*-._");
        assert_eq!(*encode("a+b&c=d/e%f~"), "a%2Bb%26c%3Dd%2Fe%25f%7E");
        assert_eq!(*encode("é:"), "%C3%A9%3A");
        let mut form = Form::with_text_len(0);
        form.pair("grant_type", "client_credentials");
        form.pair("scope", "read write");
        form.pair("resource", "https://api.example.com/");
        assert_eq!(
            &form.into_bytes()[..],
            b"grant_type=client_credentials&scope=read+write&resource=https%3A%2F%2Fapi.example.com%2F"
        );
    }

    /// RFC 6749 section 2.3.1: the id and the secret are form-urlencoded, then joined by `:`
    /// and base64-encoded; a `:` in the id no longer splits it.
    #[test]
    fn basic_authorization_encodes_id_and_secret() {
        let header = basic_authorization("s6BhdRkqt3", "gX1fBat3bV");
        assert_eq!(header, "Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW");
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("czZC"));
        let header = basic_authorization("id:1", "p w+/&");
        let mut expected = b"Basic ".to_vec();
        base64(b"id%3A1:p+w%2B%2F%26", &mut expected);
        assert_eq!(header.as_bytes(), &expected[..]);
    }

    #[test]
    fn long_values_fit_the_reserved_buffer() {
        let long = "\u{7f}".repeat(5000);
        let mut form = Form::with_text_len("k".len() + long.len());
        let capacity = form.buf.capacity();
        form.pair("k", &long);
        assert_eq!(form.buf.capacity(), capacity, "no reallocation");
        assert_eq!(form.buf.len(), 2 + 3 * 5000);
    }
}
