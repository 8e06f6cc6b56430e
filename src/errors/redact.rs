//! Making a server's message fit for a log line.

/// `message` made fit for a log line: at most `max` characters (then `…`), control characters
/// as spaces, and tokens that look like secrets (`sk-…` keys, the word after `Bearer`) redacted.
pub(crate) fn safe_message(message: &str, max: usize) -> String {
    let mut out = String::with_capacity(message.len().min(max + 16));
    let mut shown = 0;
    let mut after_bearer = false;
    let mut rest = message;
    while let Some(c) = rest.chars().next() {
        if shown >= max {
            out.push('…');
            break;
        }
        if is_token_char(c) {
            let end = rest.find(|c| !is_token_char(c)).unwrap_or(rest.len());
            let token = &rest[..end];
            let secret = token.len() >= 8
                && (after_bearer || token.starts_with("sk-") || token.starts_with("sk_"));
            after_bearer = token.eq_ignore_ascii_case("bearer");
            let shown_token = if secret { "[redacted]" } else { token };
            for c in shown_token.chars() {
                if shown >= max {
                    break;
                }
                out.push(c);
                shown += 1;
            }
            rest = &rest[end..];
            continue;
        }
        out.push(if c.is_control() { ' ' } else { c });
        shown += 1;
        if !c.is_whitespace() {
            after_bearer = false;
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*' | '.' | '~' | '+' | '/' | '=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_message_truncates_on_char_boundaries() {
        let long = "é".repeat(1000);
        let shown = safe_message(&long, 10);
        assert_eq!(shown, format!("{}…", "é".repeat(10)));
        assert_eq!(safe_message("short", 10), "short");
        assert_eq!(
            safe_message("line\nbreak\u{1b}[31m", 100),
            "line break [31m"
        );
    }

    #[test]
    fn safe_message_redacts_keys() {
        assert_eq!(
            safe_message(
                "Incorrect API key provided: sk-proj-abcd1234efgh. Get one at x.",
                200
            ),
            "Incorrect API key provided: [redacted] Get one at x."
        );
        assert_eq!(
            safe_message("got header Bearer abcdefgh123 here", 200),
            "got header Bearer [redacted] here"
        );
        assert_eq!(safe_message("sk-x is short", 200), "sk-x is short");
        assert_eq!(
            safe_message("bearer tokens are fine", 200),
            "bearer tokens are fine"
        );
    }
}
