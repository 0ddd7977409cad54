//! Text and JSON the CLI prints. Nothing here ever receives a token.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use entelix_auth_claude_code::defaults::LOGIN_WARNING;
use entelix_auth_claude_code::{RefreshOutcome, RefreshReport, TokenStatus};

/// `text` for a terminal: control characters (an escape sequence a hostile file holds, say)
/// are shown as `�`, never sent.
pub(super) fn shown(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// `status` as text, at `now`.
pub(super) fn status_text(
    source: &str,
    location: &str,
    status: &TokenStatus,
    now: DateTime<Utc>,
) -> String {
    let location = shown(location);
    if !status.logged_in {
        return [
            format!("source:        {source}: {location}"),
            "logged in:     no (the credential holds no token); run `claude login`".to_owned(),
        ]
        .join("\n");
    }
    let mut lines = vec![
        format!("source:        {source}: {location}"),
        format!("access token:  {}", expiry_phrase(status, now)),
        format!(
            "refresh token: {}",
            if status.has_refresh_token {
                "present"
            } else {
                "absent"
            }
        ),
    ];
    if let Some(subscription) = &status.subscription_type {
        lines.push(format!("subscription:  {}", shown(subscription)));
    }
    if let Some(tier) = &status.rate_limit_tier {
        lines.push(format!("rate limits:   {}", shown(tier)));
    }
    if !status.scopes.is_empty() {
        lines.push(format!(
            "scopes:        {}",
            shown(&status.scopes.join(" "))
        ));
    }
    if let Some(at) = status.login_expires_at() {
        lines.push(format!("login ends:    {}", login_phrase(at, now)));
    }
    lines.join("\n")
}

/// "2030-03-20 17:46:40 UTC (in 2d 23h; run `claude login` before then)", "… (ended 1d 2h ago)".
fn login_phrase(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let when = at.format("%Y-%m-%d %H:%M:%S UTC");
    if at <= now {
        return format!("{when} (ended {} ago; run `claude login`)", span(now - at));
    }
    let days = (at - now).num_days();
    let left = format!(
        "in {}, {days} day{} left",
        span(at - now),
        if days == 1 { "" } else { "s" }
    );
    let warning = chrono::TimeDelta::from_std(LOGIN_WARNING).unwrap_or_default();
    if at - now < warning {
        format!("{when} ({left}; run `claude login` before then)")
    } else {
        format!("{when} ({left})")
    }
}

/// The one-line warning `token`, `header` and `refresh` print when the login ends soon.
pub(super) fn login_warning(status: &TokenStatus, now: DateTime<Utc>) -> Option<String> {
    if !status.login_expires_soon(now) {
        return None;
    }
    let at = status.login_expires_at()?;
    Some(format!(
        "this Claude login ends {}; refreshing cannot extend it",
        login_phrase(at, now)
    ))
}

/// `status --json`.
pub(super) fn status_json(source: &str, location: &str, status: &TokenStatus) -> String {
    json!({
        "source": source,
        "location": location,
        "loggedIn": status.logged_in,
        "expiresAt": status.expires_at_ms,
        "expiresAtIso": status.expires_at().map(|at| at.to_rfc3339()),
        "expired": status.expired,
        "needsRefresh": status.needs_refresh,
        "hasRefreshToken": status.has_refresh_token,
        "subscriptionType": status.subscription_type,
        "rateLimitTier": status.rate_limit_tier,
        "scopes": status.scopes,
        "loginExpiresAt": status.login_expires_at_ms,
        "loginExpiresAtIso": status.login_expires_at().map(|at| at.to_rfc3339()),
    })
    .to_string()
}

/// `refresh` as one line.
pub(super) fn refresh_text(report: &RefreshReport) -> String {
    let until = until(&report.status);
    match report.outcome {
        RefreshOutcome::Refreshed => format!("refreshed: the new access token is valid {until}"),
        RefreshOutcome::StillFresh => {
            format!("still fresh: valid {until}; nothing sent (use --force to refresh anyway)")
        }
        RefreshOutcome::Adopted => {
            format!("another process had just refreshed; its access token is valid {until}")
        }
        RefreshOutcome::Deferred => format!(
            "the refresh failed for now, but the stored access token is still valid {until}"
        ),
        _ => format!("done: the access token is valid {until}"),
    }
}

fn until(status: &TokenStatus) -> String {
    status.expires_at().map_or_else(
        || "for an unknown time".to_owned(),
        |at| format!("until {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
    )
}

/// "valid until … (in 7h 59m)", "expired 3m ago; …".
fn expiry_phrase(status: &TokenStatus, now: DateTime<Utc>) -> String {
    let Some(at) = status.expires_at() else {
        return if status.needs_refresh {
            "expiry unknown; the next use refreshes it".to_owned()
        } else {
            "no expiry recorded: a long-lived token, used as it is".to_owned()
        };
    };
    let when = at.format("%Y-%m-%d %H:%M:%S UTC");
    let next = if status.has_refresh_token {
        "the next use refreshes it"
    } else {
        "run `claude login`"
    };
    if status.expired {
        format!("expired {when} ({} ago); {next}", span(now - at))
    } else if status.needs_refresh {
        format!(
            "expires {when} (in {}), inside the refresh window; {next}",
            span(at - now)
        )
    } else {
        format!("valid until {when} (in {})", span(at - now))
    }
}

/// A duration as `2d 3h`, `7h 59m`, `4m`, `12s`.
fn span(delta: chrono::TimeDelta) -> String {
    let secs = delta.num_seconds().max(0);
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// A credential document for display: every string under a key that names a token or secret
/// is replaced by a short fingerprint, so a change is visible and the value is not.
pub(super) fn redacted_document(text: &str) -> String {
    let Ok(mut value) = serde_json::from_str::<Value>(text) else {
        return "(not JSON)".to_owned();
    };
    redact(&mut value, false);
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

fn redact(value: &mut Value, secret_key: bool) {
    match value {
        Value::String(s) if secret_key => *s = fingerprint(s),
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                let lower = key.to_ascii_lowercase();
                redact(child, lower.contains("token") || lower.contains("secret"));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| redact(item, secret_key)),
        _ => {}
    }
}

/// `[redacted sha256:1a2b3c4d]`.
pub(super) fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    format!("[redacted sha256:{}]", hex::encode(&digest[..4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(expires_at_ms: Option<i64>, expired: bool, needs_refresh: bool) -> TokenStatus {
        let mut status = TokenStatus::default();
        status.logged_in = true;
        status.expires_at_ms = expires_at_ms;
        status.expired = expired;
        status.needs_refresh = needs_refresh;
        status.has_refresh_token = true;
        status.subscription_type = Some("max".into());
        status.scopes = vec!["user:inference".into()];
        status
    }

    #[test]
    fn expiry_phrases() {
        let now = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        let ms = 1_900_000_000_000_i64;
        let cases = [
            (
                status(Some(ms + 8 * 3_600_000 - 60_000), false, false),
                "valid until 2030-03-18 01:45:40 UTC (in 7h 59m)",
            ),
            (
                status(Some(ms + 120_000), false, true),
                "(in 2m), inside the refresh window; the next use refreshes it",
            ),
            (
                status(Some(ms - 180_000), true, true),
                "(3m ago); the next use refreshes it",
            ),
            (
                status(None, true, true),
                "expiry unknown; the next use refreshes it",
            ),
            (
                status(Some(ms + 3 * 86_400_000), false, false),
                "(in 3d 0h)",
            ),
        ];
        for (status, want) in cases {
            let got = expiry_phrase(&status, now);
            assert!(got.contains(want), "{got}");
        }
    }

    #[test]
    fn the_login_deadline_is_shown_and_warned_about_in_its_last_three_days() {
        let now = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        let day = 86_400_000;
        let mut s = status(Some(1), false, false);
        assert!(login_warning(&s, now).is_none(), "no deadline recorded");
        s.login_expires_at_ms = Some(1_900_000_000_000 + 10 * day);
        assert!(login_warning(&s, now).is_none());
        assert!(status_text("file", "/x", &s, now).contains("(in 10d 0h, 10 days left)"));
        s.login_expires_at_ms = Some(1_900_000_000_000 + 2 * day + 3_600_000);
        let warning = login_warning(&s, now).unwrap();
        assert!(
            warning.contains("in 2d 1h, 2 days left; run `claude login` before then"),
            "{warning}"
        );
        s.login_expires_at_ms = Some(1_900_000_000_000 - day);
        assert!(login_warning(&s, now).unwrap().contains("ended 1d 0h ago"));
        let json: Value = serde_json::from_str(&status_json("file", "/x", &s)).unwrap();
        assert_eq!(json["loginExpiresAt"], 1_900_000_000_000_i64 - day);
        assert_eq!(json["loggedIn"], true);
    }

    #[test]
    fn terminal_escapes_from_the_file_are_never_sent() {
        let now = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        let mut s = status(Some(1), false, false);
        s.subscription_type = Some("max\u{1b}[2J\u{1b}]0;owned\u{7}".into());
        s.rate_limit_tier = Some("tier\r\nforged: line".into());
        s.scopes = vec!["user:inference\u{9b}31m".into()];
        let text = status_text("file", "/x/\u{1b}[1m", &s, now);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        let mut clean = status(Some(1), false, false);
        clean.rate_limit_tier = Some("tier".into());
        let lines = status_text("file", "/x", &clean, now).lines().count();
        assert_eq!(
            text.lines().count(),
            lines,
            "a forged line got through: {text:?}"
        );
    }

    #[test]
    fn documents_are_shown_without_secrets() {
        let doc = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-A","refreshToken":"sk-ant-ort01-R","expiresAt":1,"scopes":["user:inference"]},"mcpOAuth":{"s":{"accessToken":"m","clientSecret":"c"}}}"#;
        let shown = redacted_document(doc);
        for secret in ["sk-ant-oat01-A", "sk-ant-ort01-R", "\"m\"", "\"c\""] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("user:inference") && shown.contains(&fingerprint("sk-ant-oat01-A")));
    }

    #[test]
    fn json_status_has_no_token_field() {
        let text = status_json("file", "/x", &status(Some(5), true, true));
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["expiresAt"], 5);
        assert_eq!(value["hasRefreshToken"], true);
        assert!(!text.to_ascii_lowercase().contains("accesstoken"));
    }
}
