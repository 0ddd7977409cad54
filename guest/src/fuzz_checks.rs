//! What the fuzz targets (`fuzz/`) check of one input, here so that the committed seeds and every
//! crash ever found (`fuzz/seeds/<target>/`, `fuzz/crashes/<target>/`) are replayed as unit tests
//! by `cargo test`, not only under cargo-fuzz. Each check panics on a broken property.

use serde_json::Value;

use crate::answer::{Grant, MAX_EXPIRES_IN_S, Rejection, interpret};
use crate::document::Document;
use crate::ports::HttpAnswer;

/// The token endpoint's answer: never panics, takes every 2xx that carries a token (a grant with
/// at least one token; a lifetime only within bounds), and never lets a long token-like run or a
/// control character into an error detail. The input: status (2 bytes, little-endian, mod 600),
/// a flags byte (bit 0: a `Retry-After` line comes first), the body.
pub fn answer(data: &[u8]) {
    let [s0, s1, flags, rest @ ..] = data else {
        return;
    };
    let status = u16::from_le_bytes([*s0, *s1]) % 600;
    let (retry_after, body) = if flags & 1 == 1 {
        let split = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        (
            Some(String::from_utf8_lossy(&rest[..split]).into_owned()),
            &rest[split.min(rest.len())..],
        )
    } else {
        (None, rest)
    };
    let answer = HttpAnswer {
        status,
        retry_after,
        body: body.to_vec(),
    };
    match interpret(&answer) {
        Ok(grant) => {
            assert!((200..300).contains(&status));
            assert!(grant.access_token.is_some() || grant.refresh_token.is_some());
            assert!(grant.access_token.as_ref().is_none_or(|t| !t.is_empty()));
            assert!(
                grant
                    .expires_in_s
                    .is_none_or(|s| (1..=MAX_EXPIRES_IN_S).contains(&s))
            );
            for oddity in &grant.oddities {
                assert!(!oddity.chars().any(char::is_control), "{oddity:?}");
            }
        }
        Err(
            Rejection::GrantRejected { detail }
            | Rejection::ScopeRefused { detail }
            | Rejection::Refused { detail, .. },
        ) => {
            assert!(!detail.chars().any(char::is_control), "{detail:?}");
            assert!(detail.chars().count() <= 2 * 160 + 40, "{detail:?}");
            assert!(
                !detail
                    .split(|c: char| !c.is_ascii_alphanumeric() && !"-_.~+/=".contains(c))
                    .any(|run| run.len() >= 40 && run != "[redacted]"),
                "{detail:?}"
            );
        }
        Err(Rejection::Invalid { problem }) => {
            assert!(!problem.chars().any(char::is_control), "{problem:?}");
        }
        Err(Rejection::Unavailable { status, .. }) => assert!(status == 429 || status >= 500),
    }
}

/// The credential document parser and editor: never panics, and a write-back changes exactly the
/// refreshed fields — every other value, numbers included, is kept to the last digit.
pub fn document(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = Document::parse(text) else {
        return;
    };
    let Ok(view) = doc.oauth() else {
        return;
    };
    let _ = (
        view.expired(0),
        view.needs_refresh(i64::MAX, i64::MAX),
        view.expires_at_ms(),
    );
    let grant = Grant {
        access_token: Some("fuzz-access".into()),
        refresh_token: Some("fuzz-refresh".into()),
        expires_in_s: Some(3600),
        refresh_token_expires_in_s: None,
        scopes: None,
        oddities: Vec::new(),
    };
    let written = doc
        .with_grant(&grant, 1_000)
        .expect("a document with a section can be written");
    let reread = Document::parse(&written).expect("what we write parses");
    let after = reread.oauth().expect("what we write has a valid section");
    assert_eq!(after.access_token.as_deref(), Some("fuzz-access"));
    assert_eq!(after.refresh_token.as_deref(), Some("fuzz-refresh"));
    assert_eq!(after.expires_at_ms(), Some(3_601_000));
    assert_eq!(after.scopes, view.scopes);

    // Everything but the three replaced fields is identical.
    let strip = |text: &str| {
        let mut value: Value = serde_json::from_str(text).expect("parsed above");
        if let Some(section) = value["claudeAiOauth"].as_object_mut() {
            for key in ["accessToken", "refreshToken", "expiresAt"] {
                section.remove(key);
            }
        }
        value
    };
    assert_eq!(strip(text), strip(&written));
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every committed seed and crash of `target`, through `check`; how many there were.
    fn replay(target: &str, check: fn(&[u8])) -> usize {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut seen = 0;
        for kind in ["seeds", "crashes"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if !path.is_file() || path.extension().is_some_and(|e| e == "md") {
                    continue;
                }
                let bytes = std::fs::read(&path).unwrap();
                let ran = std::panic::catch_unwind(|| check(&bytes));
                assert!(ran.is_ok(), "{} fails its fuzz check", path.display());
                seen += 1;
            }
        }
        seen
    }

    #[test]
    fn the_answer_seeds_and_crashes_hold() {
        assert!(replay("answer", super::answer) >= 4);
    }

    #[test]
    fn the_document_seeds_and_crashes_hold() {
        assert!(replay("document", super::document) >= 3);
    }
}
