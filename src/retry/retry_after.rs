//! A pure, total parser for the headers that say when to retry.
//!
//! Three forms, in this order of precedence:
//!
//! 1. `retry-after-ms: 1500` — milliseconds, integer or decimal (OpenAI and the APIs that copy it);
//! 2. `retry-after: 2` or `retry-after: 2.5` — seconds, integer or decimal;
//! 3. `retry-after: Wed, 21 Oct 2015 07:28:00 GMT` — an HTTP date, taken relative to `now`.
//!
//! A header that is missing, not UTF-8, negative, not a plain decimal number (`NaN`, `inf`, `1e3`,
//! `+5` are all refused) or a date in the past is ignored and the next form is tried; when none
//! gives an answer the result is `None`. A wait longer than [`MAX_RETRY_AFTER`] (a date next
//! year, `99999999999`) is read as `MAX_RETRY_AFTER`: "absent" and "longer than you will wait"
//! are different answers, and only the first lets a client fall back to its own backoff.
//! Nothing here panics, whatever the input.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// The longest wait a `Retry-After` header is read as: 31 days (a monthly quota). A longer one
/// is read as this, not ignored: a server that says "not before next year" must not be asked
/// again in a second. The retry policy does not retry a wait over its
/// [`retry_after_cap`](crate::TransientRetryPolicy::retry_after_cap) at all.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(31 * 24 * 60 * 60);

/// How long the server asks the client to wait before it retries, from `retry-after-ms` or
/// `retry-after` in `headers`; an HTTP date is read relative to `now`.
///
/// Values that are negative, garbage or in the past are ignored (`None`); a wait over
/// [`MAX_RETRY_AFTER`] is read as `MAX_RETRY_AFTER`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderMap;
/// use tower_bearer::retry::parse_retry_after;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "2.5".parse().unwrap());
/// assert_eq!(parse_retry_after(&headers, SystemTime::now()), Some(Duration::from_millis(2500)));
///
/// headers.insert("retry-after-ms", "120".parse().unwrap()); // wins over retry-after
/// assert_eq!(parse_retry_after(&headers, SystemTime::now()), Some(Duration::from_millis(120)));
///
/// headers.clear();
/// headers.insert("retry-after", "soon".parse().unwrap());
/// assert_eq!(parse_retry_after(&headers, SystemTime::now()), None);
/// ```
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = header_str(headers, "retry-after-ms").and_then(parse_millis) {
        return Some(ms);
    }
    let value = header_str(headers, "retry-after")?;
    parse_seconds(value).or_else(|| parse_date(value, now))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    Some(headers.get(name)?.to_str().ok()?.trim())
}

/// Milliseconds, integer or decimal.
fn parse_millis(value: &str) -> Option<Duration> {
    let ms = parse_decimal(value)?;
    within_cap(ms / 1000.0)
}

/// Seconds, integer or decimal (RFC 9110 says integer; decimals are common enough to accept).
fn parse_seconds(value: &str) -> Option<Duration> {
    within_cap(parse_decimal(value)?)
}

/// An HTTP date (IMF-fixdate, RFC 850 or asctime), as a wait from `now`.
fn parse_date(value: &str, now: SystemTime) -> Option<Duration> {
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at.duration_since(now).ok()?;
    Some(wait.min(MAX_RETRY_AFTER))
}

/// `digits` or `digits.digits` (or `.digits` / `digits.`), nothing else: no sign, no exponent,
/// no `NaN` or `inf`. Long inputs are refused before any float parsing.
fn parse_decimal(value: &str) -> Option<f64> {
    if value.is_empty() || value.len() > 32 {
        return None;
    }
    let mut dots = 0;
    let mut digits = 0;
    for b in value.bytes() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' => dots += 1,
            _ => return None,
        }
    }
    if digits == 0 || dots > 1 {
        return None;
    }
    value.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// `secs` (finite and not negative: `parse_decimal` made it) as a wait, at most
