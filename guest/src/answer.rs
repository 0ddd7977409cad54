//! The token endpoint's answer to a `refresh_token` grant, interpreted.
//!
//! Success: `{"access_token", "refresh_token", "expires_in", "scope", "token_type", "account",
//! "organization"}`. Errors come flat (`{"error": "invalid_grant", "error_description": ...}`) or
//! nested (`{"type": "error", "error": {"type": "invalid_request_error", "message": ...}}`).

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::json::{self, type_name};
use crate::ports::HttpAnswer;
use crate::scrub::scrub;

/// Longest token lifetime accepted: one year, in seconds.
pub const MAX_EXPIRES_IN_S: i64 = 365 * 24 * 60 * 60;

/// A 2xx answer that carries at least one token. Every token it carries must be kept: once the
/// endpoint answered 2xx, the refresh token that was sent is spent.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    /// The new bearer token; `None` when the answer has no usable `access_token`.
    pub access_token: Option<String>,
    /// The rotated refresh token; `None` means the old one stays valid.
    pub refresh_token: Option<String>,
    /// Lifetime of the access token in seconds, 1 ..= [`MAX_EXPIRES_IN_S`]; `None` when the
    /// answer gives none or an unusable one (the token is then stored as due for a refresh).
    pub expires_in_s: Option<i64>,
    /// Granted scopes when the answer lists them.
    pub scopes: Option<Vec<String>>,
    /// How long the login has left, in seconds (`refresh_token_expires_in`), when the answer
    /// says: a recorded deadline is only ever brought forward by it.
    pub refresh_token_expires_in_s: Option<i64>,
    /// What was odd about the answer, naming fields, never values (empty for a normal answer).
    pub oddities: Vec<String>,
}

impl Grant {
    /// The grant holds an access token with a known lifetime: usable as it is.
    pub const fn complete(&self) -> bool {
        self.access_token.is_some() && self.expires_in_s.is_some()
    }
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_in_s", &self.expires_in_s)
            .field("scopes", &self.scopes)
            .field("oddities", &self.oddities)
            .finish()
    }
}

/// Why an answer is not a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// `invalid_grant`: the refresh token is spent, revoked or unknown.
    GrantRejected {
        /// Scrubbed detail from the endpoint.
        detail: String,
    },
    /// `invalid_scope`: the scopes asked for are not the login's (the CLI asks again with the
    /// stored ones).
    ScopeRefused {
        /// Scrubbed detail from the endpoint.
        detail: String,
    },
    /// A 4xx other than 429, or an unexpected status: retrying will not help.
    Refused {
        /// HTTP status.
        status: u16,
        /// Scrubbed detail.
        detail: String,
    },
    /// 5xx or 429: retrying later may help.
    Unavailable {
        /// HTTP status.
        status: u16,
        /// What the endpoint asked for in `Retry-After` (seconds form only).
        retry_after: Option<Duration>,
    },
    /// A 2xx whose body is not a usable grant.
    Invalid {
        /// What is wrong, naming fields, never values.
        problem: String,
    },
}

/// Interpret one answer.
pub fn interpret(answer: &HttpAnswer) -> Result<Grant, Rejection> {
    match answer.status {
        200..=299 => grant_from(&answer.body),
        429 | 500..=599 => Err(Rejection::Unavailable {
            status: answer.status,
            retry_after: answer.retry_after.as_deref().and_then(retry_after),
        }),
        400..=499 => Err(error_from(answer.status, &answer.body)),
        status => Err(Rejection::Refused {
            status,
            detail: format!("unexpected HTTP status {status}"),
        }),
    }
}

fn grant_from(body: &[u8]) -> Result<Grant, Rejection> {
    let fields = object(body)?;
    if fields.contains_key("error") {
        // A 2xx carrying an error body is still an error.
        return Err(error_fields(200, &fields));
    }
    // Lenient from here on, as the `claude` CLI is: the endpoint answered 2xx, so the refresh
    // token sent is spent, and whatever token came back is the login's only future.
    let mut oddities = Vec::new();
    let access_token = token(&fields, "access_token", &mut oddities);
    let refresh_token = token(&fields, "refresh_token", &mut oddities);
    if access_token.is_none() && refresh_token.is_none() {
        return Err(Rejection::Invalid {
            problem: match oddities.first() {
                Some(first) => format!("the answer carries no token ({first})"),
                None => "the answer has no `access_token`".to_owned(),
            },
        });
    }
    let expires_in_s = expires_in(&fields, &mut oddities);
    note_token_type(&fields, &mut oddities);
    Ok(Grant {
        access_token,
        refresh_token,
        expires_in_s,
        scopes: scopes(&fields),
        refresh_token_expires_in_s: fields
            .get("refresh_token_expires_in")
            .and_then(Value::as_i64)
            .filter(|s| *s >= 0),
        oddities,
    })
}

