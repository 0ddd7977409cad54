//! Handing a rotated login back to its store. A document kept elsewhere — the temporary file of
//! a writer killed before its rename, a rescue file written when the store refused a write —
//! holds the only live refresh token as long as the store still holds the token it replaced.
//! These helpers tell whether that is so and rebuild the document to write back, and read what a
//! killed writer's temporary file holds (a complete document, or the endpoint's answer).

use std::io::Read;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::exchange::Answer;
use crate::credential::{OAUTH_SECTION, REFRESH_TOKEN};

/// Most of a temporary file read back: a document of the largest size read, its margin, and
/// the largest answer the sandbox takes in.
const MAX_KEPT_BYTES: u64 = 4 << 20;

/// What a killed writer's temporary file holds.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    /// A complete document written from its start.
    pub(crate) document: Option<Zeroizing<String>>,
    /// The endpoint's answer, written past the document's room (at `side_at`).
    pub(crate) answer: Option<Answer>,
}

/// What the temporary file at `path` holds, its answer looked for at `side_at`. Judged by the
/// content alone: a document counts only when complete (one JSON object, followed by nothing
/// but the file's unwritten room), an answer only when its record is whole.
pub(crate) fn kept_in(path: &Path, side_at: Option<u64>) -> Kept {
    let Some(bytes) = read_ours(path) else {
        return Kept::default();
    };
    let room = side_at
        .and_then(|at| usize::try_from(at).ok())
        .unwrap_or(bytes.len())
        .min(bytes.len());
    Kept {
        document: complete_document(&bytes[..room]),
        answer: side_at
            .and_then(|at| bytes.get(usize::try_from(at).ok()?..))
            .and_then(Answer::from_record),
    }
}

/// The file's bytes, read without following a symlink (whose it is was recorded by its maker).
fn read_ours(path: &Path) -> Option<Zeroizing<Vec<u8>>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_KEPT_BYTES).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// `region`'s document, if it starts with a whole JSON object and holds nothing after it but
/// zeros or whitespace (room reserved and never written). A write cut short is no document.
fn complete_document(region: &[u8]) -> Option<Zeroizing<String>> {
    let mut values =
        serde_json::Deserializer::from_slice(region).into_iter::<serde::de::IgnoredAny>();
    values.next()?.ok()?;
    let end = values.byte_offset();
    let blank_after = region[end..]
        .iter()
        .all(|b| *b == 0 || b.is_ascii_whitespace());
    let text = std::str::from_utf8(&region[..end]).ok()?;
    (blank_after && text.trim_start().starts_with('{')).then(|| Zeroizing::new(text.to_owned()))
}

/// SHA-256 (hex) of the refresh token in `document`, or `None` when it holds none. A digest lets
/// a record say which token a write replaced without storing the token.
pub(crate) fn refresh_token_digest(document: &str) -> Option<String> {
    let value: Value = serde_json::from_str(document).ok()?;
    let token = value
        .get(OAUTH_SECTION)?
        .get(REFRESH_TOKEN)?
        .as_str()
        .filter(|t| !t.is_empty())?;
    Some(digest_hex(token.as_bytes()))
}

/// SHA-256 of `bytes`, in hex.
pub(crate) fn digest_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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
        let section = kept.get(OAUTH_SECTION)?.clone();
        current
            .as_object_mut()?
            .insert(OAUTH_SECTION.into(), section);
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

    #[cfg(unix)]
    #[test]
    fn a_temporary_file_is_judged_by_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".ccauth-1-0.tmp");
        let document = doc("r2", "x");
        let answer = Answer::new("d1", 5, 200, r#"{"refresh_token":"r2"}"#.into());
        let record = answer.to_record();
        let side_at = 256u64;
        let kept = |content: &[u8], record: Option<&[u8]>| {
            let mut bytes = content.to_vec();
            if let Some(record) = record {
                bytes.resize(side_at as usize, 0);
                bytes.extend(record);
            }
            std::fs::write(&path, bytes).unwrap();
            let kept = kept_in(&path, Some(side_at));
            (kept.document.map(|d| d.to_string()), kept.answer)
        };
        // The answer only (the document not written yet).
        assert_eq!(kept(b"", Some(&record)), (None, Some(answer.clone())));
        // A complete document followed by the room never written, then the answer.
        assert_eq!(
            kept(document.as_bytes(), Some(&record)),
            (Some(document.clone()), Some(answer.clone()))
        );
        // The document alone, cut to its length.
        assert_eq!(
            kept(document.as_bytes(), None),
            (Some(document.clone()), None)
        );
        // A document cut short is none; the answer still counts.
        assert_eq!(
            kept(&document.as_bytes()[..20], Some(&record)),
            (None, Some(answer.clone()))
        );
        // An answer cut short is none.
        assert_eq!(kept(b"", Some(&record[..record.len() - 3])), (None, None));
        // Not JSON, or not an object: no document.
        assert_eq!(kept(b"[1,2]", None), (None, None));
        // Never through a symlink.
        kept(document.as_bytes(), Some(&record));
        let link = dir.path().join(".ccauth-1-1.tmp");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let through = kept_in(&link, Some(side_at));
        assert!(through.document.is_none() && through.answer.is_none());
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