/// [`MAX_RETRY_AFTER`].
fn within_cap(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&'static str, &str)]) -> Option<Duration> {
        parse_at(
            pairs,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )
    }

    fn parse_at(pairs: &[(&'static str, &str)], now: SystemTime) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().unwrap());
        }
        parse_retry_after(&headers, now)
    }

    #[test]
    fn seconds_integer_and_decimal() {
        assert_eq!(parse(&[("retry-after", "0")]), Some(Duration::ZERO));
        assert_eq!(parse(&[("retry-after", "7")]), Some(Duration::from_secs(7)));
        assert_eq!(
            parse(&[("retry-after", " 7 ")]),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse(&[("retry-after", "1.25")]),
            Some(Duration::from_millis(1250))
        );
        assert_eq!(
            parse(&[("retry-after", "3600")]),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn milliseconds_win() {
        assert_eq!(
            parse(&[("retry-after-ms", "250"), ("retry-after", "9")]),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse(&[("retry-after-ms", "12.5")]),
            Some(Duration::from_micros(12_500))
        );
        // garbage in retry-after-ms falls back to retry-after
        assert_eq!(
            parse(&[("retry-after-ms", "lots"), ("retry-after", "9")]),
            Some(Duration::from_secs(9))
        );
        assert_eq!(
            parse(&[("retry-after-ms", "-5"), ("retry-after", "9")]),
            Some(Duration::from_secs(9))
        );
    }

    #[test]
    fn http_date_relative_to_now() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_at(&[("retry-after", &later)], now),
            Some(Duration::from_secs(90))
        );
        // RFC 850 and asctime forms parse too.
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37
        let before = at - Duration::from_secs(10);
        assert_eq!(
            parse_at(&[("retry-after", "Sunday, 06-Nov-94 08:49:37 GMT")], before),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_at(&[("retry-after", "Sun Nov  6 08:49:37 1994")], before),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn past_dates_are_ignored_and_far_ones_kept() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let past = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(parse_at(&[("retry-after", &past)], now), None);
        let tomorrow = httpdate::fmt_http_date(now + Duration::from_secs(24 * 3600));
        assert_eq!(
            parse_at(&[("retry-after", &tomorrow)], now),
            Some(Duration::from_secs(24 * 3600))
        );
        let next_year = httpdate::fmt_http_date(now + Duration::from_secs(366 * 24 * 3600));
        assert_eq!(
            parse_at(&[("retry-after", &next_year)], now),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn long_waits_are_kept_not_ignored() {
        assert_eq!(
            parse(&[("retry-after", "3601")]),
            Some(Duration::from_secs(3601))
        );
        assert_eq!(
            parse(&[("retry-after-ms", "3600001")]),
            Some(Duration::from_millis(3_600_001))
        );
        for huge in ["99999999999", "99999999999999999999999999999", "1e3x"] {
            let got = parse(&[("retry-after", huge)]);
            assert!(got.is_none() || got == Some(MAX_RETRY_AFTER), "{huge}");
        }
        assert_eq!(
            parse(&[("retry-after", "99999999999999999999999999999")]),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn garbage_is_ignored() {
        for bad in [
            "",
            "-1",
            "+5",
            "NaN",
            "nan",
            "inf",
            "infinity",
            "1e3",
            "1.2.3",
            ".",
            "0x10",
            "5 seconds",
            "123456789012345678901234567890123",
            "Wed, 32 Oct 2015 07:28:00 GMT",
            "tomorrow",
        ] {
            assert_eq!(parse(&[("retry-after", bad)]), None, "{bad:?}");
            assert_eq!(parse(&[("retry-after-ms", bad)]), None, "ms {bad:?}");
        }
        assert_eq!(parse(&[]), None);
    }

    #[test]
    fn non_utf8_is_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "retry-after",
            http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(parse_retry_after(&headers, SystemTime::now()), None);
    }

    #[test]
    fn first_value_of_a_repeated_header() {
        assert_eq!(
            parse(&[("retry-after", "3"), ("retry-after", "4")]),
            Some(Duration::from_secs(3))
        );
    }
}
