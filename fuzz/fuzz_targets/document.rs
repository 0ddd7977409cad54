//! The credential document parser and editor: never panics, and a write-back changes exactly the
//! refreshed fields — every other value, numbers included, is kept to the last digit.

#![no_main]

use claude_code_auth_guest::answer::Grant;
use claude_code_auth_guest::document::Document;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
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
        let mut value: Value = serde_json::from_str(text).unwrap();
        if let Some(section) = value["claudeAiOauth"].as_object_mut() {
            for key in ["accessToken", "refreshToken", "expiresAt"] {
                section.remove(key);
            }
        }
        value
    };
    assert_eq!(strip(text), strip(&written));
});
