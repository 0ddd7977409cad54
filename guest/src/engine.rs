//! The refresh decisions, independent of WIT: when to refresh, under which lock, what to do with
//! each answer, when to retry, and what to write back.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::answer::{Grant, Rejection, interpret};
use crate::document::{Document, DocumentError, OAuthView};
use crate::failure::{AuthFailure, Cause};
use crate::ports::{Clock, Http, HttpFailure, Store, StoreError};

/// Attempts per refresh exchange when the endpoint is unavailable (5xx, 429, unreachable).
pub const MAX_ATTEMPTS: u32 = 4;
/// How often `lock` may answer "a refresh finished while you waited" before it counts as a
/// store failure.
pub const MAX_LOCK_CONFLICTS: u32 = 3;
/// Backoff before the second attempt; it doubles for each further attempt, plus up to 50 % jitter.
pub const BASE_BACKOFF: Duration = Duration::from_millis(250);

/// How to reach the token endpoint and when to refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Token endpoint URL.
    pub token_url: String,
    /// OAuth client id sent with the grant, if any.
    pub client_id: Option<String>,
    /// Refresh when the token expires within this many milliseconds.
    pub skew_ms: i64,
    /// Budget for one exchange with the endpoint, retries included.
    pub timeout: Duration,
}

/// Whether to refresh a token that is still fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only when it expires within the skew.
    IfNeeded,
    /// Always (unless another process refreshed while waiting for the lock).
    Force,
}

/// How a request for a usable token was satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The stored token was fresh enough; nothing was sent.
    StillFresh,
    /// This call spent the refresh token and stored the new credential.
    Refreshed,
    /// Another process refreshed while this one waited; its token is used.
    Adopted,
    /// The refresh failed for a reason that may pass, but the stored token has not expired yet,
    /// so it is used for now.
    Deferred,
}

/// What is known about the stored credential. Never carries a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Expiry in Unix milliseconds, when known and representable.
    pub expires_at_ms: Option<i64>,
    /// Past its expiry.
    pub expired: bool,
    /// Expires within the skew (or expiry unknown).
    pub needs_refresh: bool,
    /// A refresh token is stored.
    pub has_refresh_token: bool,
    /// Subscription type.
    pub subscription_type: Option<String>,
    /// Rate-limit tier.
    pub rate_limit_tier: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

/// The refresh logic over its three ports.
pub struct Refresher<S, H, C> {
    /// The credential store.
    pub store: S,
    /// Outgoing HTTP.
    pub http: H,
    /// Time.
    pub clock: C,
    /// Endpoint and timing.
    pub settings: Settings,
}

impl<S: Store, H: Http, C: Clock> Refresher<S, H, C> {
    /// Describe the stored credential; no lock, no network.
    pub fn status(&mut self) -> Result<Status, AuthFailure> {
        let (_, view) = self.load()?;
        Ok(self.status_of(&view))
    }

    /// The status of `view` at the current time.
    pub fn status_of(&self, view: &OAuthView) -> Status {
        let now = self.clock.now_ms();
        Status {
            expires_at_ms: view.expires_at_ms(),
            expired: view.expired(now),
            needs_refresh: view.needs_refresh(now, self.settings.skew_ms),
            has_refresh_token: view.refresh_token.is_some(),
            subscription_type: view.subscription_type.clone(),
            rate_limit_tier: view.rate_limit_tier.clone(),
            scopes: view.scopes.clone(),
        }
    }

    /// A usable credential: the stored one when fresh, else a refreshed one.
    pub fn ensure(&mut self, mode: Mode) -> Result<(OAuthView, Outcome), AuthFailure> {
        let (_, seen) = self.load()?;
        if mode == Mode::IfNeeded && !seen.needs_refresh(self.clock.now_ms(), self.settings.skew_ms)
        {
            return Ok((seen, Outcome::StillFresh));
        }
        match self.refresh(mode, &seen) {
            // A token that has not expired yet is still worth more than an error, as long as the
            // failure may pass on its own.
            Err(failure)
                if mode == Mode::IfNeeded
                    && may_pass(failure.cause)
                    && !seen.expired(self.clock.now_ms()) =>
            {
                Ok((seen, Outcome::Deferred))
            }
            other => other,
        }
    }

