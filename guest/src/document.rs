//! The credential document the `claude` CLI writes, read and edited without losing anything the
//! code does not know: the whole JSON tree is kept and only the refreshed fields are replaced.
//!
//! ```json
//! {"claudeAiOauth": {"accessToken": "...", "refreshToken": "...", "expiresAt": 1767225600000,
//!                    "scopes": ["user:inference"], "subscriptionType": "max", ...},
//!  "mcpOAuth": {...}}
//! ```

use std::fmt;

use serde_json::{Map, Number, Value};

use crate::answer::Grant;
use crate::json::{self, type_name};
use crate::splice;

/// Key of the OAuth section.
pub const OAUTH_KEY: &str = "claudeAiOauth";

/// Latest expiry treated as representable: 9999-12-31T23:59:59.999Z in Unix milliseconds.
pub const MAX_EXPIRES_AT_MS: i64 = 253_402_300_799_999;

/// When the access token expires, as far as the document says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// At this Unix millisecond.
    At(i64),
    /// The document records no expiry.
    Missing,
    /// The recorded number is negative, fractional or beyond year 9999.
    Unrepresentable,
}

/// Why a document cannot be used. Messages name fields and positions, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Not JSON at all, or JSON with duplicate keys.
    #[error("the credential document is not valid JSON: {0}")]
    Syntax(String),
    /// Valid JSON whose top level is not an object.
    #[error("the credential document must be a JSON object, found {0}")]
    NotAnObject(&'static str),
    /// A known field holds the wrong JSON type.
    #[error("`{field}` in the credential document must be {expected}, found {found}")]
    WrongType {
        /// Path of the field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it is.
        found: &'static str,
    },
    /// The document has no OAuth section at all (or it is `null`).
    #[error("the credential document has no `claudeAiOauth` section")]
    NoOAuthSection,
}

/// The OAuth section's fields the logic uses.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthView {
    /// The bearer token; `None` when absent, null or empty (the CLI blanks it on logout).
    pub access_token: Option<String>,
    /// The refresh token; `None` when absent, null or empty.
    pub refresh_token: Option<String>,
    /// When the access token expires.
    pub expiry: Expiry,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Subscription type, informational.
    pub subscription_type: Option<String>,
    /// Rate-limit tier, informational.
    pub rate_limit_tier: Option<String>,
    /// The login's hard deadline (`refreshTokenExpiresAt`) in Unix milliseconds, when recorded
    /// and representable. Refreshes do not extend it.
    pub login_expires_at_ms: Option<i64>,
    /// The OAuth client the login belongs to (`clientId`), when it is not the CLI's own.
    pub client_id: Option<String>,
    /// Why the CLI ended the login (`loginEnded`: `time_limit` when it hit its deadline).
    pub login_ended: Option<String>,
}

impl fmt::Debug for OAuthView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthView")
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expiry", &self.expiry)
            .field("scopes", &self.scopes)
            .field("subscription_type", &self.subscription_type)
            .field("rate_limit_tier", &self.rate_limit_tier)
            .field("login_expires_at_ms", &self.login_expires_at_ms)
            .field("client_id", &self.client_id)
            .field("login_ended", &self.login_ended)
            .finish()
    }
}

impl OAuthView {
    /// The expiry in Unix milliseconds, when known and representable.
    pub const fn expires_at_ms(&self) -> Option<i64> {
        match self.expiry {
            Expiry::At(ms) => Some(ms),
            Expiry::Missing | Expiry::Unrepresentable => None,
        }
    }

    /// The document holds a token to use or to refresh with. `false` is the `claude` CLI's
    /// logged-out shape (`accessToken` and `refreshToken` empty), left after `invalid_grant`.
    pub const fn logged_in(&self) -> bool {
        self.access_token.is_some() || self.refresh_token.is_some()
    }

    /// A long-lived token: no expiry recorded and no way to refresh. This is the shape of the
    /// token `claude setup-token` prints (used through `CLAUDE_CODE_OAUTH_TOKEN`): it is used as
    /// it is and never refreshed.
    pub const fn long_lived(&self) -> bool {
        matches!(self.expiry, Expiry::Missing)
            && self.refresh_token.is_none()
            && self.access_token.is_some()
    }

