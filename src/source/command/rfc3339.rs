//! RFC 3339 timestamps, as Kubernetes writes `expirationTimestamp`:
//! `YYYY-MM-DDTHH:MM:SS(.frac)?(Z|±HH:MM)`.
//!
//! `T` and `Z` may be lowercase, and a space may stand for the `T` (RFC 3339, section 5.6,
//! note). A leap second (`:60`) is read as the first second of the next minute. A fraction of
//! more than nine digits is cut to nanoseconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time `text` names, or `None` when it is not an RFC 3339 date-time (or lies outside
/// what `SystemTime` holds).
pub(super) fn parse(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    let separators_ok = b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !separators_ok
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }

    let mut i = 19;
    let mut nanos: u32 = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let count = i - start;
        if count == 0 {
            return None;
        }
        for _ in count..9 {
            nanos *= 10;
        }
    }
    let offset: i64 = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let hours = digits(rest, 0, 2)?;
            let minutes = digits(rest, 3, 2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };

    let days = days_from_civil(i64::from(year), month, day);
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) + -offset;
    let whole = if seconds >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(seconds.unsigned_abs()))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(seconds.unsigned_abs()))?
    };
    whole.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// The number in `b[at..at + len]`, all ASCII digits.
fn digits(b: &[u8], at: usize, len: usize) -> Option<u32> {
    b.get(at..at + len)?.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar (Howard
/// Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, nanos: u32) -> SystemTime {
        let base = if seconds >= 0 {
            UNIX_EPOCH + Duration::from_secs(seconds as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
        };
        base + Duration::from_nanos(u64::from(nanos))
    }

    #[test]
    fn reads_utc_offsets_and_fractions() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(at(0, 0)));
        assert_eq!(
            parse("2018-03-05T17:30:20-08:00"),
            Some(at(1_520_299_820, 0))
        );
        assert_eq!(parse("2018-03-06T01:30:20Z"), Some(at(1_520_299_820, 0)));
        assert_eq!(
            parse("2018-03-06T02:30:20+01:00"),
            Some(at(1_520_299_820, 0))
        );
        assert_eq!(
            parse("2024-02-29T12:00:00.5Z"),
            Some(at(1_709_208_000, 500_000_000))
        );
        assert_eq!(
            parse("2024-02-29t12:00:00.123456789123z"),
            Some(at(1_709_208_000, 123_456_789))
        );
        assert_eq!(parse("2024-02-29 12:00:00Z"), Some(at(1_709_208_000, 0)));
        assert_eq!(parse("2000-03-01T00:00:00Z"), Some(at(951_868_800, 0)));
        assert_eq!(parse("1969-12-31T23:59:59Z"), Some(at(-1, 0)));
        assert_eq!(parse("2016-12-31T23:59:60Z"), parse("2017-01-01T00:00:00Z"));
        assert_eq!(parse("9999-12-31T23:59:59Z"), Some(at(253_402_300_799, 0)));
    }

    #[test]
    fn refuses_what_is_not_rfc_3339() {
        for bad in [
            "",
            "2018-03-05",
            "2018-03-05T17:30:20",
            "2018-03-05T17:30:20+0800",
            "2018-03-05T17:30:20+08",
            "2018-03-05T17:30:20.Z",
            "2018-03-05T17:30:20ZZ",
            "2018-03-05T17:30:20Z ",
            "2018-13-05T17:30:20Z",
            "2018-00-05T17:30:20Z",
            "2018-02-29T17:30:20Z",
            "2100-02-29T17:30:20Z",
            "2018-04-31T17:30:20Z",
            "2018-03-00T17:30:20Z",
            "2018-03-05T24:00:00Z",
            "2018-03-05T17:60:20Z",
            "2018-03-05T17:30:61Z",
            "2018-03-05T17:30:20+24:00",
            "2018-03-05T17:30:20+08:60",
            "2018/03/05T17:30:20Z",
            "2018-03-05X17:30:20Z",
            "+2018-03-05T17:30:20Z",
            "2018-03-05T17:30:2aZ",
            "Mon, 05 Mar 2018 17:30:20 GMT",
            "2018-03-05T17:30:20.1234é",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
