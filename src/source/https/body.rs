//! Reading an answer: capped, into a buffer zeroed when dropped.

use http::header::CONTENT_LENGTH;
use http::StatusCode;
use http_body_util::{BodyExt, Limited};
use zeroize::{Zeroize, Zeroizing};

use super::{TransportError, MAX_BODY};

/// Reads the body, at most [`MAX_BODY`], into a buffer zeroed on drop; each chunk hyper hands
/// over is zeroed too when nothing else holds it.
pub(super) async fn read_body(
    response: http::Response<hyper::body::Incoming>,
    status: StatusCode,
) -> Result<Zeroizing<Vec<u8>>, TransportError> {
    let hint = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(8 * 1024)
        .min(MAX_BODY);
    let mut buf = Zeroizing::new(Vec::with_capacity(hint));
    let mut body = Limited::new(response.into_body(), MAX_BODY);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                TransportError::Body(format!(
                    "the answer ({status}) is larger than {} KiB",
                    MAX_BODY / 1024
                ))
            } else {
                TransportError::Body(format!("the answer ({status}) broke off: {e}"))
            }
        })?;
        if let Ok(data) = frame.into_data() {
            append(&mut buf, &data);
            if let Ok(mut owned) = data.try_into_mut() {
                owned.as_mut().zeroize();
            }
        }
    }
    Ok(buf)
}

/// Appends without letting `Vec` reallocate in place of us: a bigger buffer is made, the old
/// one zeroed when dropped.
pub(super) fn append(buf: &mut Zeroizing<Vec<u8>>, data: &[u8]) {
    let needed = buf.len().saturating_add(data.len());
    if needed > buf.capacity() {
        let mut bigger = Zeroizing::new(Vec::with_capacity(needed.max(buf.capacity() * 2)));
        bigger.extend_from_slice(buf);
        *buf = bigger;
    }
    buf.extend_from_slice(data);
}
