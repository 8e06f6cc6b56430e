//! Making a server's message fit for a log line.

/// `message` made fit for a log line: at most `max` characters (then `…`), control characters
/// as spaces, and words that look like secrets redacted: `sk-…` keys and Vault tokens
/// (`hvs.…`), wherever they start in a word, and the word after `Bearer`.
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
            let mut end = rest.find(|c| !is_token_char(c)).unwrap_or(rest.len());
            // A key may start inside a token, after a `=` or `/` (`?api_key=sk-…`): show what
            // comes before it as a token of its own.
            if let Some(at) = embedded_key_start(&rest[..end]) {
                end = at;
            }
            let token = &rest[..end];
            // A key may hold any visible ASCII (`!`, `:`, `"`, `#`…), not only token characters:
            // a secret runs to the end of the word, or a key like `sk-a!bcdefghijklmnop` would
            // be cut at the `!` and its tail shown.
            let word_end = rest
                .find(|c: char| c.is_whitespace() || !c.is_ascii_graphic())
                .unwrap_or(rest.len());
            let secret = word_end >= 8 && (after_bearer || looks_like_a_secret(token));
            after_bearer = token.eq_ignore_ascii_case("bearer");
            let (shown_token, end) = if secret {
                ("[redacted]", word_end)
            } else {
                (token, end)
            };
            for c in shown_token.chars() {
                if shown >= max {
                    // Cut inside a word: mark it, even if nothing follows the word.
                    out.push('…');
                    return out;
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

/// How API keys and Vault tokens begin: OpenAI-style keys (`sk-…`, `sk_…`) and Vault's service,
/// batch and recovery tokens (`hvs.…`, `hvb.…`, `hvr.…`).
const SECRET_PREFIXES: [&str; 5] = ["sk-", "sk_", "hvs.", "hvb.", "hvr."];

/// Whether a token begins like a key or a Vault token (including Vault's legacy
/// `s.` + 24 characters form).
fn looks_like_a_secret(token: &str) -> bool {
    SECRET_PREFIXES.iter().any(|p| token.starts_with(p))
        || (token.len() == 26
            && matches!(&token[..2], "s." | "b." | "r.")
            && token[2..].bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Where a key or Vault token starts inside `token` (all ASCII), after a character that is not
/// a letter or digit (so `task-runner` and `disk_usage` hold no key).
fn embedded_key_start(token: &str) -> Option<usize> {
    let bytes = token.as_bytes();
    (1..bytes.len()).find(|&i| {
        !bytes[i - 1].is_ascii_alphanumeric()
            && SECRET_PREFIXES.iter().any(|p| token[i..].starts_with(p))
    })
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
        assert_eq!(safe_message("exactly", 7), "exactly");
        assert_eq!(
            safe_message(&"x".repeat(50), 10),
            format!("{}…", "x".repeat(10))
        );
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

    #[test]
    fn safe_message_redacts_keys_with_punctuation_whole() {
        // Keys may hold any visible ASCII; the redaction must not stop at the first character
        // that is not a token character and show the rest.
        assert_eq!(
            safe_message(
                "Incorrect API key provided: sk-a!bcdefghijklmnop. Retry.",
                200
            ),
            "Incorrect API key provided: [redacted] Retry."
        );
        assert_eq!(
            safe_message("key 'sk-live:0123\"456789' refused", 200),
            "key '[redacted] refused"
        );
        assert_eq!(
            safe_message("Bearer ab#cdefghijkl sent", 200),
            "Bearer [redacted] sent"
        );
        assert_eq!(safe_message("sk-a! short", 200), "sk-a! short");
    }

    #[test]
    fn safe_message_redacts_keys_inside_a_token() {
        assert_eq!(
            safe_message(
                "Invalid URL (GET /v1/models?api_key=sk-live-0123456789)",
                200
            ),
            "Invalid URL (GET /v1/models?api_key=[redacted]"
        );
        assert_eq!(
            safe_message("authorization=sk_abc!def0123456789 rest", 200),
            "authorization=[redacted] rest"
        );
        assert_eq!(
            safe_message("task-runner disk_usage my-sk-x", 200),
            "task-runner disk_usage my-sk-x"
        );
    }

    #[test]
    fn safe_message_redacts_vault_tokens() {
        assert_eq!(
            safe_message("token hvs.CAESIJlU0123456789 may not read x", 200),
            "token [redacted] may not read x"
        );
        assert_eq!(
            safe_message("X-Vault-Token=hvb.AAAAAQ0123456789 refused", 200),
            "X-Vault-Token=[redacted] refused"
        );
        assert_eq!(
            safe_message("legacy s.Nk4v2Zq9Xc8Vb1Nd6Lm3Po7W token", 200),
            "legacy [redacted] token"
        );
        assert_eq!(
            safe_message("see hvs.x or s.t.a.r.s", 200),
            "see hvs.x or s.t.a.r.s"
        );
    }
}
