//! Handing a rotated login back to its store. A document kept elsewhere — the temporary file of
//! a writer killed before its rename, a rescue file written when the store refused a write —
//! holds the only live refresh token as long as the store still holds the token it replaced.
//! These helpers tell whether that is so and rebuild the document to write back.

use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// SHA-256 (hex) of the refresh token in `document`, or `None` when it holds none. A digest lets
/// a record say which token a write replaced without storing the token.
pub(crate) fn refresh_token_digest(document: &str) -> Option<String> {
    let value: Value = serde_json::from_str(document).ok()?;
    let token = value
        .get("claudeAiOauth")?
        .get("refreshToken")?
        .as_str()
        .filter(|t| !t.is_empty())?;
    Some(digest_hex(token.as_bytes()))
}

/// SHA-256 of `bytes`, in hex.
pub(crate) fn digest_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What to do with a document kept aside, given what the store holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The store still holds the token the kept document replaced: the kept one is the live
    /// login; write this (the store's document with the kept `claudeAiOauth`) back.
    Adopt(Zeroizing<String>),
    /// The store already holds the kept document's token.
    AlreadyThere,
    /// The store moved on (a new login): the kept document is obsolete.
    Obsolete,
}

/// Judge `kept`, which replaced the refresh token whose digest is `replaced`, against `stored`
/// (`None`: the store holds nothing, or nothing readable).
pub(crate) fn judge(kept: &str, replaced: Option<&str>, stored: Option<&str>) -> Verdict {
    let stored_digest = stored.and_then(refresh_token_digest);
    if stored_digest.is_some() && stored_digest == refresh_token_digest(kept) {
        return Verdict::AlreadyThere;
    }
    if stored_digest.as_deref() != replaced {
        return Verdict::Obsolete;
    }
    Verdict::Adopt(with_oauth_of(stored, kept))
}

/// `current` with its `claudeAiOauth` section replaced by `kept`'s: changes other writers made
/// since (MCP tokens, plugin secrets) survive. `kept` as it is when `current` is unusable.
fn with_oauth_of(current: Option<&str>, kept: &str) -> Zeroizing<String> {
    let merged = (|| {
        let mut current: Value = serde_json::from_str(current?).ok()?;
        let kept: Value = serde_json::from_str(kept).ok()?;
        let section = kept.get("claudeAiOauth")?.clone();
        current
            .as_object_mut()?
            .insert("claudeAiOauth".into(), section);
        serde_json::to_string(&current).ok()
    })();
    Zeroizing::new(merged.unwrap_or_else(|| kept.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(refresh: &str, mcp: &str) -> String {
        format!(
            r#"{{"claudeAiOauth":{{"accessToken":"a-{refresh}","refreshToken":"{refresh}","expiresAt":1}},"mcpOAuth":{{"s":"{mcp}"}}}}"#
        )
    }

    #[test]
    fn verdicts() {
        let spent = refresh_token_digest(&doc("r1", "x"));
        let kept = doc("r2", "x");
        // The store still holds r1 (another writer changed mcpOAuth meanwhile): adopt, merged.
        let Verdict::Adopt(merged) = judge(&kept, spent.as_deref(), Some(&doc("r1", "new"))) else {
            panic!("not adopted");
        };
        assert_eq!(*merged, doc("r2", "new"));
        assert_eq!(
            judge(&kept, spent.as_deref(), Some(&kept)),
            Verdict::AlreadyThere
        );
        assert_eq!(
            judge(&kept, spent.as_deref(), Some(&doc("r9", "x"))),
            Verdict::Obsolete
        );
        // A store that held nothing when the write began, and still holds nothing.
        assert!(matches!(judge(&kept, None, None), Verdict::Adopt(_)));
        assert_eq!(judge(&kept, spent.as_deref(), None), Verdict::Obsolete);
    }

    #[test]
    fn digests_name_no_token() {
        let digest = refresh_token_digest(&doc("sk-ant-ort01-secret", "x")).unwrap();
        assert_eq!(digest.len(), 64);
        assert!(!digest.contains("secret"));
        assert_eq!(
            refresh_token_digest(r#"{"claudeAiOauth":{"refreshToken":""}}"#),
            None
        );
    }
}
