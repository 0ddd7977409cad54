//! The glue between the WIT world and the pure logic: one adapter per port, one conversion per
//! type. Nothing here decides anything.

// The ABI glue that `generate!` and `export!` expand to is unsafe by nature; nothing else here is.
#![allow(unsafe_code)]

use std::time::{Duration, Instant};

use crate::engine::{DEFAULT_USER_AGENT, Mode, Outcome, Refresher, Settings, Status};
use crate::failure::{AuthFailure, Cause, Kind};
use crate::ports::{
    Clock, GrantRequest, HeldLock, Http, HttpAnswer, HttpFailure, Kept, Store, StoreError,
};

mod http;

wit_bindgen::generate!({
    path: "../wit",
    world: "claude-code-auth",
    generate_all,
});

use entelix::claude_code_auth::credential_store as store;
use exports::entelix::claude_code_auth::provider as wit;

struct Component;

export!(Component);

impl wit::Guest for Component {
    fn resolve(config: wit::Config) -> Result<wit::Header, wit::AuthError> {
        Self::resolve_with_status(config).map(|resolution| resolution.header)
    }

    fn resolve_with_status(config: wit::Config) -> Result<wit::Resolution, wit::AuthError> {
        let mut refresher = refresher(&config);
        let (view, _) = refresher.ensure(Mode::IfNeeded).map_err(auth_error)?;
        // `ensure` answers only views that hold an access token.
        let token = view.access_token.clone().unwrap_or_default();
        Ok(wit::Resolution {
            header: wit::Header {
                name: "authorization".into(),
                value: format!("Bearer {token}"),
            },
            status: token_status(refresher.status_of(&view)),
        })
    }

    fn status(config: wit::Config) -> Result<wit::TokenStatus, wit::AuthError> {
        refresher(&config)
            .status()
            .map(token_status)
            .map_err(auth_error)
    }

    fn ensure_fresh(config: wit::Config) -> Result<wit::RefreshReport, wit::AuthError> {
        report(&config, Mode::IfNeeded)
    }

    fn force_refresh(config: wit::Config) -> Result<wit::RefreshReport, wit::AuthError> {
        report(&config, Mode::Force)
    }
}

fn report(config: &wit::Config, mode: Mode) -> Result<wit::RefreshReport, wit::AuthError> {
    let mut refresher = refresher(config);
    let (view, outcome) = refresher.ensure(mode).map_err(auth_error)?;
    Ok(wit::RefreshReport {
        outcome: match outcome {
            Outcome::StillFresh => wit::RefreshOutcome::StillFresh,
            Outcome::Refreshed => wit::RefreshOutcome::Refreshed,
            Outcome::Adopted => wit::RefreshOutcome::Adopted,
            Outcome::Deferred => wit::RefreshOutcome::Deferred,
        },
        status: token_status(refresher.status_of(&view)),
    })
}

fn refresher(config: &wit::Config) -> Refresher<WitStore, WasiHttp, WasiClock> {
    Refresher {
        store: WitStore,
        http: WasiHttp {
            max_answer: usize::try_from(config.max_answer_bytes).unwrap_or(usize::MAX),
        },
        clock: WasiClock {
            start: Instant::now(),
        },
        settings: Settings {
            token_url: config.token_url.clone(),
            client_id: config.client_id.clone(),
            skew_ms: i64::try_from(config.expiry_skew_ms).unwrap_or(i64::MAX),
            timeout: Duration::from_millis(config.timeout_ms),
            user_agent: config
                .user_agent
                .clone()
                .unwrap_or_else(|| DEFAULT_USER_AGENT.to_owned()),
        },
    }
}

fn token_status(status: Status) -> wit::TokenStatus {
    wit::TokenStatus {
        logged_in: status.logged_in,
        expires_at_ms: status.expires_at_ms,
        expired: status.expired,
        needs_refresh: status.needs_refresh,
        has_refresh_token: status.has_refresh_token,
        subscription_type: status.subscription_type,
        rate_limit_tier: status.rate_limit_tier,
        scopes: status.scopes,
        login_expires_at_ms: status.login_expires_at_ms,
    }
}

