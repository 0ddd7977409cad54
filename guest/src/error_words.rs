//! Words for a transport failure. `wasi:http` and `wasi:io` report failures as variants
//! (`error-code`, `stream-error`), which their bindings print in Rust's debug form
//! (`ErrorCode::ConnectionRefused`, `StreamError::Closed`); a message says "connection refused",
//! "connection closed".

/// Variant prefixes, and the word put before the case's own words.
const MARKS: [(&str, &str); 2] = [("ErrorCode::", ""), ("StreamError::", "connection ")];

/// `text` with every `ErrorCode::CaseName` or `StreamError::CaseName` (and its payload, which
/// names nothing a user needs) turned into lower-case words. Other text is kept as it is.
pub fn describe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((at, mark, lead)) = MARKS
        .iter()
        .filter_map(|(mark, lead)| rest.find(mark).map(|at| (at, *mark, *lead)))
        .min_by_key(|(at, _, _)| *at)
    {
        out.push_str(&rest[..at]);
        let after = &rest[at + mark.len()..];
        let name_len = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        let (name, mut tail) = after.split_at(name_len);
        if name.is_empty() {
            out.push_str(mark);
            rest = after;
            continue;
        }
        out.push_str(lead);
        if name == "LastOperationFailed" {
            out.push_str("failed");
        } else {
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push(' ');
                }
                out.push(c.to_ascii_lowercase());
            }
        }
        tail = skip_payload(tail);
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// `text` past a leading parenthesised payload, brackets balanced; `text` itself if none.
fn skip_payload(text: &str) -> &str {
    if !text.starts_with('(') {
        return text;
    }
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return &text[i + 1..];
                }
            }
            _ => {}
        }
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn error_codes_become_words() {
        for (raw, words) in [
            ("ErrorCode::ConnectionRefused", "connection refused"),
            (
                "sending failed: ErrorCode::ConnectionReadTimeout",
                "sending failed: connection read timeout",
            ),
            (
                "ErrorCode::DnsError(DnsErrorPayload { rcode: Some(\"x\"), info-code: None }) after",
                "dns error after",
            ),
            ("ErrorCode::HttpProtocolError", "http protocol error"),
            (
                "ErrorCode::InternalError(Some(\"(unbalanced\"",
                "internal error",
            ),
            ("ErrorCode::", "ErrorCode::"),
            ("StreamError::Closed", "connection closed"),
            (
                "StreamError::LastOperationFailed(Error { .. }) then ErrorCode::ConnectionRefused",
                "connection failed then connection refused",
            ),
            ("no code here", "no code here"),
        ] {
            assert_eq!(describe(raw), words, "{raw}");
        }
    }
}
