//! Makes text that came from outside (an error description, a JSON key) safe for a message:
//! token-looking runs are replaced, control characters dropped, length capped.

/// Longest outside text kept in a message, in characters.
const MAX_CHARS: usize = 160;

/// A run of these characters is what a bearer or refresh token looks like.
fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=')
}

/// Whether a run of token characters should be treated as a secret.
fn looks_secret(run: &str) -> bool {
    let has_digit = run.bytes().any(|b| b.is_ascii_digit());
    let has_alpha = run.bytes().any(|b| b.is_ascii_alphabetic());
    run.starts_with("sk-ant") || run.len() >= 40 || (run.len() >= 16 && has_digit && has_alpha)
}

/// Return `text` with secrets replaced by `[redacted]`, control characters turned into spaces,
/// and at most `MAX_CHARS` characters kept.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_CHARS + 16));
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if looks_secret(run) {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if token_char(c) {
            run.push(c);
            continue;
        }
        flush(&mut run, &mut out);
        out.push(if c.is_control() { ' ' } else { c });
    }
    flush(&mut run, &mut out);
    let trimmed = out.trim();
    if trimmed.chars().count() <= MAX_CHARS {
        return trimmed.to_owned();
    }
    let mut cut: String = trimmed.chars().take(MAX_CHARS).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn table() {
        let cases: &[(&str, &str)] = &[
            (
                "Refresh token not found or invalid",
                "Refresh token not found or invalid",
            ),
            (
                "token sk-ant-ort01-abc was revoked",
                "token [redacted] was revoked",
            ),
            (
                "bad token a1b2c3d4e5f6g7h8i9 here",
                "bad token [redacted] here",
            ),
            (
                "see https://docs.anthropic.com/en/api/errors",
                "see https://docs.anthropic.com/en/api/errors",
            ),
            ("line\nbreak\u{0}nul", "line break nul"),
            ("internationalization", "internationalization"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(scrub(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn long_text_is_capped() {
        let long = "word ".repeat(100);
        let got = scrub(&long);
        assert_eq!(got.chars().count(), 161);
        assert!(got.ends_with('…'));
    }

    #[test]
    fn long_unbroken_runs_are_secret() {
        let jwt_like = "a".repeat(45);
        assert_eq!(scrub(&jwt_like), "[redacted]");
    }
}
