//! `parse_retry_after` on arbitrary header values and clocks: never panics, and whatever it
//! returns is within `MAX_RETRY_AFTER`.
#![no_main]

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_bearer::retry::{parse_retry_after, MAX_RETRY_AFTER};

fuzz_target!(|data: &[u8]| {
    // Layout: 8 bytes of clock (seconds since the epoch), 1 byte of which headers to set,
    // then the value(s), split at the first 0xff byte when both headers are set.
    if data.len() < 9 {
        return;
    }
    let secs = u64::from_le_bytes(data[..8].try_into().unwrap()) % (1 << 40);
    let Some(now) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs)) else {
        return;
    };
    let which = data[8];
    let rest = &data[9..];
    let (first, second) = match rest.iter().position(|&b| b == 0xff) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &rest[..0]),
    };
    let mut headers = HeaderMap::new();
    let mut add = |name: &'static str, value: &[u8]| {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    };
    match which % 4 {
        0 => add("retry-after", first),
        1 => add("retry-after-ms", first),
        2 => {
            add("retry-after-ms", first);
            add("retry-after", second);
        }
        _ => {
            add("retry-after", first);
            add("retry-after", second);
        }
    }
    if let Some(wait) = parse_retry_after(&headers, now) {
        assert!(wait <= MAX_RETRY_AFTER, "{wait:?} over the cap");
    }
    // The same headers through an ApiError, read against the real clock.
    let err = tower_bearer::ApiError::new(
        http::StatusCode::TOO_MANY_REQUESTS,
        headers,
        bytes::Bytes::new(),
    );
    if let Some(wait) = err.retry_after() {
        assert!(wait <= MAX_RETRY_AFTER);
    }
});