    fn refresh(
        &mut self,
        mode: Mode,
        seen: &OAuthView,
    ) -> Result<(OAuthView, Outcome), AuthFailure> {
        if seen.refresh_token.is_none() {
            return Err(refresh_token_missing());
        }
        let mut conflicts = 0;
        let _lock = loop {
            match self.store.lock() {
                Ok(lock) => break lock,
                // A refresh finished while we waited: its result may be all we need.
                Err(StoreError::Conflict(_)) if conflicts < MAX_LOCK_CONFLICTS => {
                    conflicts += 1;
                    let (_, current) = self.load()?;
                    if self.satisfied_by(mode, seen, &current) {
                        return Ok((current, Outcome::Adopted));
                    }
                }
                Err(e) => return Err(store_failure(&e, "take the refresh lock")),
            }
        };

        // Whoever held the lock before us may have refreshed already.
        let (doc, current) = self.load()?;
        if self.satisfied_by(mode, seen, &current) {
            return Ok((current, Outcome::Adopted));
        }
        let Some(spent) = current.refresh_token.clone() else {
            return Err(refresh_token_missing());
        };

        let grant = match self.exchange(&spent) {
            Ok(grant) => grant,
            Err(failure) if failure.cause == Cause::GrantRejected => {
                // A writer that ignores our lock (an old CLI) may have rotated the token.
                return match self.rotated_by_someone_else(&spent) {
                    Some(theirs) => Ok((theirs, Outcome::Adopted)),
                    None => Err(failure),
                };
            }
            Err(failure) => return Err(failure),
        };

        let text = doc
            .with_grant(&grant, self.clock.now_ms())
            .map_err(|e| document_failure(&e))?;
        // The same check just before writing: never overwrite a credential newer than ours.
        if let Some(theirs) = self.rotated_by_someone_else(&spent) {
            return Ok((theirs, Outcome::Adopted));
        }
        self.store
            .save(&text)
            .map_err(|e| store_failure(&e, "save the refreshed credential"))?;
        let saved = Document::parse(&text)
            .and_then(|d| d.oauth())
            .map_err(|e| document_failure(&e))?;
        Ok((saved, Outcome::Refreshed))
    }

    /// Whether `current` answers a request made after seeing `seen`: it is fresh, and for a
    /// forced refresh it was rotated since.
    fn satisfied_by(&self, mode: Mode, seen: &OAuthView, current: &OAuthView) -> bool {
        let fresh = !current.needs_refresh(self.clock.now_ms(), self.settings.skew_ms);
        fresh && (mode == Mode::IfNeeded || current.refresh_token != seen.refresh_token)
    }

    /// The stored credential, when its refresh token is no longer `spent` and it is fresh.
    fn rotated_by_someone_else(&mut self, spent: &str) -> Option<OAuthView> {
        let (_, now_stored) = self.load().ok()?;
        let rotated = now_stored.refresh_token.as_deref() != Some(spent);
        let fresh = !now_stored.needs_refresh(self.clock.now_ms(), self.settings.skew_ms);
        (rotated && fresh).then_some(now_stored)
    }

    /// One refresh-token exchange, retrying what may pass, within the timeout.
    fn exchange(&mut self, refresh_token: &str) -> Result<Grant, AuthFailure> {
        let started = self.clock.elapsed();
        let budget = self.settings.timeout;
        let body = grant_body(refresh_token, self.settings.client_id.as_deref());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = budget.saturating_sub(self.clock.elapsed().saturating_sub(started));
            if remaining.is_zero() {
                return Err(unavailable(format!(
                    "the token endpoint did not answer within the {} refresh timeout",
                    human(budget)
                )));
            }
            let (why, asked_wait) =
                match self
                    .http
                    .post_json(&self.settings.token_url, &body, remaining)
                {
                    Ok(answer) => match interpret(&answer) {
                        Ok(grant) => return Ok(grant),
                        Err(Rejection::Unavailable {
                            status,
                            retry_after,
                        }) => (format!("HTTP {status}"), retry_after),
                        Err(rejection) => return Err(final_rejection(rejection)),
                    },
                    Err(HttpFailure::TooLarge { limit }) => {
                        return Err(AuthFailure::new(
                            Cause::AnswerInvalid,
                            format!("the token endpoint's answer is larger than {limit} bytes"),
                        ));
                    }
                    Err(HttpFailure::Unreachable(why)) => (why, None),
                };
            if attempt >= MAX_ATTEMPTS {
                return Err(unavailable(format!(
                    "the token endpoint is unavailable ({why}) after {attempt} attempts"
                )));
            }
            let wait = asked_wait.unwrap_or_else(|| self.backoff(attempt));
            let spent = self.clock.elapsed().saturating_sub(started);
            if spent + wait >= budget {
                return Err(unavailable(format!(
                    "the token endpoint is unavailable ({why}); waiting {} more would pass the {} refresh timeout",
                    human(wait),
                    human(budget)
                )));
            }
            self.clock.sleep(wait);
        }
    }

    /// Exponential backoff with jitter; the monotonic clock's low bits are random enough to
    /// spread processes that failed together.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = BASE_BACKOFF.saturating_mul(1 << (attempt - 1).min(8));
        let jitter_permille = u64::from(self.clock.elapsed().subsec_nanos() % 500);
        base + base.mul_f64(jitter_permille as f64 / 1000.0)
    }

    fn load(&mut self) -> Result<(Document, OAuthView), AuthFailure> {
        let text = self.store.load().map_err(|e| match e {
            StoreError::NotFound => AuthFailure::new(
                Cause::CredentialsMissing,
                "no Claude Code credentials are stored; run `claude login` first",
            ),
            other => store_failure(&other, "read the credential store"),
        })?;
        let doc = Document::parse(&text).map_err(|e| document_failure(&e))?;
        let view = doc.oauth().map_err(|e| document_failure(&e))?;
        Ok((doc, view))
    }
}