fn auth_error(failure: AuthFailure) -> wit::AuthError {
    let kind = failure.kind();
    let detail = wit::Failure {
        cause: match failure.cause {
            Cause::CredentialsMissing => wit::Cause::CredentialsMissing,
            Cause::OAuthSectionMissing => wit::Cause::OauthSectionMissing,
            Cause::RefreshTokenMissing => wit::Cause::RefreshTokenMissing,
            Cause::LoggedOut => wit::Cause::LoggedOut,
            Cause::NotRefreshable => wit::Cause::NotRefreshable,
            Cause::DocumentInvalid => wit::Cause::DocumentInvalid,
            Cause::GrantRejected => wit::Cause::GrantRejected,
            Cause::EndpointRefused => wit::Cause::EndpointRefused,
            Cause::EndpointUnavailable => wit::Cause::EndpointUnavailable,
            Cause::AnswerInvalid => wit::Cause::AnswerInvalid,
            Cause::StoreFailed => wit::Cause::StoreFailed,
            Cause::LockTimeout => wit::Cause::LockTimeout,
        },
        message: failure.message,
    };
    match kind {
        Kind::Missing => wit::AuthError::Missing(detail),
        Kind::Expired => wit::AuthError::Expired(detail),
        Kind::Refused => wit::AuthError::Refused(detail),
        Kind::SourceUnreachable => wit::AuthError::SourceUnreachable(detail),
    }
}

/// The `credential-store` import.
struct WitStore;

impl Store for WitStore {
    type Lock = store::RefreshLock;

    fn load(&mut self) -> Result<String, StoreError> {
        store::load().map_err(store_error)
    }

    fn lock(&mut self) -> Result<store::RefreshLock, StoreError> {
        store::lock().map_err(store_error)
    }
}

impl HeldLock for store::RefreshLock {
    fn prepare(&mut self, size: u64) -> Result<(), StoreError> {
        store::RefreshLock::prepare(self, size).map_err(store_error)
    }

    fn load_for_write(&mut self) -> Result<String, StoreError> {
        store::RefreshLock::load_for_write(self).map_err(store_error)
    }

    fn commit(&mut self, document: &str) -> Result<Kept, StoreError> {
        match store::RefreshLock::commit(self, document) {
            Ok(store::Kept::Stored) => Ok(Kept::Stored),
            Ok(store::Kept::Rescued) => Ok(Kept::Rescued),
            Err(e) => Err(store_error(e)),
        }
    }
}

fn store_error(error: store::StoreError) -> StoreError {
    match error {
        store::StoreError::NotFound => StoreError::NotFound,
        store::StoreError::Unavailable(m) => StoreError::Unavailable(m),
        store::StoreError::Corrupt(m) => StoreError::Corrupt(m),
        store::StoreError::ReadOnly(m) => StoreError::ReadOnly(m),
        store::StoreError::Conflict(m) => StoreError::Conflict(m),
        store::StoreError::LockTimeout(m) => StoreError::LockTimeout(m),
    }
}

/// `wasi:http/outgoing-handler`, shaped like the `claude` CLI's request (see `http.rs`).
struct WasiHttp {
    /// Largest answer read (the config's `max-answer-bytes`).
    max_answer: usize,
}

impl Http for WasiHttp {
    fn post_json(
        &mut self,
        request: &GrantRequest,
        timeout: Duration,
    ) -> Result<HttpAnswer, HttpFailure> {
        http::post_json(request, timeout, self.max_answer)
    }
}

/// `wasi:clocks`: wall clock for expiry, monotonic clock for budgets, blocking sleep for backoff.
struct WasiClock {
    start: Instant,
}

impl Clock for WasiClock {
    fn now_ms(&self) -> i64 {
        let now = wasi::clocks::wall_clock::now();
        let ms = u128::from(now.seconds) * 1000 + u128::from(now.nanoseconds / 1_000_000);
        i64::try_from(ms).unwrap_or(i64::MAX)
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}
