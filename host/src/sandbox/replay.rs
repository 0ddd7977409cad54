//! The answer a killed process kept, given to the component in place of a request the endpoint
//! would refuse: that request presents a refresh token the endpoint already rotated when it gave
//! this answer. The component then does its ordinary work — the stored document plus the
//! answer, under the write lock — and the login goes on.
//!
//! Lifetimes in the answer count from when it arrived, not from now: `expires_in` and
//! `refresh_token_expires_in` are shortened by the time since, so the stored expiry is the one
//! the original refresh would have stored.

use serde_json::Value;

use super::http_client::whole;
use crate::store::exchange::Answer;
use wasmtime_wasi_http::WasiBody;

/// The response the component reads for `answer`, replayed at `now_ms`.
pub(super) fn response(answer: &Answer, now_ms: i64) -> http::Response<WasiBody> {
    let elapsed_ms = now_ms.saturating_sub(answer.received_at_ms).max(0);
    let body = aged(&answer.body, elapsed_ms);
    let mut response = http::Response::new(whole(body.into()));
    *response.status_mut() =
        http::StatusCode::from_u16(answer.status).unwrap_or(http::StatusCode::OK);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Lifetime fields counted in seconds from the answer's arrival.
const LIFETIMES: [&str; 2] = ["expires_in", "refresh_token_expires_in"];

/// `body` with its lifetimes shortened by `elapsed_ms` (whole seconds, rounded up; never below
/// zero); anything else kept as received. A body that is not a JSON object is given as it is.
fn aged(body: &str, elapsed_ms: i64) -> String {
    let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(body) else {
        return body.to_owned();
    };
    let elapsed_s = elapsed_ms.saturating_add(999) / 1000;
    let mut changed = false;
    for name in LIFETIMES {
        let Some(left) = fields.get(name).and_then(Value::as_f64) else {
            continue;
        };
        let shortened = (left - elapsed_s as f64).max(0.0).floor();
        fields.insert(name.to_owned(), Value::from(shortened as i64));
        changed = true;
    }
    if !changed {
        return body.to_owned();
    }
    serde_json::to_string(&Value::Object(fields)).unwrap_or_else(|_| body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_count_from_the_arrival() {
        let body = r#"{"access_token":"a","expires_in":28800,"refresh_token":"r","refresh_token_expires_in":100,"scope":"s"}"#;
        let aged: Value = serde_json::from_str(&aged(body, 3_600_500)).unwrap();
        assert_eq!(aged["expires_in"], 28800 - 3601);
        assert_eq!(aged["refresh_token_expires_in"], 0, "never below zero");
        assert_eq!(aged["access_token"], "a");
        assert_eq!(aged["scope"], "s");
        // Nothing to age: as received, byte for byte.
        let plain = r#"{"access_token":"a",  "scope":"s"}"#;
        assert_eq!(super::aged(plain, 5000), plain);
        assert_eq!(super::aged("not json", 5000), "not json");
    }

    #[test]
    fn a_replayed_answer_keeps_its_status() {
        let answer = Answer::new("d", 0, 200, r#"{"expires_in":10}"#.into());
        let response = response(&answer, 0);
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            "application/json"
        );
    }
}