/// Failures that may pass without anyone acting: the stored token can bridge them.
const fn may_pass(cause: Cause) -> bool {
    matches!(
        cause,
        Cause::EndpointUnavailable | Cause::AnswerInvalid | Cause::LockTimeout
    )
}

/// The JSON body of the grant; `client_id` is left out when none is configured.
pub fn grant_body(refresh_token: &str, client_id: Option<&str>) -> String {
    let mut body = Map::new();
    body.insert("grant_type".into(), Value::String("refresh_token".into()));
    body.insert("refresh_token".into(), Value::String(refresh_token.into()));
    if let Some(id) = client_id {
        body.insert("client_id".into(), Value::String(id.into()));
    }
    Value::Object(body).to_string()
}

fn final_rejection(rejection: Rejection) -> AuthFailure {
    match rejection {
        Rejection::GrantRejected { detail } => AuthFailure::new(
            Cause::GrantRejected,
            format!(
                "the token endpoint rejected the refresh token ({detail}); run `claude login` to sign in again"
            ),
        ),
        Rejection::Refused { detail, .. } => AuthFailure::new(
            Cause::EndpointRefused,
            format!("the token endpoint refused the refresh request ({detail})"),
        ),
        Rejection::Invalid { problem } => AuthFailure::new(
            Cause::AnswerInvalid,
            format!("the token endpoint's answer is unusable: {problem}"),
        ),
        Rejection::Unavailable { status, .. } => {
            unavailable(format!("the token endpoint is unavailable (HTTP {status})"))
        }
    }
}

fn unavailable(message: String) -> AuthFailure {
    AuthFailure::new(Cause::EndpointUnavailable, message)
}

fn refresh_token_missing() -> AuthFailure {
    AuthFailure::new(
        Cause::RefreshTokenMissing,
        "the access token has expired and the credential holds no refresh token; run `claude login` to sign in again",
    )
}

fn document_failure(error: &DocumentError) -> AuthFailure {
    match error {
        DocumentError::NoOAuthSection => AuthFailure::new(
            Cause::OAuthSectionMissing,
            "the credential document has no `claudeAiOauth` section; run `claude login` first",
        ),
        other => AuthFailure::new(Cause::DocumentInvalid, other.to_string()),
    }
}

fn store_failure(error: &StoreError, doing: &str) -> AuthFailure {
    match error {
        StoreError::NotFound => AuthFailure::new(
            Cause::StoreFailed,
            format!("could not {doing}: the credential disappeared"),
        ),
        StoreError::Corrupt(why) => AuthFailure::new(
            Cause::DocumentInvalid,
            format!("the stored credential is unusable: {why}"),
        ),
        StoreError::LockTimeout(why) => AuthFailure::new(Cause::LockTimeout, why.clone()),
        StoreError::Unavailable(why) | StoreError::ReadOnly(why) | StoreError::Conflict(why) => {
            AuthFailure::new(Cause::StoreFailed, format!("could not {doing}: {why}"))
        }
    }
}

/// A duration as people write it: `30s`, `250ms`, `2m`.
pub fn human(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else if d.as_secs() < 120 || !d.as_secs().is_multiple_of(60) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}m", d.as_secs() / 60)
    }
}

#[cfg(test)]
mod tests;
