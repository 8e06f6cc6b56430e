//! Times in messages: an HTTP date where one can show it. `httpdate` panics outside 1970–9999,
//! and an expiry comes from a source (a helper's output, a token endpoint): any `SystemTime`.

use std::time::{SystemTime, UNIX_EPOCH};

/// 10000-01-01T00:00:00Z, the first second an HTTP date cannot show.
const YEAR_10000: u64 = 253_402_300_800;

/// `at` as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`), or as seconds from the Unix epoch
/// when it is before 1970 or after 9999.
pub(crate) fn http_date(at: SystemTime) -> String {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) if since.as_secs() < YEAR_10000 => httpdate::fmt_http_date(at),
        Ok(since) => format!("{} s after the Unix epoch", since.as_secs()),
        Err(before) => format!("{} s before the Unix epoch", before.duration().as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn any_time_formats_without_panicking() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(UNIX_EPOCH - Duration::from_secs(1)),
            "1 s before the Unix epoch"
        );
        let last = UNIX_EPOCH + Duration::from_secs(YEAR_10000 - 1);
        assert_eq!(http_date(last), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(
            http_date(last + Duration::from_secs(1)),
            format!("{YEAR_10000} s after the Unix epoch")
        );
    }
}
