//! The token endpoint's answer to a `refresh_token` grant, interpreted.
//!
//! Success: `{"access_token", "refresh_token", "expires_in", "scope", "token_type", "account",
//! "organization"}`. Errors come flat (`{"error": "invalid_grant", "error_description": ...}`) or
//! nested (`{"type": "error", "error": {"type": "invalid_request_error", "message": ...}}`).

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::document::type_name;
use crate::ports::HttpAnswer;
use crate::scrub::scrub;

/// Longest token lifetime accepted: one year, in seconds.
pub const MAX_EXPIRES_IN_S: i64 = 365 * 24 * 60 * 60;

/// A successful refresh.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    /// The new bearer token.
    pub access_token: String,
    /// The rotated refresh token; `None` means the old one stays valid.
    pub refresh_token: Option<String>,
    /// Lifetime of the access token in seconds, 1 ..= [`MAX_EXPIRES_IN_S`].
    pub expires_in_s: i64,
    /// Granted scopes when the answer lists them.
    pub scopes: Option<Vec<String>>,
    /// The token type, when given (always `Bearer` once accepted).
    pub token_type: Option<String>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_in_s", &self.expires_in_s)
            .field("scopes", &self.scopes)
            .field("token_type", &self.token_type)
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
    let invalid = |problem: String| Rejection::Invalid { problem };
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        invalid(if body.is_empty() {
            "the answer has an empty body".to_owned()
        } else {
            "the answer is not JSON".to_owned()
        })
    })?;
    let Value::Object(fields) = value else {
        return Err(invalid(format!(
            "the answer must be a JSON object, found {}",
            type_name(&value)
        )));
    };
    if fields.contains_key("error") {
        // A 2xx carrying an error body is still an error.
        return Err(error_fields(200, &fields));
    }
    let access_token = match fields.get("access_token") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(invalid("the answer has no `access_token`".into()));
        }
        Some(other) => {
            return Err(invalid(format!(
                "`access_token` must be a string, found {}",
                type_name(other)
            )));
        }
    };
    let refresh_token = match fields.get("refresh_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(invalid(format!(
                "`refresh_token` must be a string, found {}",
                type_name(other)
            )));
        }
    };
    let expires_in_s = match fields.get("expires_in") {
        None | Some(Value::Null) => return Err(invalid("the answer has no `expires_in`".into())),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(s) if (1..=MAX_EXPIRES_IN_S).contains(&s) => s,
            _ => {
                return Err(invalid(format!(
                    "`expires_in` must be a whole number of seconds from 1 to {MAX_EXPIRES_IN_S}, found {n}"
                )));
            }
        },
        Some(other) => {
            return Err(invalid(format!(
                "`expires_in` must be a number, found {}",
                type_name(other)
            )));
        }
    };
    let token_type = match fields.get("token_type") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => Some(t.clone()),
        Some(Value::String(t)) => {
            return Err(invalid(format!(
                "`token_type` must be Bearer, found `{}`",
                scrub(t)
            )));
        }
        Some(other) => {
            return Err(invalid(format!(
                "`token_type` must be a string, found {}",
                type_name(other)
            )));
        }
    };
    // Informational: a malformed `scope` keeps the stored scopes rather than failing a refresh.
    let scopes = fields
        .get("scope")
        .and_then(Value::as_str)
        .map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|s| !s.is_empty());
    Ok(Grant {
        access_token,
        refresh_token,
        expires_in_s,
        scopes,
        token_type,
    })
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
    if code.as_deref() == Some("invalid_grant") {
        Rejection::GrantRejected { detail }
    } else {
        Rejection::Refused { status, detail }
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
                access_token: "at".into(),
                refresh_token: Some("rt".into()),
                expires_in_s: 28800,
                scopes: Some(vec!["user:inference".into(), "user:profile".into()]),
                token_type: Some("Bearer".into()),
            }
        );
    }

    #[test]
    fn minimal_success_keeps_old_refresh_token_and_scopes() {
        let got = interpret(&answer(200, r#"{"access_token":"at","expires_in":60}"#)).unwrap();
        assert_eq!(got.refresh_token, None);
        assert_eq!(got.scopes, None);
    }

    #[test]
    fn invalid_success_bodies() {
        let cases: &[(&str, &str)] = &[
            ("", "empty body"),
            ("<html>Welcome</html>", "not JSON"),
            ("[]", "must be a JSON object, found an array"),
            (r#"{"expires_in":60}"#, "no `access_token`"),
            (
                r#"{"access_token":"","expires_in":60}"#,
                "no `access_token`",
            ),
            (
                r#"{"access_token":7,"expires_in":60}"#,
                "`access_token` must be a string",
            ),
            (r#"{"access_token":"at"}"#, "no `expires_in`"),
            (r#"{"access_token":"at","expires_in":0}"#, "found 0"),
            (r#"{"access_token":"at","expires_in":-5}"#, "found -5"),
            (
                r#"{"access_token":"at","expires_in":31536001}"#,
                "found 31536001",
            ),
            (r#"{"access_token":"at","expires_in":1.5}"#, "found 1.5"),
            (
                r#"{"access_token":"at","expires_in":"3600"}"#,
                "must be a number, found a string",
            ),
            (
                r#"{"access_token":"at","expires_in":60,"refresh_token":{}}"#,
                "`refresh_token` must be a string",
            ),
            (
                r#"{"access_token":"at","expires_in":60,"token_type":"mac"}"#,
                "must be Bearer",
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
