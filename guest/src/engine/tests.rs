use std::time::Duration;

use super::*;
use crate::fakes::{FakeClock, FakeHttp, FakeStore};
use crate::ports::{HttpFailure, Kept};

const NOW: i64 = 1_800_000_000_000;
const MINUTE: i64 = 60_000;
const URL: &str = "https://platform.claude.com/v1/oauth/token";
const CLIENT: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";

fn doc(access: &str, refresh: Option<&str>, expires_at: i64) -> String {
    let refresh = refresh.map_or(String::new(), |r| format!(r#""refreshToken":"{r}","#));
    format!(
        r#"{{"claudeAiOauth":{{"accessToken":"{access}",{refresh}"expiresAt":{expires_at},"scopes":["user:inference"],"subscriptionType":"max","rateLimitTier":"tier"}},"mcpOAuth":{{"k":"v"}}}}"#
    )
}

const GRANT: &str = r#"{"access_token":"at-2","refresh_token":"rt-2","expires_in":28800,"scope":"user:inference user:profile","token_type":"Bearer"}"#;

fn refresher(store: FakeStore, mut http: FakeHttp) -> Refresher<FakeStore, FakeHttp, FakeClock> {
    http.events = store.events.clone();
    Refresher {
        store,
        http,
        clock: FakeClock {
            now_ms: NOW,
            ..FakeClock::default()
        },
        settings: Settings {
            token_url: URL.into(),
            client_id: Some(CLIENT.into()),
            skew_ms: 5 * MINUTE,
            timeout: Duration::from_secs(30),
            user_agent: DEFAULT_USER_AGENT.into(),
        },
    }
}

/// The access token of `view`.
fn access(view: &OAuthView) -> &str {
    view.access_token.as_deref().unwrap_or_default()
}

/// The body the CLI sends for `refresh`, asking for `scope`.
fn body(refresh: &str, scope: &str) -> String {
    format!(
        r#"{{"grant_type":"refresh_token","refresh_token":"{refresh}","client_id":"{CLIENT}","scope":"{scope}"}}"#
    )
}

fn expired() -> String {
    doc("at-1", Some("rt-1"), NOW - MINUTE)
}

#[test]
fn fresh_token_needs_no_lock_and_no_request() {
    let mut r = refresher(
        FakeStore::holding(&doc("at-1", Some("rt-1"), NOW + 60 * MINUTE)),
        FakeHttp::default(),
    );
    let (view, outcome) = r.ensure(Mode::IfNeeded).unwrap();
    assert_eq!((access(&view), outcome), ("at-1", Outcome::StillFresh));
    assert_eq!(
        (r.store.locks, r.http.requests.len(), r.store.saved().len()),
        (0, 0, 0)
    );
}

#[test]
fn refresh_decision_by_expiry() {
    // (expiresAt relative to now, mode, refreshed?)
    let cases = [
        (60 * MINUTE, Mode::IfNeeded, false),
        (5 * MINUTE + 1, Mode::IfNeeded, false),
        (5 * MINUTE, Mode::IfNeeded, true),
        (2 * MINUTE, Mode::IfNeeded, true),
        (-MINUTE, Mode::IfNeeded, true),
        (60 * MINUTE, Mode::Force, true),
    ];
    for (offset, mode, refreshed) in cases {
        let http = FakeHttp::default().answer(200, GRANT);
        let mut r = refresher(
            FakeStore::holding(&doc("at-1", Some("rt-1"), NOW + offset)),
            http,
        );
        let (view, outcome) = r.ensure(mode).unwrap();
        let want = if refreshed {
            ("at-2", Outcome::Refreshed)
        } else {
            ("at-1", Outcome::StillFresh)
        };
        assert_eq!((access(&view), outcome), want, "offset {offset} {mode:?}");
    }
}

#[test]
fn missing_or_unrepresentable_expiry_refreshes() {
    for expires in [
        "",
        r#","expiresAt":null"#,
        r#","expiresAt":-1"#,
        r#","expiresAt":1e300"#,
    ] {
        let text = format!(
            r#"{{"claudeAiOauth":{{"accessToken":"at-1","refreshToken":"rt-1"{expires}}}}}"#
        );
        let mut r = refresher(
            FakeStore::holding(&text),
            FakeHttp::default().answer(200, GRANT),
        );
        assert_eq!(
            r.ensure(Mode::IfNeeded).unwrap().1,
            Outcome::Refreshed,
            "{expires}"
        );
    }
}

#[test]
fn refresh_sends_the_grant_and_writes_back_everything() {
    let mut r = refresher(
        FakeStore::holding(&expired()),
        FakeHttp::default().answer(200, GRANT),
    );
    let (view, outcome) = r.ensure(Mode::IfNeeded).unwrap();
    assert_eq!(outcome, Outcome::Refreshed);
    assert_eq!(view.refresh_token.as_deref(), Some("rt-2"));
    let (request, timeout) = &r.http.requests[0];
    assert_eq!(request.url, URL);
    assert_eq!(request.body, body("rt-1", &CLI_SCOPES.join(" ")));
    assert_eq!(request.user_agent, DEFAULT_USER_AGENT);
    assert_eq!(*timeout, Duration::from_secs(30));
    assert_eq!(r.store.locks, 1);
    assert_eq!(
        r.store.saved(),
        [format!(
            r#"{{"claudeAiOauth":{{"accessToken":"at-2","refreshToken":"rt-2","expiresAt":{},"scopes":["user:inference","user:profile"],"subscriptionType":"max","rateLimitTier":"tier"}},"mcpOAuth":{{"k":"v"}}}}"#,
            NOW + 28_800_000
        )]
    );
}

#[test]
fn no_client_id_leaves_the_field_out() {
    let mut r = refresher(
        FakeStore::holding(&expired()),
        FakeHttp::default().answer(200, GRANT),
    );
    r.settings.client_id = None;
    r.ensure(Mode::IfNeeded).unwrap();
    assert_eq!(
        r.http.requests[0].0.body,
        format!(
            r#"{{"grant_type":"refresh_token","refresh_token":"rt-1","scope":"{}"}}"#,
            CLI_SCOPES.join(" ")
        )
    );
}

#[test]
fn another_process_refreshed_while_waiting_for_the_lock() {
    for mode in [Mode::IfNeeded, Mode::Force] {
        let mut store = FakeStore::holding(&expired());
        store.written_while_waiting = Some(doc("at-9", Some("rt-9"), NOW + 60 * MINUTE));
        let mut r = refresher(store, FakeHttp::default());
        let (view, outcome) = r.ensure(mode).unwrap();
        assert_eq!(
            (access(&view), outcome),
            ("at-9", Outcome::Adopted),
            "{mode:?}"
        );
        assert!(r.http.requests.is_empty() && r.store.saved().is_empty());
    }
}

#[test]
fn expired_without_refresh_token_is_expired_and_sends_nothing() {
    let mut r = refresher(
        FakeStore::holding(&doc("at-1", None, NOW - 1)),
        FakeHttp::default(),
    );
    let err = r.ensure(Mode::IfNeeded).unwrap_err();
    assert_eq!(err.cause, Cause::RefreshTokenMissing);
    assert_eq!(err.kind(), crate::failure::Kind::Expired);
    assert!(err.message.contains("claude login"));
    assert!(r.http.requests.is_empty() && r.store.saved().is_empty());
}

#[test]
fn invalid_grant_is_expired_and_writes_nothing() {
    let http = FakeHttp::default().answer(
        400,
        r#"{"error":"invalid_grant","error_description":"Refresh token not found or invalid"}"#,
    );
    let mut r = refresher(FakeStore::holding(&expired()), http);
    let err = r.ensure(Mode::IfNeeded).unwrap_err();
    assert_eq!(err.cause, Cause::GrantRejected);
    assert!(err.message.contains("claude login"), "{}", err.message);
    assert!(err.message.contains("Refresh token not found or invalid"));
    assert!(!err.message.contains("time limit"), "{}", err.message);
    assert_eq!((r.http.requests.len(), r.store.saved().len()), (1, 0));

    // The description the CLI reads as the login's time limit.
    let http = FakeHttp::default().answer(
        400,
        r#"{"error":"invalid_grant","error_description":"Refresh token expired"}"#,
    );
    let mut r = refresher(FakeStore::holding(&expired()), http);
    let err = r.ensure(Mode::IfNeeded).unwrap_err();
    assert_eq!(err.cause, Cause::GrantRejected);
    assert!(
        err.message.starts_with("the login reached its time limit"),
        "{}",
        err.message
    );
}

#[test]
fn invalid_grant_after_a_sibling_rotated_adopts_the_siblings_token() {
    let store = FakeStore::holding(&expired());
    let shared = store.doc.clone();
    let http = FakeHttp::default()
        .answer(400, r#"{"error":"invalid_grant"}"#)
        .while_store_becomes(&shared, &doc("at-9", Some("rt-9"), NOW + 60 * MINUTE));
    let mut r = refresher(store, http);
    let (view, outcome) = r.ensure(Mode::IfNeeded).unwrap();
    assert_eq!((access(&view), outcome), ("at-9", Outcome::Adopted));
    assert!(r.store.saved().is_empty());
}

#[test]
fn a_credential_rotated_during_the_exchange_is_not_overwritten() {
    let store = FakeStore::holding(&expired());
    let shared = store.doc.clone();
    let theirs = doc("at-9", Some("rt-9"), NOW + 60 * MINUTE);
    let http = FakeHttp::default()
        .answer(200, GRANT)
        .while_store_becomes(&shared, &theirs);
    let mut r = refresher(store, http);
    let (view, outcome) = r.ensure(Mode::IfNeeded).unwrap();
    assert_eq!((access(&view), outcome), ("at-9", Outcome::Adopted));
    assert!(r.store.saved().is_empty());
    assert_eq!(shared.borrow().as_deref(), Some(theirs.as_str()));
}

#[test]
fn transient_failures_retry_with_backoff_then_succeed() {
    let http = FakeHttp::default()
        .answer(503, "")
        .fail(HttpFailure::Unreachable("connection refused".into()))
        .answer(200, GRANT);
    let mut r = refresher(FakeStore::holding(&expired()), http);
    assert_eq!(r.ensure(Mode::IfNeeded).unwrap().1, Outcome::Refreshed);
    assert_eq!(r.http.requests.len(), 3);
    let sleeps = &r.clock.sleeps;
    assert_eq!(sleeps.len(), 2);
    assert!(
        sleeps[0] >= BASE_BACKOFF && sleeps[0] < BASE_BACKOFF * 3 / 2,
        "{sleeps:?}"
    );
    assert!(
        sleeps[1] >= BASE_BACKOFF * 2 && sleeps[1] < BASE_BACKOFF * 3,
        "{sleeps:?}"
    );
    // Each attempt gets only what is left of the budget.
    assert!(r.http.requests[2].1 < Duration::from_secs(30));
}

#[test]
fn retry_after_is_honoured_within_the_budget() {
    let http = FakeHttp::default()
        .answer_retry_after(429, "2")
        .answer(200, GRANT);
    let mut r = refresher(FakeStore::holding(&expired()), http);
    assert_eq!(r.ensure(Mode::IfNeeded).unwrap().1, Outcome::Refreshed);
    assert_eq!(r.clock.sleeps, [Duration::from_secs(2)]);
}

#[test]
fn retry_after_beyond_the_budget_fails_at_once() {
    let http = FakeHttp::default().answer_retry_after(429, "3600");
    let mut r = refresher(FakeStore::holding(&expired()), http);
    let err = r.ensure(Mode::IfNeeded).unwrap_err();
    assert_eq!(err.cause, Cause::EndpointUnavailable);
    assert!(
        err.message.contains("HTTP 429") && err.message.contains("refresh timeout"),
        "{}",
        err.message
    );
    assert!(r.clock.sleeps.is_empty());
}

#[test]
fn attempts_are_bounded() {
    let mut http = FakeHttp::default();
    for _ in 0..MAX_ATTEMPTS {
        http = http.answer(500, "");
    }
    let mut r = refresher(FakeStore::holding(&expired()), http);
    let err = r.ensure(Mode::IfNeeded).unwrap_err();
    assert_eq!(err.cause, Cause::EndpointUnavailable);
    assert_eq!(err.kind(), crate::failure::Kind::SourceUnreachable);
    assert!(
        err.message
            .contains(&format!("after {MAX_ATTEMPTS} attempts")),
        "{}",
        err.message
    );
    assert_eq!(r.http.requests.len() as u32, MAX_ATTEMPTS);
    assert!(r.store.saved().is_empty());
}

#[test]
fn a_still_valid_token_bridges_failures_that_may_pass() {
    // Inside the skew but not expired: the refresh fails, the stored token is used.
    let in_skew = doc("at-1", Some("rt-1"), NOW + 2 * MINUTE);
    let mut http = FakeHttp::default();
    for _ in 0..MAX_ATTEMPTS {
        http = http.answer(502, "");
    }
    let mut r = refresher(FakeStore::holding(&in_skew), http);
    let (view, outcome) = r.ensure(Mode::IfNeeded).unwrap();
    assert_eq!((access(&view), outcome), ("at-1", Outcome::Deferred));

    // A lock that cannot be taken is bridged the same way.
    let mut store = FakeStore::holding(&in_skew);
    store
        .lock_errors
        .push_back(StoreError::LockTimeout("lock busy".into()));
    let mut r = refresher(store, FakeHttp::default());
    assert_eq!(r.ensure(Mode::IfNeeded).unwrap().1, Outcome::Deferred);

    // But not a forced refresh, nor a rejected grant, nor an expired token.
    let mut store = FakeStore::holding(&in_skew);
    store
        .lock_errors
        .push_back(StoreError::LockTimeout("lock busy".into()));
    let mut r = refresher(store, FakeHttp::default());
    assert_eq!(r.ensure(Mode::Force).unwrap_err().cause, Cause::LockTimeout);
    let http = FakeHttp::default().answer(400, r#"{"error":"invalid_grant"}"#);
    let mut r = refresher(FakeStore::holding(&in_skew), http);
    assert_eq!(
        r.ensure(Mode::IfNeeded).unwrap_err().cause,
        Cause::GrantRejected
    );
    let mut store = FakeStore::holding(&expired());
    store
        .lock_errors
        .push_back(StoreError::LockTimeout("lock busy".into()));
    let mut r = refresher(store, FakeHttp::default());
    assert_eq!(
        r.ensure(Mode::IfNeeded).unwrap_err().cause,
        Cause::LockTimeout
    );
}

#[test]
fn answers_that_do_not_pass_are_not_retried() {
    let cases = [
        (400, r#"{"error":"invalid_client"}"#, Cause::EndpointRefused),
        (404, "Not Found", Cause::EndpointRefused),
        (200, "<html>hi</html>", Cause::AnswerInvalid),
        (200, r#"{"expires_in":60}"#, Cause::AnswerInvalid),
    ];
    for (status, body, cause) in cases {
        let mut r = refresher(
            FakeStore::holding(&expired()),
            FakeHttp::default().answer(status, body),
        );
        let err = r.ensure(Mode::IfNeeded).unwrap_err();
        assert_eq!(err.cause, cause, "{status} {body}");
        assert_eq!((r.http.requests.len(), r.store.saved().len()), (1, 0));
    }
    let http = FakeHttp::default().fail(HttpFailure::Untrusted("tls certificate error".into()));
    let mut r = refresher(FakeStore::holding(&expired()), http);
    let err = r.ensure(Mode::IfNeeded).unwrap_err();
    assert_eq!(
        err.cause,
        Cause::EndpointRefused,
        "a certificate problem is not retried"
    );
    assert_eq!(r.http.requests.len(), 1);
    let http = FakeHttp::default().fail(HttpFailure::TooLarge { limit: 1 << 20 });
    let mut r = refresher(FakeStore::holding(&expired()), http);
    assert_eq!(
        r.ensure(Mode::IfNeeded).unwrap_err().cause,
        Cause::AnswerInvalid
    );
}

#[test]
fn store_problems_are_typed() {
    let cases: Vec<(Option<String>, Cause)> = vec![
        (None, Cause::CredentialsMissing),
        (Some("{}".into()), Cause::OAuthSectionMissing),
        (Some("not json".into()), Cause::DocumentInvalid),
        (
            Some(r#"{"claudeAiOauth":{"accessToken":"a","scopes":"x"}}"#.into()),
            Cause::DocumentInvalid,
        ),
    ];
    for (content, cause) in cases {
        let store = FakeStore::default();
        *store.doc.borrow_mut() = content.clone();
        let mut r = refresher(store, FakeHttp::default());
        assert_eq!(
            r.ensure(Mode::IfNeeded).unwrap_err().cause,
            cause,
            "{content:?}"
        );
        assert_eq!(r.status().unwrap_err().cause, cause, "{content:?}");
    }
}

#[test]
fn a_failed_save_is_reported() {
    let mut store = FakeStore::holding(&expired());
    store.commit_error = Some(StoreError::Unavailable("the disk is gone".into()));
    let mut r = refresher(store, FakeHttp::default().answer(200, GRANT));
    let err = r.ensure(Mode::IfNeeded).unwrap_err();
    assert_eq!(err.cause, Cause::StoreFailed);
    assert!(err.message.contains("the disk is gone"), "{}", err.message);
}

#[test]
fn status_reports_without_tokens() {
    let mut r = refresher(
        FakeStore::holding(&doc("at-1", Some("rt-1"), NOW + 2 * MINUTE)),
        FakeHttp::default(),
    );
    let status = r.status().unwrap();
    assert_eq!(
        status,
        Status {
            logged_in: true,
            expires_at_ms: Some(NOW + 2 * MINUTE),
            expired: false,
            needs_refresh: true,
            has_refresh_token: true,
            subscription_type: Some("max".into()),
            rate_limit_tier: Some("tier".into()),
            scopes: vec!["user:inference".into()],
            login_expires_at_ms: None,
        }
    );
    assert!(r.http.requests.is_empty() && r.store.locks == 0);
}

#[test]
fn human_durations() {
    let cases = [
        (250, "250ms"),
        (1_000, "1s"),
        (30_000, "30s"),
        (90_000, "90s"),
        (120_000, "2m"),
        (150_000, "150s"),
    ];
    for (ms, want) in cases {
        assert_eq!(human(Duration::from_millis(ms)), want);
    }
}

#[test]
fn a_refresh_that_finished_while_waiting_is_used_without_taking_the_lock() {
    let mut store = FakeStore::holding(&expired());
    store
        .lock_errors
        .push_back(StoreError::Conflict("a refresh finished".into()));
    store.written_while_waiting = Some(doc("at-9", Some("rt-9"), NOW + 60 * MINUTE));
    let mut r = refresher(store, FakeHttp::default());
    let (view, outcome) = r.ensure(Mode::IfNeeded).unwrap();
    assert_eq!((access(&view), outcome), ("at-9", Outcome::Adopted));
    assert_eq!((r.store.locks, r.http.requests.len()), (0, 0));
}

#[test]
fn a_conflict_that_did_not_help_takes_the_lock_and_refreshes() {
    let mut store = FakeStore::holding(&expired());
    store
        .lock_errors
        .push_back(StoreError::Conflict("a refresh finished".into()));
    let mut r = refresher(store, FakeHttp::default().answer(200, GRANT));
    assert_eq!(r.ensure(Mode::IfNeeded).unwrap().1, Outcome::Refreshed);
    assert_eq!(r.store.locks, 1);
}

#[test]
fn endless_conflicts_are_a_store_failure() {
    let mut store = FakeStore::holding(&expired());
    for _ in 0..=MAX_LOCK_CONFLICTS {
        store
            .lock_errors
            .push_back(StoreError::Conflict("again".into()));
    }
    let mut r = refresher(store, FakeHttp::default());
    let err = r.ensure(Mode::IfNeeded).unwrap_err();
    assert_eq!(err.cause, Cause::StoreFailed);
    assert!(r.http.requests.is_empty());
}

#[test]
fn a_long_lived_token_is_used_and_never_refreshed() {
    let setup_token =
        r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-long","scopes":["user:inference"]}}"#;
    for mode in [Mode::IfNeeded, Mode::Force] {
        let mut r = refresher(FakeStore::holding(setup_token), FakeHttp::default());
        let result = r.ensure(mode);
        match mode {
            Mode::IfNeeded => assert_eq!(result.unwrap().1, Outcome::StillFresh),
            Mode::Force => assert_eq!(result.unwrap_err().cause, Cause::NotRefreshable),
        }
        assert_eq!(
            (r.store.locks, r.http.requests.len(), r.store.saved().len()),
            (0, 0, 0)
        );
    }
    let mut r = refresher(FakeStore::holding(setup_token), FakeHttp::default());
    let status = r.status().unwrap();
    assert!(!status.expired && !status.needs_refresh && !status.has_refresh_token);
    assert_eq!(status.expires_at_ms, None);
}

/// The order that keeps a rotated login: nothing is sent before the write is prepared, and the
/// write is a read-modify-write under the store's write lock, inside the refresh lock.
#[test]
fn the_write_is_prepared_before_the_request_and_done_under_the_write_lock() {
    let mut r = refresher(
        FakeStore::holding(&expired()),
        FakeHttp::default().answer(200, GRANT),
    );
    r.ensure(Mode::IfNeeded).unwrap();
    assert_eq!(
        *r.store.events.borrow(),
        [
            "lock",
            "prepare",
            "post",
            "load-for-write",
            "commit",
            "unlock"
        ]
    );
}

#[test]
fn a_write_that_cannot_work_fails_before_anything_is_sent() {
    let mut store = FakeStore::holding(&expired());
    store.prepare_error = Some(StoreError::Unavailable("No space left on device".into()));
    let mut r = refresher(store, FakeHttp::default());
    let err = r.ensure(Mode::IfNeeded).unwrap_err();
    assert_eq!(err.cause, Cause::StoreFailed);
    assert!(
        err.message.contains("No space left") && err.message.contains("no refresh was attempted"),
        "{}",
        err.message
    );
    assert!(r.http.requests.is_empty() && r.store.saved().is_empty());
}

/// Another writer (the CLI storing an MCP token) changed the document during the exchange:
/// its change and our tokens both survive.
#[test]
fn a_concurrent_writers_change_survives_the_write_back() {
    let store = FakeStore::holding(&expired());
    let shared = store.doc.clone();
    let theirs = expired().replace(r#""mcpOAuth":{"k":"v"}"#, r#""mcpOAuth":{"k":"new"}"#);
    let http = FakeHttp::default()
        .answer(200, GRANT)
        .while_store_becomes(&shared, &theirs);
    let mut r = refresher(store, http);
    assert_eq!(r.ensure(Mode::IfNeeded).unwrap().1, Outcome::Refreshed);
    let saved = r.store.saved().pop().unwrap();
    assert!(saved.contains(r#""mcpOAuth":{"k":"new"}"#), "{saved}");
    assert!(saved.contains(r#""refreshToken":"rt-2""#), "{saved}");
}

/// When the write lock or the re-read fails, the grant is still committed (onto the document
/// read under the refresh lock): the host keeps it, in the store or rescued.
#[test]
fn a_failed_re_read_still_keeps_the_grant() {
    let mut store = FakeStore::holding(&expired());
    store.load_for_write_error = Some(StoreError::LockTimeout("write lock busy".into()));
    let mut r = refresher(store, FakeHttp::default().answer(200, GRANT));
    assert_eq!(r.ensure(Mode::IfNeeded).unwrap().1, Outcome::Refreshed);
    assert!(r.store.saved()[0].contains(r#""refreshToken":"rt-2""#));
}

#[test]
fn a_rescued_grant_is_used() {
    let mut store = FakeStore::holding(&expired());
    store.kept = Some(Kept::Rescued);
    let mut r = refresher(store, FakeHttp::default().answer(200, GRANT));
    let (view, outcome) = r.ensure(Mode::IfNeeded).unwrap();
    assert_eq!((access(&view), outcome), ("at-2", Outcome::Refreshed));
}

/// A 2xx answer spent the refresh token: whatever tokens it carries are stored, due for a
/// refresh when their lifetime is unknown; without an access token the call says so.
#[test]
fn odd_success_answers_are_kept() {
    let no_lifetime = r#"{"access_token":"at-2","refresh_token":"rt-2","token_type":"mac"}"#;
    let mut r = refresher(
        FakeStore::holding(&expired()),
        FakeHttp::default().answer(200, no_lifetime),
    );
    let (view, outcome) = r.ensure(Mode::IfNeeded).unwrap();
    assert_eq!((access(&view), outcome), ("at-2", Outcome::Refreshed));
    assert_eq!(view.refresh_token.as_deref(), Some("rt-2"));
    assert_eq!(view.expires_at_ms(), Some(NOW));
    assert!(view.needs_refresh(NOW, 0), "the next use refreshes");

    let no_access = r#"{"refresh_token":"rt-2","expires_in":28800}"#;
    let mut r = refresher(
        FakeStore::holding(&expired()),
        FakeHttp::default().answer(200, no_access),
    );
    let err = r.ensure(Mode::IfNeeded).unwrap_err();
    assert_eq!(err.cause, Cause::AnswerInvalid);
    assert!(
        err.message.contains("rotated refresh token was saved"),
        "{}",
        err.message
    );
    let saved = r.store.saved().pop().unwrap();
    assert!(saved.contains(r#""refreshToken":"rt-2""#), "{saved}");

    // With a still-valid access token the call goes on with it; the new refresh token is kept.
    let in_skew = doc("at-1", Some("rt-1"), NOW + 2 * MINUTE);
    let mut r = refresher(
        FakeStore::holding(&in_skew),
        FakeHttp::default().answer(200, no_access),
    );
    let (view, outcome) = r.ensure(Mode::IfNeeded).unwrap();
    assert_eq!((access(&view), outcome), ("at-1", Outcome::Deferred));
    assert!(r.store.saved()[0].contains(r#""refreshToken":"rt-2""#));
}

/// The `claude` CLI's logged-out shape is "not logged in", whatever is asked; nothing is sent
/// or written.
#[test]
fn the_logged_out_shape_is_not_logged_in() {
    let blank = r#"{"claudeAiOauth":{"accessToken":"","refreshToken":"","expiresAt":0,"scopes":["user:inference"]},"mcpOAuth":{}}"#;
    for mode in [Mode::IfNeeded, Mode::Force] {
        let mut r = refresher(FakeStore::holding(blank), FakeHttp::default());
        let err = r.ensure(mode).unwrap_err();
        assert_eq!(err.cause, Cause::LoggedOut, "{mode:?}");
        assert_eq!(err.kind(), crate::failure::Kind::Expired);
        assert!(err.message.contains("claude login"), "{}", err.message);
        assert_eq!((r.store.locks, r.http.requests.len()), (0, 0));
    }
    let mut r = refresher(FakeStore::holding(blank), FakeHttp::default());
    let status = r.status().unwrap();
    assert!(!status.logged_in && status.expired && !status.has_refresh_token);
}

#[test]
fn the_request_asks_for_the_recorded_scopes_or_the_clis() {
    let none_recorded =
        r#"{"claudeAiOauth":{"accessToken":"at-1","refreshToken":"rt-1","expiresAt":0}}"#;
    let mut r = refresher(
        FakeStore::holding(none_recorded),
        FakeHttp::default().answer(200, GRANT),
    );
    r.settings.user_agent = "my-agent/1".into();
    r.ensure(Mode::IfNeeded).unwrap();
    let (request, _) = &r.http.requests[0];
    assert_eq!(request.body, body("rt-1", &CLI_SCOPES.join(" ")));
    assert_eq!(request.user_agent, "my-agent/1");
    let shown = format!("{request:?}");
    assert!(!shown.contains("rt-1"), "{shown}");
}

#[test]
fn the_login_deadline_is_reported() {
    let text = r#"{"claudeAiOauth":{"accessToken":"a","refreshToken":"r","expiresAt":1,"refreshTokenExpiresAt":1900000000000}}"#;
    let mut r = refresher(FakeStore::holding(text), FakeHttp::default());
    assert_eq!(
        r.status().unwrap().login_expires_at_ms,
        Some(1_900_000_000_000)
    );
}

/// `Retry-After: 18446744073709551615` overflowed a `Duration` sum and panicked the component;
/// it is a wait beyond the budget like any other, and a still-valid token bridges it.
#[test]
fn a_huge_retry_after_is_a_wait_beyond_the_budget() {
    let http = FakeHttp::default().answer_retry_after(429, "18446744073709551615");
    let mut r = refresher(FakeStore::holding(&expired()), http);
    // Time passes while the request is under way (here more than a second, as over a slow
    // network), so the wait is added to a duration with whole seconds in it.
    r.clock.tick = Duration::from_millis(700);
    let err = r.ensure(Mode::IfNeeded).unwrap_err();
    assert_eq!(err.cause, Cause::EndpointUnavailable);
    assert!(err.message.contains("refresh timeout"), "{}", err.message);

    let in_skew = doc("at-1", Some("rt-1"), NOW + 2 * MINUTE);
    let http = FakeHttp::default().answer_retry_after(429, "18446744073709551615");
    let mut r = refresher(FakeStore::holding(&in_skew), http);
    r.clock.tick = Duration::from_millis(700);
    assert_eq!(r.ensure(Mode::IfNeeded).unwrap().1, Outcome::Deferred);
}

/// The scopes (and client) of the request that refreshes `scopes_and_more` (the rest of the
/// `claudeAiOauth` section after the tokens).
fn asked_for(section_rest: &str, http: FakeHttp) -> (Vec<String>, Result<Outcome, AuthFailure>) {
    let text = format!(
        r#"{{"claudeAiOauth":{{"accessToken":"at-1","refreshToken":"rt-1","expiresAt":0{section_rest}}}}}"#
    );
    let mut r = refresher(FakeStore::holding(&text), http);
    let outcome = r.ensure(Mode::IfNeeded).map(|(_, outcome)| outcome);
    let bodies = r
        .http
        .requests
        .iter()
        .map(|(q, _)| q.body.clone())
        .collect();
    (bodies, outcome)
}

/// The CLI (2.1.332) asks a first-party login for its six scopes plus the project and privacy
/// scopes the login records (in the login's order); a login of another client for what it
/// records, for that client.
#[test]
fn the_request_asks_for_scopes_as_the_cli_does() {
    let six = CLI_SCOPES.join(" ");
    let other = |scope: &str| {
        format!(
            r#"{{"grant_type":"refresh_token","refresh_token":"rt-1","client_id":"other-client","scope":"{scope}"}}"#
        )
    };
    let cases = [
        (
            r#","scopes":["user:inference","user:profile"]"#,
            body("rt-1", &six),
        ),
        (
            r#","scopes":["user:profile"],"subscriptionType":"pro""#,
            body("rt-1", &six),
        ),
        (
            r#","scopes":["user:projects:write","user:inference","org:x","user:privacy_consents:write","user:projects:read"]"#,
            body(
                "rt-1",
                &format!(
                    "{six} user:projects:write user:privacy_consents:write user:projects:read"
                ),
            ),
        ),
        // Neither user:inference nor a subscription: what it records.
        (
            r#","scopes":["user:profile","org:create_api_key"]"#,
            body("rt-1", "user:profile org:create_api_key"),
        ),
        (
            r#","scopes":["user:inference","user:design:read"],"clientId":"other-client""#,
            other("user:inference user:design:read"),
        ),
        (r#","clientId":"other-client""#, other(&six)),
        // An empty clientId is no client of its own.
        (
            r#","scopes":["user:inference"],"clientId":"""#,
            body("rt-1", &six),
        ),
    ];
    for (rest, want) in cases {
        let (bodies, outcome) = asked_for(rest, FakeHttp::default().answer(200, GRANT));
        assert_eq!(outcome, Ok(Outcome::Refreshed), "{rest}");
        assert_eq!(bodies, [want], "{rest}");
    }
}

/// On `invalid_scope` the CLI asks once more with the recorded scopes, and only for a
/// first-party login that records `user:inference`.
#[test]
fn a_refused_scope_is_asked_again_with_the_recorded_scopes_once() {
    const SCOPE_REFUSED: &str =
        r#"{"error":"invalid_scope","error_description":"scope user:plugins not allowed"}"#;
    let six = CLI_SCOPES.join(" ");
    let recorded = r#","scopes":["user:inference","user:profile"]"#;
    let (bodies, outcome) = asked_for(
        recorded,
        FakeHttp::default()
            .answer(400, SCOPE_REFUSED)
            .answer(200, GRANT),
    );
    assert_eq!(outcome, Ok(Outcome::Refreshed));
    assert_eq!(
        bodies,
        [
            body("rt-1", &six),
            body("rt-1", "user:inference user:profile")
        ]
    );

    // Refused again: the second refusal stands.
    let (bodies, outcome) = asked_for(
        recorded,
        FakeHttp::default()
            .answer(400, SCOPE_REFUSED)
            .answer(400, SCOPE_REFUSED)
            .answer(200, GRANT),
    );
    assert_eq!(bodies.len(), 2);
    let failure = outcome.unwrap_err();
    assert_eq!(failure.cause, Cause::EndpointRefused);
    assert!(failure.message.contains("scopes"), "{}", failure.message);

    // No user:inference recorded (a subscription only): no second request.
    let (bodies, outcome) = asked_for(
        r#","scopes":["user:profile"],"subscriptionType":"max""#,
        FakeHttp::default()
            .answer(400, SCOPE_REFUSED)
            .answer(200, GRANT),
    );
    assert_eq!(bodies, [body("rt-1", &six)]);
    assert_eq!(outcome.unwrap_err().cause, Cause::EndpointRefused);

    // Another client's login asked for its own scopes already: no second request.
    let (bodies, _) = asked_for(
        r#","scopes":["user:inference"],"clientId":"other-client""#,
        FakeHttp::default()
            .answer(400, SCOPE_REFUSED)
            .answer(200, GRANT),
    );
    assert_eq!(bodies.len(), 1);
}

/// The blank the CLI leaves when the login hit its deadline says so.
#[test]
fn a_login_ended_at_its_time_limit_says_so() {
    let ended = r#"{"claudeAiOauth":{"accessToken":"","refreshToken":"","expiresAt":0,"scopes":[],"loginEnded":"time_limit"}}"#;
    for mode in [Mode::IfNeeded, Mode::Force] {
        let mut r = refresher(FakeStore::holding(ended), FakeHttp::default());
        let err = r.ensure(mode).unwrap_err();
        assert_eq!(err.cause, Cause::LoggedOut);
        assert!(err.message.starts_with(TIME_LIMIT), "{}", err.message);
        assert!(err.message.contains("claude login"), "{}", err.message);
    }
    let plain =
        r#"{"claudeAiOauth":{"accessToken":"","refreshToken":"","expiresAt":0,"scopes":[]}}"#;
    let mut r = refresher(FakeStore::holding(plain), FakeHttp::default());
    let err = r.ensure(Mode::IfNeeded).unwrap_err();
    assert!(!err.message.starts_with(TIME_LIMIT), "{}", err.message);
}

/// `/logout` (`claude auth logout`) deletes the login: that is "not logged in".
#[test]
fn a_document_without_the_login_is_not_logged_in() {
    let mut r = refresher(
        FakeStore::holding(r#"{"mcpOAuth":{"k":"v"}}"#),
        FakeHttp::default(),
    );
    let err = r.ensure(Mode::IfNeeded).unwrap_err();
    assert_eq!(err.cause, Cause::OAuthSectionMissing);
    assert!(err.message.starts_with("not logged in"), "{}", err.message);
    assert!(err.message.contains("claude login"), "{}", err.message);
}

/// As the CLI's compare-and-set: a new login stored during the exchange is never overwritten,
/// even when it is expired itself (its refresh token is live and its own).
#[test]
fn another_login_stored_during_the_exchange_is_never_overwritten_even_expired() {
    let store = FakeStore::holding(&expired());
    let shared = store.doc.clone();
    let theirs = doc("at-9", Some("rt-9"), NOW - MINUTE);
    let http = FakeHttp::default()
        .answer(200, GRANT)
        .while_store_becomes(&shared, &theirs);
    let mut r = refresher(store, http);
    let (view, outcome) = r.ensure(Mode::IfNeeded).unwrap();
    assert_eq!((access(&view), outcome), ("at-9", Outcome::Adopted));
    assert!(r.store.saved().is_empty());
    assert_eq!(shared.borrow().as_deref(), Some(theirs.as_str()));
}

/// The CLI's blank of the login (`refreshToken: ""`) is written over, as the CLI writes over
/// it; a logout during the exchange (the section deleted) is not undone.
#[test]
fn a_blank_is_written_over_and_a_logout_is_not_undone() {
    let store = FakeStore::holding(&expired());
    let shared = store.doc.clone();
    let blank = r#"{"claudeAiOauth":{"accessToken":"","refreshToken":"","expiresAt":0},"mcpOAuth":{"k":"v"}}"#;
    let http = FakeHttp::default()
        .answer(200, GRANT)
        .while_store_becomes(&shared, blank);
    let mut r = refresher(store, http);
    assert_eq!(r.ensure(Mode::IfNeeded).unwrap().1, Outcome::Refreshed);
    assert!(r.store.saved()[0].contains(r#""refreshToken":"rt-2""#));

    let store = FakeStore::holding(&expired());
    let shared = store.doc.clone();
    let http = FakeHttp::default()
        .answer(200, GRANT)
        .while_store_becomes(&shared, r#"{"mcpOAuth":{"k":"v"}}"#);
    let mut r = refresher(store, http);
    let err = r.ensure(Mode::IfNeeded).unwrap_err();
    assert_eq!(err.cause, Cause::OAuthSectionMissing);
    assert!(err.message.contains("logout"), "{}", err.message);
    assert!(r.store.saved().is_empty());
}
