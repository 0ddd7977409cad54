//! The refresh decisions, independent of WIT: when to refresh, under which lock, what to do with
//! each answer, when to retry, and what to write back.
//!
//! The invariant kept here: **from the moment a refresh request may have reached the endpoint,
//! the tokens it answers reach durable storage, or a rescue place the next process adopts —
//! never discarded.** A refresh token is single-use; once rotated, the answer is the only live
//! login. So the write is prepared before the request (a failure there costs nothing), every 2xx
//! that carries a token is kept however odd the rest, and the commit after the answer is made
//! whatever else fails (the host falls back to a rescue place when the store refuses it).

use std::time::Duration;

use serde_json::{Map, Value};

use crate::answer::{Grant, Rejection, interpret};
use crate::document::{Document, DocumentError, OAuthView};
use crate::failure::{AuthFailure, Cause};
use crate::ports::{Clock, GrantRequest, HeldLock, Http, HttpFailure, Store, StoreError};

/// Attempts per refresh exchange when the endpoint is unavailable (5xx, 429, unreachable).
pub const MAX_ATTEMPTS: u32 = 4;
/// How often `lock` may answer "a refresh finished while you waited" before it counts as a
/// store failure.
pub const MAX_LOCK_CONFLICTS: u32 = 3;
/// Backoff before the second attempt; it doubles for each further attempt, plus up to 50 % jitter.
pub const BASE_BACKOFF: Duration = Duration::from_millis(250);
/// The scopes the `claude` CLI (2.1.332) asks for when it refreshes a first-party login, in
/// its order; also what it asks for a login of another client that records none.
pub const CLI_SCOPES: [&str; 6] = [
    "user:profile",
    "user:inference",
    "user:sessions:claude_code",
    "user:mcp_servers",
    "user:file_upload",
    "user:plugins",
];
/// Scopes a first-party login keeps asking for when it records them (granted on request).
pub const KEPT_SCOPES: [&str; 3] = [
    "user:projects:read",
    "user:projects:write",
    "user:privacy_consents:write",
];
/// The `User-Agent` the `claude` CLI (2.1.197) sends with its refresh request; ours by default.
pub const DEFAULT_USER_AGENT: &str = "axios/1.15.2";
/// Room prepared on top of the current document's size: rotated tokens may be longer.
pub const WRITE_MARGIN: u64 = 4096;

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
    /// `User-Agent` of the refresh request.
    pub user_agent: String,
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
    /// The document holds a token; `false` is the CLI's logged-out shape.
    pub logged_in: bool,
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
    /// The login's hard deadline in Unix milliseconds (`refreshTokenExpiresAt`).
    pub login_expires_at_ms: Option<i64>,
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
        let (_, view, _) = self.load()?;
        Ok(self.status_of(&view))
    }

    /// The status of `view` at the current time.
    pub fn status_of(&self, view: &OAuthView) -> Status {
        let now = self.clock.now_ms();
        Status {
            logged_in: view.logged_in(),
            expires_at_ms: view.expires_at_ms(),
            expired: view.expired(now),
            needs_refresh: view.needs_refresh(now, self.settings.skew_ms),
            has_refresh_token: view.refresh_token.is_some(),
            subscription_type: view.subscription_type.clone(),
            rate_limit_tier: view.rate_limit_tier.clone(),
            scopes: view.scopes.clone(),
            login_expires_at_ms: view.login_expires_at_ms,
        }
    }

    /// A usable credential: the stored one when fresh, else a refreshed one.
    pub fn ensure(&mut self, mode: Mode) -> Result<(OAuthView, Outcome), AuthFailure> {
        let (_, seen, _) = self.load()?;
        if !seen.logged_in() {
            return Err(logged_out(&seen));
        }
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

    /// Refresh under the store's lock: take it, adopt what another process did meanwhile,
    /// prepare the write, spend the refresh token, keep the answer.
    fn refresh(
        &mut self,
        mode: Mode,
        seen: &OAuthView,
    ) -> Result<(OAuthView, Outcome), AuthFailure> {
        if seen.long_lived() {
            return Err(AuthFailure::new(
                Cause::NotRefreshable,
                "this credential is a long-lived token without a refresh token (as `claude setup-token` makes): it is used as it is and cannot be refreshed",
            ));
        }
        if seen.refresh_token.is_none() {
            return Err(refresh_token_missing());
        }
        let mut lock = match self.take_lock(mode, seen)? {
            Locked::Held(lock) => lock,
            Locked::Adopted(current) => return Ok((current, Outcome::Adopted)),
        };

        // Whoever held the lock before us may have refreshed already.
        let (doc, current, size) = self.load()?;
        if !current.logged_in() {
            return Err(logged_out(&current));
        }
        if self.satisfied_by(mode, seen, &current) {
            return Ok((current, Outcome::Adopted));
        }
        let Some(spent) = current.refresh_token.clone() else {
            return Err(refresh_token_missing());
        };

        // Nothing is spent yet: whatever would stop the write must show now.
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        lock.prepare(size.saturating_add(WRITE_MARGIN))
            .map_err(|e| {
                store_failure(
                    &e,
                    "get ready to save a refreshed credential (no refresh was attempted)",
                )
            })?;
        match self.spend(&spent, &current)? {
            Spent::Granted(grant) => self.keep(&mut lock, &doc, &spent, &grant),
            Spent::RotatedElsewhere(theirs) => Ok((theirs, Outcome::Adopted)),
        }
    }

    /// The store's refresh lock, or the login a refresh that finished while we waited left,
    /// when it is all `mode` needs.
    fn take_lock(&mut self, mode: Mode, seen: &OAuthView) -> Result<Locked<S::Lock>, AuthFailure> {
        let mut conflicts = 0;
        loop {
            match self.store.lock() {
                Ok(lock) => return Ok(Locked::Held(lock)),
                // A refresh finished while we waited: its result may be all we need.
                Err(StoreError::Conflict(_)) if conflicts < MAX_LOCK_CONFLICTS => {
                    conflicts += 1;
                    let (_, current, _) = self.load()?;
                    if self.satisfied_by(mode, seen, &current) {
                        return Ok(Locked::Adopted(current));
                    }
                }
                Err(e) => return Err(store_failure(&e, "take the refresh lock")),
            }
        }
    }

    /// Present `spent`, the stored refresh token of `current`, to the endpoint.
    fn spend(&mut self, spent: &str, current: &OAuthView) -> Result<Spent, AuthFailure> {
        let (request, stored_scopes) = self.grant_request(spent, current);
        match self.exchange(&request, stored_scopes.as_ref()) {
            Ok(grant) => Ok(Spent::Granted(grant)),
            Err(failure) if failure.cause == Cause::GrantRejected => {
                // A writer that ignores our lock (an old CLI) may have rotated the token.
                match self.rotated_by_someone_else(spent) {
                    Some(theirs) => Ok(Spent::RotatedElsewhere(theirs)),
                    None => Err(failure),
                }
            }
            Err(failure) => Err(failure),
        }
    }

    /// Store `grant`, which spent `spent`: from here on it is the login's only future, so it is
    /// kept whatever else fails. The document written is the one stored now, re-read under the
    /// store's write lock (other writers' changes survive), with the grant applied.
    fn keep(
        &mut self,
        lock: &mut S::Lock,
        read_under_lock: &Document,
        spent: &str,
        grant: &Grant,
    ) -> Result<(OAuthView, Outcome), AuthFailure> {
        let now = self.clock.now_ms();
        let latest = lock
            .load_for_write()
            .ok()
            .and_then(|text| Document::parse(&text).ok());
        // As the CLI's compare-and-set: the grant goes only over the login it spent (or the
        // CLI's blank of it).
        let base = match latest.map(|doc| (doc.oauth(), doc)) {
            // Never overwrite another login someone stored meanwhile (a writer that ignores
            // the refresh lock, or a new `claude login`), fresh or not: its refresh token is
            // its own, and the next use refreshes it.
            Some((Ok(view), _))
                if view
                    .refresh_token
                    .as_deref()
                    .is_some_and(|stored| stored != spent) =>
            {
                return Ok((view, Outcome::Adopted));
            }
            Some((Ok(_), doc)) => doc,
            // Logged out meanwhile (`/logout` deletes the section): not logged back in.
            Some((Err(DocumentError::NoOAuthSection), _)) => {
                return Err(AuthFailure::new(
                    Cause::OAuthSectionMissing,
                    "not logged in: the login was removed while it was being refreshed (a logout); run `claude login`",
                ));
            }
            // Unreadable, mistyped or gone under the write lock: what was read under the
            // refresh lock (a torn file is not a logout).
            Some((Err(_), _)) | None => read_under_lock.clone(),
        };
        let text = base
            .with_grant(grant, now)
            .or_else(|_| read_under_lock.with_grant(grant, now))
            .map_err(|e| document_failure(&e))?;
        lock.commit(&text)
            .map_err(|e| store_failure(&e, "keep the refreshed credential anywhere"))?;
        let saved = Document::parse(&text)
            .and_then(|d| d.oauth())
            .map_err(|e| document_failure(&e))?;
        if grant.access_token.is_none() {
            return Err(AuthFailure::new(
                Cause::AnswerInvalid,
                format!(
                    "the token endpoint's answer had no usable access token ({}); the rotated refresh token was saved and the next use refreshes again",
                    grant.oddities.join("; ")
                ),
            ));
        }
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
        let (_, now_stored, _) = self.load().ok()?;
        let rotated = now_stored.refresh_token.as_deref() != Some(spent);
        let fresh = !now_stored.needs_refresh(self.clock.now_ms(), self.settings.skew_ms);
        (rotated && fresh).then_some(now_stored)
    }

    /// The refresh request for `refresh_token` of the login `view`, as the `claude` CLI
    /// (2.1.332) makes it, and the one to make instead should the endpoint refuse its scopes. A
    /// first-party login (it records `user:inference` or a subscription type, and no client of
    /// its own) asks for the CLI's scopes and those of [`KEPT_SCOPES`] it records, and, when it
    /// records `user:inference`, asks again with its recorded scopes on `invalid_scope`; a login
    /// of another client (`clientId`) asks, for that client, for the scopes it records (the
    /// CLI's when none).
    fn grant_request(
        &self,
        refresh_token: &str,
        view: &OAuthView,
    ) -> (GrantRequest, Option<GrantRequest>) {
        let records = |scope: &str| view.scopes.iter().any(|s| s == scope);
        let first_party = (records("user:inference") || view.subscription_type.is_some())
            && view.client_id.is_none();
        let scope = if first_party {
            let mut asked: Vec<&str> = CLI_SCOPES.to_vec();
            // In the order the login records them, as the CLI appends them.
            for kept in view.scopes.iter().map(String::as_str) {
                if KEPT_SCOPES.contains(&kept) && !asked.contains(&kept) {
                    asked.push(kept);
                }
            }
            asked.join(" ")
        } else if view.scopes.is_empty() {
            CLI_SCOPES.join(" ")
        } else {
            view.scopes.join(" ")
        };
        let client_id = view
            .client_id
            .as_deref()
            .or(self.settings.client_id.as_deref());
        let request = |scope: &str| GrantRequest {
            url: self.settings.token_url.clone(),
            body: grant_body(refresh_token, client_id, scope),
            user_agent: self.settings.user_agent.clone(),
        };
        let fallback = (first_party && records("user:inference"))
            .then(|| request(&view.scopes.join(" ")))
            .filter(|fallback| fallback.body != request(&scope).body);
        (request(&scope), fallback)
    }

    /// One refresh-token exchange, retrying what may pass, within the timeout; asked again
    /// once with `stored_scopes` when the endpoint refuses the scopes (it rotated nothing).
    fn exchange(
        &mut self,
        request: &GrantRequest,
        stored_scopes: Option<&GrantRequest>,
    ) -> Result<Grant, AuthFailure> {
        let mut request = request;
        let mut stored_scopes = stored_scopes;
        let started = self.clock.elapsed();
        let budget = self.settings.timeout;
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
            let (why, asked_wait) = match self.http.post_json(request, remaining) {
                Ok(answer) => match interpret(&answer) {
                    Ok(grant) => return Ok(grant),
                    Err(Rejection::ScopeRefused { .. }) if stored_scopes.is_some() => {
                        request = stored_scopes.take().unwrap_or(request);
                        attempt -= 1;
                        continue;
                    }
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
                Err(HttpFailure::Untrusted(why)) => {
                    return Err(AuthFailure::new(
                        Cause::EndpointRefused,
                        format!("the token endpoint's TLS certificate is not trusted ({why})"),
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
            if spent.saturating_add(wait) >= budget {
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

    /// The stored document, its OAuth section, and the length of its text.
    fn load(&mut self) -> Result<(Document, OAuthView, usize), AuthFailure> {
        let text = self.store.load().map_err(|e| match e {
            StoreError::NotFound => AuthFailure::new(
                Cause::CredentialsMissing,
                "not logged in: no Claude Code credentials are stored; run `claude login`",
            ),
            other => store_failure(&other, "read the credential store"),
        })?;
        let doc = Document::parse(&text).map_err(|e| document_failure(&e))?;
        let view = doc.oauth().map_err(|e| document_failure(&e))?;
        Ok((doc, view, text.len()))
    }
}

/// Failures that may pass without anyone acting: the stored token can bridge them.
const fn may_pass(cause: Cause) -> bool {
    matches!(
        cause,
        Cause::EndpointUnavailable | Cause::AnswerInvalid | Cause::LockTimeout
    )
}

/// The JSON body of the grant, its fields in the CLI's order; `client_id` is left out when none
/// is configured.
pub fn grant_body(refresh_token: &str, client_id: Option<&str>, scope: &str) -> String {
    let mut body = Map::new();
    body.insert("grant_type".into(), Value::String("refresh_token".into()));
    body.insert("refresh_token".into(), Value::String(refresh_token.into()));
    if let Some(id) = client_id {
        body.insert("client_id".into(), Value::String(id.into()));
    }
    body.insert("scope".into(), Value::String(scope.into()));
    Value::Object(body).to_string()
}

fn final_rejection(rejection: Rejection) -> AuthFailure {
    match rejection {
        // The CLI's reading of this description: the login reached its time limit.
        Rejection::GrantRejected { detail } if detail.contains("Refresh token expired") => {
            AuthFailure::new(
                Cause::GrantRejected,
                format!(
                    "the login reached its time limit: the token endpoint rejected the refresh token ({detail}); run `claude login` to sign in again"
                ),
            )
        }
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
        Rejection::ScopeRefused { detail } => AuthFailure::new(
            Cause::EndpointRefused,
            format!("the token endpoint refused the scopes asked for ({detail})"),
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

/// The words a logged-out failure starts with when the CLI ended the login at its deadline
/// (`loginEnded: time_limit`); the host tells that case by them.
pub const TIME_LIMIT: &str = "not logged in: the login reached its time limit";

fn logged_out(view: &OAuthView) -> AuthFailure {
    if view.login_ended.as_deref() == Some("time_limit") {
        return AuthFailure::new(
            Cause::LoggedOut,
            format!(
                "{TIME_LIMIT} (the `claude` CLI ended it when its refresh token expired); run `claude login`"
            ),
        );
    }
    AuthFailure::new(
        Cause::LoggedOut,
        "not logged in: the credential holds no token (the `claude` CLI's logged-out state); run `claude login`",
    )
}

/// How [`Refresher::take_lock`] ended.
enum Locked<L> {
    /// The store's refresh lock, held.
    Held(L),
    /// A refresh finished while we waited, and its login is all that was needed.
    Adopted(OAuthView),
}

/// How presenting the refresh token ended, short of a failure.
enum Spent {
    /// The endpoint answered new tokens.
    Granted(Grant),
    /// The endpoint refused a token another writer had already rotated; its login.
    RotatedElsewhere(OAuthView),
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
            "not logged in: the credential document holds no `claudeAiOauth` login (as `claude auth logout` leaves it); run `claude login`",
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