    /// Past its expiry at `now_ms`. An unknown expiry counts as expired, unless the token is
    /// [long-lived](Self::long_lived); so does a missing access token.
    pub const fn expired(&self, now_ms: i64) -> bool {
        if self.access_token.is_none() {
            return true;
        }
        match self.expiry {
            Expiry::At(ms) => now_ms >= ms,
            Expiry::Missing | Expiry::Unrepresentable => !self.long_lived(),
        }
    }

    /// Expires within `skew_ms` of `now_ms`. An unknown expiry always needs a refresh, unless
    /// the token is [long-lived](Self::long_lived); so does a missing access token.
    pub const fn needs_refresh(&self, now_ms: i64, skew_ms: i64) -> bool {
        if self.access_token.is_none() {
            return true;
        }
        match self.expiry {
            Expiry::At(ms) => now_ms.saturating_add(skew_ms) >= ms,
            Expiry::Missing | Expiry::Unrepresentable => !self.long_lived(),
        }
    }
}

/// A parsed credential document, and the text it was parsed from (a write-back edits that
/// text, so what it does not change stays byte for byte).
#[derive(Clone, PartialEq)]
pub struct Document {
    root: Map<String, Value>,
    text: String,
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets (tokens of other tools live here too): show only the keys.
        f.debug_struct("Document")
            .field("keys", &self.root.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Document {
    /// Parse `text`, rejecting duplicate keys (which would make "the" value ambiguous).
    pub fn parse(text: &str) -> Result<Self, DocumentError> {
        match json::parse_strict(text).map_err(DocumentError::Syntax)? {
            Value::Object(root) => Ok(Self {
                root,
                text: text.to_owned(),
            }),
            other => Err(DocumentError::NotAnObject(type_name(&other))),
        }
    }

    /// The OAuth section, type-checked.
    pub fn oauth(&self) -> Result<OAuthView, DocumentError> {
        let section = match self.root.get(OAUTH_KEY) {
            None | Some(Value::Null) => return Err(DocumentError::NoOAuthSection),
            Some(Value::Object(section)) => section,
            Some(other) => return Err(wrong_type(OAUTH_KEY, "an object", type_name(other))),
        };
        // A token the CLI blanked (`""`) is no token.
        let token = |key: &str, field: &'static str| {
            json::text(section, key)
                .map(|t| t.filter(|t| !t.is_empty()).map(str::to_owned))
                .map_err(|found| wrong_type(field, "a string", found))
        };
        let access_token = token("accessToken", "claudeAiOauth.accessToken")?;
        let refresh_token = token("refreshToken", "claudeAiOauth.refreshToken")?;
        let expiry = json::number(section, "expiresAt")
            .map_err(|found| {
                wrong_type(
                    "claudeAiOauth.expiresAt",
                    "a number (Unix milliseconds)",
                    found,
                )
            })?
            .map_or(Expiry::Missing, expiry_of);
        let scopes = json::strings(section, "scopes")
            .map_err(|found| wrong_type("claudeAiOauth.scopes", "a list of strings", found))?
            .unwrap_or_default();
        // Informational fields: tolerated whatever their shape, so a format change in the CLI
        // never blocks a refresh.
        let text = |key: &str| section.get(key).and_then(Value::as_str).map(str::to_owned);
        let login_expires_at_ms = match section.get("refreshTokenExpiresAt") {
            Some(Value::Number(n)) => match expiry_of(n) {
                Expiry::At(ms) => Some(ms),
                Expiry::Missing | Expiry::Unrepresentable => None,
            },
            _ => None,
        };
        Ok(OAuthView {
            access_token,
            refresh_token,
            expiry,
            scopes,
            subscription_type: text("subscriptionType"),
            rate_limit_tier: text("rateLimitTier"),
            login_expires_at_ms,
            client_id: text("clientId").filter(|id| !id.is_empty()),
            login_ended: text("loginEnded"),
        })
    }

    /// The document with `grant` applied at `now_ms`, as JSON text. Only the refreshed fields
    /// values change, in the text as it was read: every other key, in the section and outside
    /// it, stays byte for byte where it was (numbers as written, escapes, spacing). A grant
    /// without a usable access token or lifetime is stored as due now, so the next use
    /// refreshes with the rotated refresh token (the `claude` CLI refreshes it too).
    pub fn with_grant(&self, grant: &Grant, now_ms: i64) -> Result<String, DocumentError> {
        let Some(Value::Object(section)) = self.root.get(OAUTH_KEY) else {
            return Err(DocumentError::NoOAuthSection);
        };
        let text = |value: &str| Value::String(value.to_owned()).to_string();
        let mut set: Vec<(&str, String)> = Vec::new();
        if let Some(access) = &grant.access_token {
            set.push(("accessToken", text(access)));
        }
        if let Some(refresh) = &grant.refresh_token {
            set.push(("refreshToken", text(refresh)));
        }
        let expires_at = match (&grant.access_token, grant.expires_in_s) {
            (Some(_), Some(lifetime)) => now_ms.saturating_add(lifetime.saturating_mul(1000)),
            _ => now_ms,
        };
        set.push(("expiresAt", expires_at.to_string()));
        if let Some(scopes) = &grant.scopes {
            set.push(("scopes", Value::from(scopes.clone()).to_string()));
        }
        // The login's deadline, as the CLI keeps it: only when recorded, and only ever
        // earlier, never later or added.
        let recorded = match section.get("refreshTokenExpiresAt") {
            Some(Value::Number(n)) => match expiry_of(n) {
                Expiry::At(ms) if ms > 0 => Some(ms),
                _ => None,
            },
            _ => None,
        };
        if let (Some(recorded), Some(left_s)) = (recorded, grant.refresh_token_expires_in_s) {
            let answered = now_ms.saturating_add(left_s.saturating_mul(1000));
            if answered < recorded {
                set.push(("refreshTokenExpiresAt", answered.to_string()));
            }
        }
        let unreadable = || DocumentError::Syntax("the document's text could not be edited".into());
        let (top, _) = splice::members(&self.text, 0).ok_or_else(unreadable)?;
        let at = top
            .iter()
            .find(|member| member.key == OAUTH_KEY)
            .map(|member| member.value.clone())
            .ok_or(DocumentError::NoOAuthSection)?;
        let edited = splice::set_members(&self.text[at.clone()], 0, &set).ok_or_else(unreadable)?;
        Ok(format!(
            "{}{edited}{}",
            &self.text[..at.start],
            &self.text[at.end..]
        ))
    }
}

fn expiry_of(n: &Number) -> Expiry {
    if let Some(ms) = n.as_i64() {
        return if (0..=MAX_EXPIRES_AT_MS).contains(&ms) {
            Expiry::At(ms)
        } else {
            Expiry::Unrepresentable
        };
    }
    match n.as_f64() {
        // Integral floats (`1.7e12`) are how some writers spell integers.
        #[allow(clippy::cast_possible_truncation, clippy::float_cmp)]
        Some(f)
            if f.is_finite() && f.trunc() == f && (0.0..=MAX_EXPIRES_AT_MS as f64).contains(&f) =>
        {
            Expiry::At(f as i64)
        }
        _ => Expiry::Unrepresentable,
    }
}

fn wrong_type(field: &'static str, expected: &'static str, found: &'static str) -> DocumentError {
    DocumentError::WrongType {
        field,
        expected,
        found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{"claudeAiOauth":{"accessToken":"at-1","refreshToken":"rt-1","expiresAt":1700000000000,"scopes":["user:inference","user:profile"],"subscriptionType":"max","rateLimitTier":"default_claude_max_20x","refreshTokenExpiresAt":1800000000000},"mcpOAuth":{"srv":{"accessToken":"other"}}}"#;

    fn grant() -> Grant {
        Grant {
            access_token: Some("at-2".into()),
            refresh_token: Some("rt-2".into()),
            expires_in_s: Some(3600),
            scopes: None,
            refresh_token_expires_in_s: None,
            oddities: Vec::new(),
        }
    }

    #[test]
    fn reads_every_known_field() {
        let view = Document::parse(FULL).unwrap().oauth().unwrap();
        assert_eq!(view.access_token.as_deref(), Some("at-1"));
        assert_eq!(view.login_expires_at_ms, Some(1_800_000_000_000));
        assert!(view.logged_in());
        assert_eq!(view.refresh_token.as_deref(), Some("rt-1"));
        assert_eq!(view.expiry, Expiry::At(1_700_000_000_000));
        assert_eq!(view.scopes, ["user:inference", "user:profile"]);
        assert_eq!(view.subscription_type.as_deref(), Some("max"));
        assert_eq!(
            view.rate_limit_tier.as_deref(),
            Some("default_claude_max_20x")
        );
    }

    #[test]
    fn grant_replaces_token_fields_and_keeps_everything_else_in_place() {
        let doc = Document::parse(FULL).unwrap();
        let text = doc.with_grant(&grant(), 1_000).unwrap();
        assert_eq!(
            text,
            r#"{"claudeAiOauth":{"accessToken":"at-2","refreshToken":"rt-2","expiresAt":3601000,"scopes":["user:inference","user:profile"],"subscriptionType":"max","rateLimitTier":"default_claude_max_20x","refreshTokenExpiresAt":1800000000000},"mcpOAuth":{"srv":{"accessToken":"other"}}}"#
        );
    }

    /// Every byte the refresh does not change stays as written: spacing, escapes, key order,
    /// numbers, other logins beside `claudeAiOauth` and unknown fields inside it.
    #[test]
    fn a_write_back_changes_only_the_refreshed_values() {
        let text = "{\n  \"mcpOAuth\" : {\"k\":\"caf\\u00e9\", \"n\": 1.50e3},\n  \"claudeAiOauth\": {\n    \"accessToken\": \"at-1\",\n    \"refreshToken\" : \"rt-1\",\n    \"expiresAt\": 1.7e12,\n    \"x\": [1E2, -0]\n  },\n  \"cloudSessionsOauth\": {\"expiresAt\": 17000000000000.0}\n}\n";
        let written = Document::parse(text)
            .unwrap()
            .with_grant(&grant(), 1_000)
            .unwrap();
        let want = text
            .replace("\"at-1\"", "\"at-2\"")
            .replace("\"rt-1\"", "\"rt-2\"")
            .replace("1.7e12", "3601000");
        assert_eq!(written, want);
    }

    /// The login's deadline as the CLI (2.1.332) keeps it: only when recorded, and only ever
    /// brought forward by `refresh_token_expires_in`, never pushed back or added.
    #[test]
    fn the_login_deadline_is_only_ever_shortened() {
        let deadline = |text: &str, left_s: Option<i64>| {
            let mut g = grant();
            g.refresh_token_expires_in_s = left_s;
            let out = Document::parse(text)
                .unwrap()
                .with_grant(&g, 1_000)
                .unwrap();
            let root: Value = serde_json::from_str(&out).unwrap();
            root["claudeAiOauth"]
                .get("refreshTokenExpiresAt")
                .map(|v| v.to_string())
        };
        let recorded = FULL; // refreshTokenExpiresAt 1800000000000
        let cases = [
            (recorded, None, Some("1800000000000")),
            (recorded, Some(3_600), Some("3601000")),
            // now (1 s) + the answer's time: equal to the recorded deadline, then just before.
            (recorded, Some(1_799_999_999), Some("1800000000000")),
            (recorded, Some(1_799_999_998), Some("1799999999000")),
            (recorded, Some(1_900_000_000), Some("1800000000000")),
        ];
        for (text, left, want) in cases {
            assert_eq!(deadline(text, left).as_deref(), want, "{left:?}");
        }
        let unrecorded =
            r#"{"claudeAiOauth":{"accessToken":"a","refreshToken":"r","expiresAt":1}}"#;
        assert_eq!(deadline(unrecorded, Some(3_600)), None);
        // What is recorded and cannot be read is left as written.
        let odd = r#"{"claudeAiOauth":{"accessToken":"a","refreshToken":"r","refreshTokenExpiresAt":"soon"}}"#;
        assert_eq!(deadline(odd, Some(3_600)).as_deref(), Some("\"soon\""));
    }

    #[test]
    fn grant_without_refresh_token_keeps_the_old_one_and_scope_replaces_scopes() {
        let doc = Document::parse(FULL).unwrap();
        let mut g = grant();
        g.refresh_token = None;
        g.scopes = Some(vec!["user:inference".into()]);
        let view = Document::parse(&doc.with_grant(&g, 0).unwrap())
            .unwrap()
            .oauth()
            .unwrap();
        assert_eq!(view.refresh_token.as_deref(), Some("rt-1"));
        assert_eq!(view.scopes, ["user:inference"]);
    }

    #[test]
    fn expiry_table() {
        let cases: &[(&str, Expiry)] = &[
            ("1700000000000", Expiry::At(1_700_000_000_000)),
            ("0", Expiry::At(0)),
            ("1.7e12", Expiry::At(1_700_000_000_000)),
            ("-1", Expiry::Unrepresentable),
            ("-9223372036854775808", Expiry::Unrepresentable),
            ("18446744073709551615", Expiry::Unrepresentable),
            ("1e300", Expiry::Unrepresentable),
            ("1700000000000.5", Expiry::Unrepresentable),
            ("253402300800000", Expiry::Unrepresentable),
            ("null", Expiry::Missing),
        ];
        for (raw, want) in cases {
            let text = format!(r#"{{"claudeAiOauth":{{"accessToken":"a","expiresAt":{raw}}}}}"#);
            let view = Document::parse(&text).unwrap().oauth().unwrap();
            assert_eq!(view.expiry, *want, "expiresAt {raw}");
        }
    }

    #[test]
    fn refresh_decision_table() {
        let at = |ms| OAuthView {
            access_token: Some("a".into()),
            refresh_token: None,
            expiry: ms,
            scopes: vec![],
            subscription_type: None,
            rate_limit_tier: None,
            login_expires_at_ms: None,
            client_id: None,
            login_ended: None,
        };
        // (expiry, has a refresh token, now, skew) -> (expired, needs_refresh)
        let cases = [
            (Expiry::At(10_000), true, 0, 5_000, false, false),
            (Expiry::At(10_000), true, 5_000, 5_000, false, true),
            (Expiry::At(10_000), true, 9_999, 0, false, false),
            (Expiry::At(10_000), false, 10_000, 0, true, true),
            (Expiry::At(10_000), true, i64::MAX, i64::MAX, true, true),
            (Expiry::Missing, true, 0, 0, true, true),
            (Expiry::Unrepresentable, true, 0, 0, true, true),
            (Expiry::Unrepresentable, false, 0, 0, true, true),
            // A setup token: no expiry, no refresh token, used as it is.
            (Expiry::Missing, false, i64::MAX, 0, false, false),
        ];
        for (expiry, refreshable, now, skew, expired, refresh) in cases {
            let mut view = at(expiry);
            view.refresh_token = refreshable.then(|| "r".to_owned());
            assert_eq!(view.expired(now), expired, "{expiry:?} now {now}");
            assert_eq!(
                view.needs_refresh(now, skew),
                refresh,
                "{expiry:?} now {now} skew {skew}"
            );
        }
    }

    #[test]
    fn bad_documents_are_typed_errors_without_values() {
        let secret = "sk-ant-oat01-SECRETSECRET";
        let cases: Vec<(String, DocumentError)> = vec![
            (
                String::new(),
                DocumentError::Syntax("EOF while parsing a value at line 1 column 0".into()),
            ),
            ("[1,2]".into(), DocumentError::NotAnObject("an array")),
            ("\"text\"".into(), DocumentError::NotAnObject("a string")),
            ("{}".into(), DocumentError::NoOAuthSection),
            (
                r#"{"claudeAiOauth":null}"#.into(),
                DocumentError::NoOAuthSection,
            ),
            (
                r#"{"claudeAiOauth":[]}"#.into(),
                DocumentError::WrongType {
                    field: "claudeAiOauth",
                    expected: "an object",
                    found: "an array",
                },
            ),
            (
                r#"{"claudeAiOauth":{"accessToken":42}}"#.into(),
                DocumentError::WrongType {
                    field: "claudeAiOauth.accessToken",
                    expected: "a string",
                    found: "a number",
                },
            ),
            (
                format!(r#"{{"claudeAiOauth":{{"accessToken":"a","refreshToken":["{secret}"]}}}}"#),
                DocumentError::WrongType {
                    field: "claudeAiOauth.refreshToken",
                    expected: "a string",
                    found: "an array",
                },
            ),
            (
                format!(r#"{{"claudeAiOauth":{{"accessToken":"a","expiresAt":"{secret}"}}}}"#),
                DocumentError::WrongType {
                    field: "claudeAiOauth.expiresAt",
                    expected: "a number (Unix milliseconds)",
                    found: "a string",
                },
            ),
            (
                r#"{"claudeAiOauth":{"accessToken":"a","scopes":"user:inference"}}"#.into(),
                DocumentError::WrongType {
                    field: "claudeAiOauth.scopes",
                    expected: "a list of strings",
                    found: "a string",
                },
            ),
            (
                r#"{"claudeAiOauth":{"accessToken":"a","scopes":[1]}}"#.into(),
                DocumentError::WrongType {
                    field: "claudeAiOauth.scopes",
                    expected: "a list of strings",
                    found: "a number",
                },
            ),
        ];
        for (text, want) in cases {
            let got = Document::parse(&text).and_then(|d| d.oauth());
            assert_eq!(got.as_ref().err(), Some(&want), "document {text:?}");
            assert!(!want.to_string().contains(secret));
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for text in [
            r#"{"claudeAiOauth":{},"claudeAiOauth":{}}"#,
            r#"{"claudeAiOauth":{"accessToken":"a","accessToken":"b"}}"#,
            r#"{"x":[{"k":1,"k":2}]}"#,
        ] {
            let err = Document::parse(text).unwrap_err();
            assert!(
                matches!(&err, DocumentError::Syntax(m) if m.contains("duplicate key")),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn hostile_nesting_fails_cleanly() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = Document::parse(&deep).unwrap_err();
        assert!(
            matches!(&err, DocumentError::Syntax(m) if m.contains("recursion limit")),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_never_echo_content() {
        let secret = "sk-ant-oat01-SECRETSECRET";
        for text in [
            format!(r#"{{"claudeAiOauth":{{"accessToken":"{secret}""#),
            format!("{{\"claudeAiOauth\":{{\"accessToken\":\"{secret}\0\"}}}}"),
            format!("{{\"{secret}\" 1}}"),
            format!(r#"{{"a":"{secret}","a":"{secret}"}}"#),
        ] {
            let err = Document::parse(&text).unwrap_err().to_string();
            assert!(!err.contains("SECRET"), "{err}");
        }
    }

    /// Found by the `document` fuzz target: without correctly rounded float parsing, a long
    /// number in an unknown field came back one unit in the last place off.
    #[test]
    fn unknown_numbers_survive_a_write_back() {
        let text = r#"{"claudeAiOauth":{"accessToken":"a","refreshTokenExpiresAt":193000666666666666666666666666666666666666666666666666660000000,"x":0.1,"y":1e-300}}"#;
        let doc = Document::parse(text).unwrap();
        let written = doc.with_grant(&grant(), 0).unwrap();
        let value = |t: &str, key: &str| {
            serde_json::from_str::<Value>(t).unwrap()["claudeAiOauth"][key].clone()
        };
        for key in ["refreshTokenExpiresAt", "x", "y"] {
            assert_eq!(value(text, key), value(&written, key), "{key}");
        }
        assert!(
            written.contains("193000666666666666666666666666666666666666666666666666660000000"),
            "kept to the last digit: {written}"
        );
    }

    /// The shape the `claude` CLI leaves after `invalid_grant` or a logout, and its neighbours.
    #[test]
    fn logged_out_and_half_empty_sections() {
        // (section, logged in, needs a refresh at any time)
        let cases = [
            (
                r#"{"accessToken":"","refreshToken":"","expiresAt":0}"#,
                false,
                true,
            ),
            (r#"{"accessToken":null}"#, false, true),
            (r#"{}"#, false, true),
            (
                r#"{"accessToken":"","refreshToken":"r","expiresAt":9999999999999}"#,
                true,
                true,
            ),
            (
                r#"{"accessToken":"a","refreshToken":"","expiresAt":0}"#,
                true,
                true,
            ),
            (r#"{"accessToken":"a"}"#, true, false),
        ];
        for (section, logged_in, refresh) in cases {
            let text = format!(r#"{{"claudeAiOauth":{section}}}"#);
            let view = Document::parse(&text).unwrap().oauth().unwrap();
            assert_eq!(view.logged_in(), logged_in, "{section}");
            assert_eq!(view.needs_refresh(1, 0), refresh, "{section}");
        }
    }

    /// A grant that lacks a lifetime or an access token is still written, due at once.
    #[test]
    fn an_incomplete_grant_is_stored_due_for_a_refresh() {
        let doc = Document::parse(FULL).unwrap();
        let mut g = grant();
        g.expires_in_s = None;
        let view = Document::parse(&doc.with_grant(&g, 5_000).unwrap())
            .unwrap()
            .oauth()
            .unwrap();
        assert_eq!(view.access_token.as_deref(), Some("at-2"));
        assert_eq!(view.refresh_token.as_deref(), Some("rt-2"));
        assert_eq!(view.expiry, Expiry::At(5_000));

        let mut g = grant();
        g.access_token = None;
        let view = Document::parse(&doc.with_grant(&g, 5_000).unwrap())
            .unwrap()
            .oauth()
            .unwrap();
        assert_eq!(view.access_token.as_deref(), Some("at-1"));
        assert_eq!(view.refresh_token.as_deref(), Some("rt-2"));
        assert!(view.needs_refresh(5_000, 0));
    }

    /// Unknown content survives as written, numbers too: not `1e3` → `1000.0`, not a 30-digit
    /// integer → a float, not `-0` → `-0.0`. (The one normalisation: an exponent is written
    /// `e+3`, `e-7`, as serde_json scans it — the same number, written the same way.)
    #[test]
    fn numbers_are_written_back_as_they_were_written() {
        let numbers = [
            ("1e3", "1e3"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
            ("-0", "-0"),
            ("1.0", "1.0"),
            ("0.1", "0.1"),
            ("1E-7", "1E-7"),
            ("-12.500", "-12.500"),
            ("1.50e+3", "1.50e+3"),
            ("18446744073709551616", "18446744073709551616"),
        ];
        for (number, written_as) in numbers {
            let text = format!(
                r#"{{"claudeAiOauth":{{"accessToken":"a","refreshToken":"r","expiresAt":1,"x":{number}}},"y":[{number}]}}"#
            );
            let written = Document::parse(&text)
                .unwrap()
                .with_grant(&grant(), 0)
                .unwrap();
            assert!(
                written.contains(&format!(r#""x":{written_as}"#))
                    && written.contains(&format!("[{written_as}]")),
                "{number}: {written}"
            );
        }
    }

    /// Generated numbers of every form (stable Rust has no fuzzer here; the `document` fuzz
    /// target checks the same under libFuzzer): each is kept to the last digit.
    #[test]
    fn generated_numbers_survive_a_write_back() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5_000 {
            let digits = |next: &mut dyn FnMut() -> u64, n: u64| -> String {
                (0..n)
                    .map(|_| char::from(b'0' + (next() % 10) as u8))
                    .collect()
            };
            let mut number = String::new();
            if next() % 3 == 0 {
                number.push('-');
            }
            let int_len = 1 + next() % 40;
            let int = digits(&mut next, int_len);
            number.push_str(int.trim_start_matches('0'));
            if number.is_empty() || number == "-" {
                number.push('0');
            }
            if next() % 2 == 0 {
                number.push('.');
                let frac_len = 1 + next() % 30;
                number.push_str(&digits(&mut next, frac_len));
            }
            if next() % 3 == 0 {
                number.push(if next() % 2 == 0 { 'e' } else { 'E' });
                match next() % 3 {
                    0 => number.push('-'),
                    1 => number.push('+'),
                    _ => {}
                }
                let exp_len = 1 + next() % 3;
                number.push_str(&digits(&mut next, exp_len));
            }
            let text = format!(
                r#"{{"claudeAiOauth":{{"accessToken":"a","refreshToken":"r","expiresAt":1,"n":{number}}}}}"#
            );
            let written = Document::parse(&text)
                .unwrap()
                .with_grant(&grant(), 0)
                .unwrap();
            let mantissa: String = number
                .split(['e', 'E'])
                .next()
                .unwrap_or_default()
                .to_owned();
            let n = written
                .split(r#""n":"#)
                .nth(1)
                .and_then(|rest| rest.split('}').next())
                .unwrap();
            assert!(n.starts_with(&mantissa), "{number} written as {n}");
            assert_eq!(
                n.to_ascii_lowercase().replace("e+", "e"),
                number.to_ascii_lowercase().replace("e+", "e"),
                "{number} written as {n}"
            );
        }
    }

    #[test]
    fn debug_shows_keys_only() {
        let doc = Document::parse(FULL).unwrap();
        let shown = format!("{doc:?} {:?}", doc.oauth().unwrap());
        assert!(
            !shown.contains("at-1") && !shown.contains("rt-1") && !shown.contains("other"),
            "{shown}"
        );
        assert!(shown.contains("mcpOAuth"));
    }
}