/// The answer's JSON object, parsed as the CLI parses it: the last duplicate key wins (see
/// `json`).
fn object(body: &[u8]) -> Result<Map<String, Value>, Rejection> {
    let invalid = |problem: String| Rejection::Invalid { problem };
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        invalid(if body.is_empty() {
            "the answer has an empty body".to_owned()
        } else {
            "the answer is not JSON".to_owned()
        })
    })?;
    match value {
        Value::Object(fields) => Ok(fields),
        other => Err(invalid(format!(
            "the answer must be a JSON object, found {}",
            type_name(&other)
        ))),
    }
}

/// `expires_in` when it is a whole number of seconds in range; anything else is noted as odd.
fn expires_in(fields: &Map<String, Value>, oddities: &mut Vec<String>) -> Option<i64> {
    match json::number(fields, "expires_in") {
        Ok(None) => {
            oddities.push("no `expires_in`".into());
            None
        }
        Ok(Some(n)) => match n.as_i64() {
            Some(s) if (1..=MAX_EXPIRES_IN_S).contains(&s) => Some(s),
            _ => {
                oddities.push(format!(
                    "`expires_in` must be a whole number of seconds from 1 to {MAX_EXPIRES_IN_S}, found {n}"
                ));
                None
            }
        },
        Err(found) => {
            oddities.push(format!("`expires_in` must be a number, found {found}"));
            None
        }
    }
}

