//! The one line of a credential helper's stderr that an error may quote.
//!
//! A helper may echo its secret (or the token it failed to print) on stderr, so the quote is
//! conservative: the first line with any text, cut to [`MAX_CHARS`] characters, with these
//! redacted before the cut:
//! - the values given to the helper with [`CommandKeySource::env`](super::CommandKeySource::env)
//!   (8 bytes or more): a client secret passed that way must not come back in an error;
//! - every word holding a run of 20 or more token characters (letters, digits, `-._~+/=`) of at
//!   least two classes among lowercase, uppercase and digits: what random tokens look like, at
//!   the price of hiding some long identifiers;
//! - whatever the crate's redaction of server text catches (`sk-…`, JWTs, `Bearer …`,
//!   `token=…`).

// The crate's redaction of server text; its one import here, to repoint when it moves.
use crate::redact::safe_message;

/// The longest quote, in characters.
pub(super) const MAX_CHARS: usize = 200;

/// The shortest run of token characters that is redacted.
const MIN_TOKEN_RUN: usize = 20;

/// The first line of `stderr` with any text, redacted and cut; `None` when there is none.
pub(super) fn excerpt(stderr: &[u8], secrets: &[&str]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut line = line.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        if line.contains(secret) {
            line = line.replace(secret, "[redacted]");
        }
    }
    let words: Vec<&str> = line
        .split_whitespace()
        .map(|word| {
            if looks_like_a_token(word) {
                "[redacted]"
            } else {
                word
            }
        })
        .collect();
    let quoted = safe_message(&words.join(" "), MAX_CHARS);
    let quoted = quoted.trim();
    (!quoted.is_empty()).then(|| quoted.to_owned())
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/' | '=')
}

/// Whether `word` holds a run of token characters that looks random (see the module docs).
fn looks_like_a_token(word: &str) -> bool {
    word.split(|c| !is_token_char(c)).any(|run| {
        let classes = [
            run.bytes().any(|b| b.is_ascii_lowercase()),
            run.bytes().any(|b| b.is_ascii_uppercase()),
            run.bytes().any(|b| b.is_ascii_digit()),
        ];
        run.len() >= MIN_TOKEN_RUN && classes.iter().filter(|c| **c).count() >= 2
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_the_first_line_with_text_and_cuts_it() {
        assert_eq!(excerpt(b"", &[]), None);
        assert_eq!(excerpt(b" \n\t\n", &[]), None);
        assert_eq!(
            excerpt(b"\n  error: not logged in  \nsecond line\n", &[]).as_deref(),
            Some("error: not logged in")
        );
        let long = "word ".repeat(100);
        let quoted = excerpt(long.as_bytes(), &[]).unwrap();
        assert_eq!(quoted.chars().count(), MAX_CHARS + 1, "{quoted}");
        assert!(quoted.ends_with('…'));
        assert_eq!(
            excerpt(b"bad \xff byte\x1b[31m", &[]).as_deref(),
            Some("bad \u{fffd} byte [31m")
        );
    }

    #[test]
    fn redacts_what_looks_like_a_secret_before_cutting() {
        let cases: [(&str, &[&str], &str); 7] = [
            (
                "error: token a8F3kQ9zX2mP7vL1nB4c expired",
                &[],
                "error: token [redacted] expired",
            ),
            (
                "got \"ghp_0123456789abcdefghij\", refusing",
                &[],
                "got [redacted] refusing",
            ),
            (
                "Authorization: Bearer abcdefghijklmnop",
                &[],
                "Authorization: Bearer [redacted]",
            ),
            (
                "key sk-abcdefghijklmnop leaked",
                &[],
                "key [redacted] leaked",
            ),
            (
                "client secret hunter2hunter2 refused",
                &["hunter2hunter2"],
                "client secret [redacted] refused",
            ),
            (
                "short pw hunter2 shown",
                &["hunter2"],
                "short pw hunter2 shown",
            ),
            (
                "no credentials in /home/user/.config/helper found",
                &[],
                "no credentials in /home/user/.config/helper found",
            ),
        ];
        for (line, secrets, expected) in cases {
            assert_eq!(
                excerpt(line.as_bytes(), secrets).as_deref(),
                Some(expected),
                "{line}"
            );
        }
        // A token past the cut is redacted, not cut into a shorter, unredacted piece.
        let line = format!("{} Zx9Zx9Zx9Zx9Zx9Zx9Zx9Zx9Zx9", "a".repeat(190));
        let quoted = excerpt(line.as_bytes(), &[]).unwrap();
        assert!(!quoted.contains("Zx9"), "{quoted}");
    }
}