/// A `token_type` other than bearer is noted as odd (the token is kept all the same).
fn note_token_type(fields: &Map<String, Value>, oddities: &mut Vec<String>) {
    match json::text(fields, "token_type") {
        Ok(None) => {}
        Ok(Some(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Ok(Some(t)) => oddities.push(format!("`token_type` is `{}`", scrub(t))),
        Err(found) => oddities.push(format!("`token_type` must be a string, found {found}")),
    }
}

/// The granted scopes. Informational: a malformed `scope` keeps the stored scopes rather than
/// failing a refresh.
fn scopes(fields: &Map<String, Value>) -> Option<Vec<String>> {
    fields
        .get("scope")
        .and_then(Value::as_str)
        .map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
}

/// The non-empty string at `key`; anything else is noted as odd (an absent refresh token is
/// normal: the old one stays valid).
fn token(fields: &Map<String, Value>, key: &str, oddities: &mut Vec<String>) -> Option<String> {
    match json::text(fields, key) {
        Ok(Some(s)) if !s.is_empty() => return Some(s.to_owned()),
        Ok(None) if key == "refresh_token" => {}
        Ok(None) => oddities.push(format!("no `{key}`")),
        Ok(Some(_)) => oddities.push(format!("`{key}` is empty")),
        Err(found) => oddities.push(format!("`{key}` must be a string, found {found}")),
    }
    None
}

fn error_from(status: u16, body: &[u8]) -> Rejection {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => error_fields(status, &fields),
        _ => Rejection::Refused {
            status,
            detail: format!("HTTP {status}"),
        },
    }
}

/// Read the flat or nested error shape.
fn error_fields(status: u16, fields: &Map<String, Value>) -> Rejection {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(scrub);
    let (code, description) = match fields.get("error") {
        Some(Value::Object(nested)) => (
            text(nested.get("type")),
            text(nested.get("message")).or_else(|| text(nested.get("error_description"))),
        ),
        flat => (text(flat), text(fields.get("error_description"))),
    };
    let detail = match (&code, &description) {
        (Some(c), Some(d)) => format!("HTTP {status} {c}: {d}"),
        (Some(c), None) => format!("HTTP {status} {c}"),
        (None, Some(d)) => format!("HTTP {status}: {d}"),
        (None, None) => format!("HTTP {status}"),
    };
    match code.as_deref() {
        Some("invalid_grant") => Rejection::GrantRejected { detail },
        Some("invalid_scope") if status == 400 => Rejection::ScopeRefused { detail },
        _ => Rejection::Refused { status, detail },
    }
}

/// `Retry-After` in its seconds form; the HTTP-date form is ignored (backoff applies instead).
fn retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> HttpAnswer {
        HttpAnswer {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn full_success_answer() {
        let got = interpret(&answer(
            200,
            r#"{"access_token":"at","refresh_token":"rt","expires_in":28800,"scope":"user:inference user:profile","token_type":"Bearer","account":{"uuid":"u"},"organization":{"uuid":"o"}}"#,
        ))
        .unwrap();
        assert_eq!(
            got,
            Grant {
                access_token: Some("at".into()),
                refresh_token: Some("rt".into()),
                expires_in_s: Some(28800),
                scopes: Some(vec!["user:inference".into(), "user:profile".into()]),
                refresh_token_expires_in_s: None,
                oddities: Vec::new(),
            }
        );
        assert!(got.complete());
    }

    /// A 2xx has spent the refresh token: an answer with a duplicate key is read as the `claude`
    /// CLI reads it (`JSON.parse`, the last one wins), not refused as a document would be.
    #[test]
    fn a_duplicate_key_in_a_grant_is_read_as_the_cli_reads_it() {
        let got = interpret(&answer(
            200,
            r#"{"access_token":"first","refresh_token":"rt","expires_in":60,"access_token":"last"}"#,
        ))
        .unwrap();
        assert_eq!(got.access_token.as_deref(), Some("last"));
        assert_eq!(got.refresh_token.as_deref(), Some("rt"));
    }

    #[test]
    fn minimal_success_keeps_old_refresh_token_and_scopes() {
        let got = interpret(&answer(200, r#"{"access_token":"at","expires_in":60}"#)).unwrap();
        assert_eq!(got.refresh_token, None);
        assert_eq!(got.scopes, None);
        assert!(got.complete() && got.oddities.is_empty());
    }

    /// A 2xx answer spent the refresh token: any token in it is kept, however odd the rest.
    #[test]
    fn odd_success_bodies_still_carry_their_tokens() {
        // (body, access token kept, refresh token kept, lifetime, oddity named)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<i64>,
            &'a str,
        );
        let cases: &[Case] = &[
            (
                r#"{"access_token":"at","refresh_token":"rt"}"#,
                Some("at"),
                Some("rt"),
                None,
                "no `expires_in`",
            ),
            (
                r#"{"access_token":"at","refresh_token":"rt","expires_in":0}"#,
                Some("at"),
                Some("rt"),
                None,
                "found 0",
            ),
            (
                r#"{"access_token":"at","expires_in":-5}"#,
                Some("at"),
                None,
                None,
                "found -5",
            ),
            (
                r#"{"access_token":"at","expires_in":31536001}"#,
                Some("at"),
                None,
                None,
                "found 31536001",
            ),
            (
                r#"{"access_token":"at","expires_in":1.5}"#,
                Some("at"),
                None,
                None,
                "found 1.5",
            ),
            (
                r#"{"access_token":"at","expires_in":"3600"}"#,
                Some("at"),
                None,
                None,
                "must be a number, found a string",
            ),
            (
                r#"{"access_token":"at","expires_in":60,"token_type":"mac"}"#,
                Some("at"),
                None,
                Some(60),
                "`token_type` is `mac`",
            ),
            (
                r#"{"access_token":"at","expires_in":60,"refresh_token":{}}"#,
                Some("at"),
                None,
                Some(60),
                "`refresh_token` must be a string",
            ),
            (
                r#"{"refresh_token":"rt","expires_in":60}"#,
                None,
                Some("rt"),
                Some(60),
                "no `access_token`",
            ),
            (
                r#"{"access_token":"","refresh_token":"rt","expires_in":60}"#,
                None,
                Some("rt"),
                Some(60),
                "`access_token` is empty",
            ),
        ];
        for (body, access, refresh, lifetime, oddity) in cases {
            let got = interpret(&answer(200, body)).unwrap_or_else(|e| panic!("{body}: {e:?}"));
            assert_eq!(got.access_token.as_deref(), *access, "{body}");
            assert_eq!(got.refresh_token.as_deref(), *refresh, "{body}");
            assert_eq!(got.expires_in_s, *lifetime, "{body}");
            assert_eq!(
                got.complete(),
                access.is_some() && lifetime.is_some(),
                "{body}"
            );
            assert!(
                got.oddities.iter().any(|o| o.contains(oddity)),
                "{body}: {:?}",
                got.oddities
            );
        }
    }

    #[test]
    fn success_bodies_without_any_token_are_invalid() {
        let cases: &[(&str, &str)] = &[
            ("", "empty body"),
            ("<html>Welcome</html>", "not JSON"),
            ("[]", "must be a JSON object, found an array"),
            (r#"{"expires_in":60}"#, "no `access_token`"),
            (
                r#"{"access_token":"","expires_in":60}"#,
                "`access_token` is empty",
            ),
            (
                r#"{"access_token":7,"expires_in":60}"#,
                "`access_token` must be a string",
            ),
        ];
        for (body, want) in cases {
            match interpret(&answer(200, body)) {
                Err(Rejection::Invalid { problem }) => {
                    assert!(problem.contains(want), "{body}: {problem}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn error_shapes() {
        let cases: &[(u16, &str, Rejection)] = &[
            (
                400,
                r#"{"error":"invalid_grant","error_description":"Refresh token not found or invalid"}"#,
                Rejection::GrantRejected {
                    detail: "HTTP 400 invalid_grant: Refresh token not found or invalid".into(),
                },
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_grant","message":"revoked"}}"#,
                Rejection::GrantRejected {
                    detail: "HTTP 400 invalid_grant: revoked".into(),
                },
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"Invalid request format"}}"#,
                Rejection::Refused {
                    status: 400,
                    detail: "HTTP 400 invalid_request_error: Invalid request format".into(),
                },
            ),
            (
                401,
                r#"{"error":"invalid_client"}"#,
                Rejection::Refused {
                    status: 401,
                    detail: "HTTP 401 invalid_client".into(),
                },
            ),
            (
                404,
                "Not Found",
                Rejection::Refused {
                    status: 404,
                    detail: "HTTP 404".into(),
                },
            ),
            (
                200,
                r#"{"error":"invalid_grant"}"#,
                Rejection::GrantRejected {
                    detail: "HTTP 200 invalid_grant".into(),
                },
            ),
            (
                500,
                "oops",
                Rejection::Unavailable {
                    status: 500,
                    retry_after: None,
                },
            ),
            (
                503,
                "",
                Rejection::Unavailable {
                    status: 503,
                    retry_after: None,
                },
            ),
            (
                302,
                "",
                Rejection::Refused {
                    status: 302,
                    detail: "unexpected HTTP status 302".into(),
                },
            ),
        ];
        for (status, body, want) in cases {
            assert_eq!(
                &interpret(&answer(*status, body)).unwrap_err(),
                want,
                "{status} {body}"
            );
        }
    }

    #[test]
    fn retry_after_seconds_are_read() {
        let mut a = answer(429, "");
        a.retry_after = Some(" 7 ".into());
        assert_eq!(
            interpret(&a).unwrap_err(),
            Rejection::Unavailable {
                status: 429,
                retry_after: Some(Duration::from_secs(7))
            }
        );
        a.retry_after = Some("Wed, 21 Oct 2015 07:28:00 GMT".into());
        assert_eq!(
            interpret(&a).unwrap_err(),
            Rejection::Unavailable {
                status: 429,
                retry_after: None
            }
        );
    }

    #[test]
    fn error_descriptions_are_scrubbed() {
        let body = r#"{"error":"invalid_grant","error_description":"token sk-ant-ort01-abcdef123 revoked"}"#;
        let Rejection::GrantRejected { detail } = interpret(&answer(400, body)).unwrap_err() else {
            panic!("wrong rejection");
        };
        assert!(!detail.contains("sk-ant"), "{detail}");
        assert!(detail.contains("[redacted]"));
    }

    #[test]
    fn grant_debug_is_redacted() {
        let g = interpret(&answer(
            200,
            r#"{"access_token":"AT-SECRET","refresh_token":"RT-SECRET","expires_in":60}"#,
        ))
        .unwrap();
        let shown = format!("{g:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
