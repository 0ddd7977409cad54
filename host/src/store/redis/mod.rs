//! [`RedisCredentialStore`]: one login for a fleet, kept in Redis, sealed at rest, refreshed by
//! one machine at a time under a fenced lease.
//!
//! Keys of the login named `NAME` (all in the hash tag `{NAME}`, so scripts run in one slot of
//! a Redis Cluster):
//!
//! | key | holds |
//! | --- | --- |
//! | `{NAME}:login` | a hash: `document` (the sealed document), `generation` (the fencing counter, one more on every write), `epoch` (random, set by the first write: a login imported anew after Redis lost its data is another login) |
//! | `{NAME}:lease` | the refresh lease: the holder's random owner id, with an expiry |
//! | `{NAME}:answer` | a hash: the note, before a refresh request leaves, of the refresh token it presents (`spent`, a digest), who presents it (`owner`), when (`at`) and on which `generation`; then `answer`, the token endpoint's answer, sealed, kept the moment it was read; spent by the next write |
//! | `{NAME}:spent` | a list of the digests of the last 64 refresh tokens presented: a login brought back from before one of them was spent is never refreshed with it |

mod answer;
mod checks;
mod connection;
mod lease;
mod marks;
mod scripts;
mod seal;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::exchange::ExchangeLog;
use super::{CredentialStore, Fingerprint, RefreshLock, parse_document, render_document};
use crate::config::DEFAULT_REFRESH_TIMEOUT;
use crate::credential::CredentialFile;
use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};
use connection::Connection;
use lease::Lease;
use seal::{Binding, SealKey, Sealing};

pub use seal::SECRET_LEN as STORE_SECRET_LEN;

/// The store key's name when none is given.
pub const DEFAULT_STORE_KEY: &str = "claude-code-auth";

/// How long past a lease's length a waiter keeps polling: the last poll before the lease lapsed
/// and the one after.
const LEASE_LAPSE: Duration = Duration::from_secs(2);

/// A [`CredentialStore`] in Redis (`redis://` or `rediss://`, an ACL user and password taken
/// from the URL and never shown). Every machine that refreshes the login takes the same lease,
/// so one refresh grant is spent at a time across the fleet, and a write succeeds only for the
/// lease holder over the generation it read.
///
/// ```no_run
/// # fn main() -> entelix_auth_claude_code::ClaudeCodeAuthResult<()> {
/// use entelix_auth_claude_code::RedisCredentialStore;
/// let store = RedisCredentialStore::builder("rediss://fleet:PASSWORD@redis.internal:6380/0")
///     .key("claude-code-auth")
///     .secret_file("/etc/claude-code-auth/store.key")
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisCredentialStore {
    inner: Arc<Inner>,
}

/// Builds a [`RedisCredentialStore`]; see [`RedisCredentialStore::builder`].
#[derive(Debug)]
#[must_use]
pub struct RedisStoreBuilder {
    url: String,
    name: String,
    secret: Option<PathBuf>,
    previous: Vec<PathBuf>,
    ca_file: Option<PathBuf>,
    plaintext: bool,
    refresh_budget: Duration,
    lease: Option<Duration>,
    state_dir: Option<PathBuf>,
}

pub(super) struct Inner {
    connection: Connection,
    keys: Keys,
    name: String,
    /// The URL without user or password, and the key: for messages.
    shown: String,
    sealing: Sealing,
    lease: Duration,
    refresh_budget: Duration,
    /// The last fingerprint read, answered while Redis cannot be reached so a header still valid
    /// in memory keeps being served.
    last_fingerprint: Mutex<Option<Fingerprint>>,
    /// This machine's high-water mark of the login.
    marks: marks::Marks,
    /// What was found of Redis's settings, once per process.
    checked: tokio::sync::OnceCell<checks::Checked>,
}

struct Keys {
    login: String,
    lease: String,
    answer: String,
    spent: String,
}

impl RedisCredentialStore {
    /// A store at `url` (`redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            name: DEFAULT_STORE_KEY.to_owned(),
            secret: None,
            previous: Vec::new(),
            ca_file: None,
            plaintext: false,
            refresh_budget: DEFAULT_REFRESH_TIMEOUT,
            lease: None,
            state_dir: None,
        }
    }

    /// The store key's name.
    pub fn key_name(&self) -> &str {
        &self.inner.name
    }

    /// Whether documents are sealed (a secret was given) rather than kept in plaintext.
    pub fn is_sealed(&self) -> bool {
        matches!(self.inner.sealing, Sealing::Sealed { .. })
    }

    /// The login a machine's high-water mark at `path` keeps — the newest this machine wrote —
    /// opened with this store's secret, to put back after Redis went back in time or lost it.
    /// `Ok(None)` when `path` holds no mark of this store's login.
    pub fn kept_login(
        &self,
        path: impl AsRef<std::path::Path>,
    ) -> ClaudeCodeAuthResult<Option<String>> {
        let path = path.as_ref();
        let Some(mark) = marks::read_at(path).filter(|mark| mark.location == self.inner.shown)
        else {
            return Ok(None);
        };
        let Some(newest) = mark.newest else {
            return Ok(None);
        };
        let invalid = |problem: String| ClaudeCodeAuthError::InvalidDocument {
            path: path.display().to_string(),
            problem,
        };
        let value = Zeroizing::new(
            seal::unhex(&newest.value)
                .ok_or_else(|| invalid("the kept login is not hex".into()))?,
        );
        let binding = Binding {
            name: &self.inner.name,
            generation: newest.generation,
        };
        let document = self.inner.sealing.open(&value, &binding).map_err(invalid)?;
        Ok(Some(document.to_string()))
    }
}

impl fmt::Debug for RedisCredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCredentialStore")
            .field("store", &self.inner.shown)
            .field("sealing", &self.inner.sealing)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// The store key's name (default [`DEFAULT_STORE_KEY`]): logins under different names are
    /// separate.
    pub fn key(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Seal documents under the 32-byte secret in the file at `path` (mode 0600 or stricter).
    pub fn secret_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.secret = Some(path.into());
        self
    }

    /// Also open documents sealed under the secret at `path`: a key change in progress. New
    /// writes use [`secret_file`](Self::secret_file)'s.
    pub fn previous_secret_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.previous.push(path.into());
        self
    }

    /// Also trust the CA certificates in the PEM file at `path` for a `rediss://` server (a
    /// private CA). The web PKI roots are always trusted, and the files `SSL_CERT_FILE` and
    /// `NODE_EXTRA_CA_CERTS` name, as for the token endpoint.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Keep documents in plaintext, tokens readable by anyone who can read Redis or its
    /// backups. Without a secret file and without this, [`build`](Self::build) refuses.
    pub fn plaintext(mut self) -> Self {
        self.plaintext = true;
        self
    }

    /// The longest a refresh exchange may take (the provider's refresh timeout; default 30 s).
    /// A holder sends its refresh only while its lease has more than this left.
    pub fn refresh_budget(mut self, budget: Duration) -> Self {
        self.refresh_budget = budget;
        self
    }

    /// The lease's length (default twice the refresh budget); it must exceed the budget.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Keep this machine's high-water mark of the login under `dir` (default: this crate's
    /// state directory, `$CLAUDE_CODE_AUTH_STATE_DIR` or `~/.local/state/entelix-auth-claude-code`).
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// The store. Nothing is contacted yet: a Redis that is down shows at the first call.
    pub fn build(self) -> ClaudeCodeAuthResult<RedisCredentialStore> {
        let shown = format!("{} key {}", shown_url(&self.url), self.name);
        if self.name.is_empty() || self.name.contains(['{', '}']) || self.name.len() > 200 {
            return Err(self
                .refused("the store key's name must be 1 to 200 bytes without `{` or `}`".into()));
        }
        let connection = self.connection()?;
        let sealing = self.sealing(&shown)?;
        let lease = self.lease_length()?;
        let marks = marks::Marks::new(&shown, self.state_dir.as_deref());
        Ok(RedisCredentialStore {
            inner: Arc::new(Inner {
                connection,
                keys: Keys {
                    login: format!("{{{}}}:login", self.name),
                    lease: format!("{{{}}}:lease", self.name),
                    answer: format!("{{{}}}:answer", self.name),
                    spent: format!("{{{}}}:spent", self.name),
                },
                name: self.name,
                shown,
                sealing,
                lease,
                refresh_budget: self.refresh_budget,
                last_fingerprint: Mutex::new(None),
                marks,
                checked: tokio::sync::OnceCell::new(),
            }),
        })
    }

    /// The builder's setting is refused, with `reason`.
    fn refused(&self, reason: String) -> ClaudeCodeAuthError {
        ClaudeCodeAuthError::StoreInvalid {
            store: shown_url(&self.url),
            reason,
        }
    }

    /// The connection to the URL, trusting the CA file (read now, so a wrong file shows when
    /// the store is made).
    fn connection(&self) -> ClaudeCodeAuthResult<Connection> {
        let ca_files: Vec<PathBuf> = self.ca_file.iter().cloned().collect();
        if !ca_files.is_empty() {
            if !self.url.to_ascii_lowercase().starts_with("rediss://") {
                return Err(self.refused("a CA file is for rediss:// (TLS) URLs only".into()));
            }
            crate::tls::connector(&ca_files).map_err(|problem| {
                self.refused(format!(
                    "its CA file `{}` is unusable: {problem}",
                    ca_files[0].display()
                ))
            })?;
        }
        Connection::new(&self.url, ca_files).ok_or_else(|| {
            self.refused(
                "not a Redis URL: redis://[user:password@]host[:port][/db], or rediss:// for TLS"
                    .into(),
            )
        })
    }

    /// How the login is kept: sealed under the secret files, or plaintext when asked for.
    fn sealing(&self, shown: &str) -> ClaudeCodeAuthResult<Sealing> {
        match (&self.secret, self.plaintext) {
            (Some(path), _) => Ok(Sealing::Sealed {
                current: SealKey::from_file(path)?,
                previous: self
                    .previous
                    .iter()
                    .map(|p| SealKey::from_file(p))
                    .collect::<Result<_, _>>()?,
            }),
            (None, true) => Ok(Sealing::Plaintext),
            (None, false) => Err(ClaudeCodeAuthError::StoreSecret {
                path: shown.to_owned(),
                problem: "none was given, and logins are sealed at rest unless plaintext is asked for explicitly (a secret file: RedisStoreBuilder::secret_file, the CLI's --store-secret-file)".into(),
            }),
        }
    }

    /// The lease: as set, else twice the refresh budget; always longer than the budget.
    fn lease_length(&self) -> ClaudeCodeAuthResult<Duration> {
        let lease = self.lease.unwrap_or(self.refresh_budget * 2);
        if lease <= self.refresh_budget {
            return Err(self.refused(format!(
                "the lease ({}s) must be longer than the refresh budget ({}s)",
                lease.as_secs(),
                self.refresh_budget.as_secs()
            )));
        }
        Ok(lease)
    }
}

impl Inner {
    /// The error for a failed Redis call: refused for credentials or permissions Redis will
    /// not take (retrying will not help), unreachable otherwise.
    fn failed(&self, error: &redis::RedisError) -> ClaudeCodeAuthError {
        use redis::{ErrorKind, ServerErrorKind};
        let store = self.shown.clone();
        let said = error.to_string();
        if said.contains("invalid peer certificate") {
            return ClaudeCodeAuthError::StoreRefused {
                store,
                message: format!(
                    "its TLS certificate is not trusted ({}); add its CA (RedisStoreBuilder::ca_file, the CLI's --store-ca-file, or SSL_CERT_FILE)",
                    said.trim_start_matches("invalid peer certificate: ")
                ),
            };
        }
        // A key of this login holding another kind of value (written by someone else, or a
        // name shared with another application): retrying will not help.
        if error.code() == Some("WRONGTYPE")
            || said.contains("WRONGTYPE")
            || matches!(
                error.kind(),
                ErrorKind::UnexpectedReturnType | ErrorKind::Parse
            )
        {
            return ClaudeCodeAuthError::StoreRefused {
                store,
                message: format!(
                    "a key of this login ({}, {}) holds another kind of value than this store writes; it was not written by it (another application's key, a wrong --store-key?)",
                    self.keys.login, self.keys.lease
                ),
            };
        }
        match error.kind() {
            ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm) => {
                ClaudeCodeAuthError::StoreRefused {
                    store,
                    message: describe(error),
                }
            }
            _ => ClaudeCodeAuthError::StoreUnreachable {
                store,
                message: describe(error),
            },
        }
    }

    /// The stored generation (0: no login).
    async fn generation(&self) -> ClaudeCodeAuthResult<u64> {
        let generation: Option<String> = self
            .connection
            .query(redis::cmd("HGET").arg(&self.keys.login).arg("generation"))
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(generation_of(generation))
    }

    /// The stored document, opened with the generation it is bound to — unless Redis went back
    /// in time or lost the login this machine saw (see [`marks`]).
    async fn document(&self) -> ClaudeCodeAuthResult<Option<Zeroizing<String>>> {
        self.checked().await?;
        let (generation, epoch, value): (Option<String>, Option<String>, Option<Vec<u8>>) = self
            .connection
            .query(
                redis::cmd("HMGET")
                    .arg(&self.keys.login)
                    .arg("generation")
                    .arg("epoch")
                    .arg("document"),
            )
            .await
            .map_err(|e| self.failed(&e))?;
        let generation = match value {
            Some(_) => generation_of(generation),
            None => 0,
        };
        match self.marks.seen(epoch.as_deref(), generation) {
            marks::Compared::Current => {}
            marks::Compared::Older { seen } => {
                return Err(ClaudeCodeAuthError::StoreRolledBack {
                    store: self.shown.clone(),
                    found: generation,
                    seen,
                    spent: false,
                    kept: self.kept(),
                });
            }
            marks::Compared::Gone { seen } => {
                return Err(ClaudeCodeAuthError::StoreLost {
                    store: self.shown.clone(),
                    seen,
                    kept: self.kept(),
                });
            }
        }
        let Some(value) = value.map(Zeroizing::new) else {
            return Ok(None);
        };
        let binding = Binding {
            name: &self.name,
            generation,
        };
        self.sealing
            .open(&value, &binding)
            .map(Some)
            .map_err(|problem| ClaudeCodeAuthError::InvalidDocument {
                path: self.shown.clone(),
                problem,
            })
    }

    /// Write `document` under `lease` as the next generation; then wait, where Redis has them,
    /// for a replica and the append-only file to have it, and raise this machine's mark.
    async fn write(&self, lease: &lease::LeaseState, document: &str) -> ClaudeCodeAuthResult<()> {
        let checked = self.checked().await?;
        let generation = lease.generation() + 1;
        let binding = Binding {
            name: &self.name,
            generation,
        };
        let value = Zeroizing::new(self.sealing.seal(document, &binding)?);
        let epoch = lease.save(&value, &random_hex(16)?).await?;
        self.marks.wrote(epoch.as_deref(), generation, &value);
        self.make_durable(checked).await;
        Ok(())
    }

    /// What this machine kept of the newest login, for a message.
    fn kept(&self) -> String {
        let newest = self.marks.read().and_then(|mark| mark.newest);
        match (newest, self.marks.path()) {
            (Some(newest), Some(path)) => format!(
                "The newest login this machine wrote (generation {}) is kept, sealed as in Redis, in {}; once Redis is looked at, `claude-code-auth --store … import {} --force` puts it back",
                newest.generation,
                path.display(),
                path.display()
            ),
            _ => "This machine wrote no newer login; one of the fleet's machines may have (their marks are under the state directory's redis/), else `claude login` and import again".into(),
        }
    }
}

#[async_trait]
impl CredentialStore for RedisCredentialStore {
    async fn load(&self) -> ClaudeCodeAuthResult<Option<CredentialFile>> {
        match self.inner.document().await? {
            Some(document) => parse_document(&document, || self.location()).map(Some),
            None => Ok(None),
        }
    }

    async fn save(&self, file: &CredentialFile) -> ClaudeCodeAuthResult<()> {
        let document = render_document(file, || self.location())?;
        self.save_document(&document).await
    }

    async fn load_document(&self) -> ClaudeCodeAuthResult<Option<String>> {
        Ok(self.inner.document().await?.map(|d| d.to_string()))
    }

    /// A write outside a refresh (an import) takes the lease like a refresh does, so it never
    /// lands in the middle of one.
    async fn save_document(&self, document: &str) -> ClaudeCodeAuthResult<()> {
        parse_document(document, || self.location())?;
        let lease = Lease::acquire(&self.inner, self.inner.lease).await?;
        let written = self.inner.write(&lease.state(), document).await;
        lease.state().release().await;
        written
    }

    async fn lock_refresh(&self, wait: Duration) -> ClaudeCodeAuthResult<RefreshLock> {
        let lease = Lease::acquire(&self.inner, wait).await?;
        let log: Arc<dyn ExchangeLog> = Arc::new(answer::AnswerLog::new(lease.state()));
        Ok(RefreshLock::new(lease).with_exchange_log(log))
    }

    fn location(&self) -> String {
        self.inner.shown.clone()
    }

    /// At least the lease and a little more: a holder that died holding it cannot be told from
    /// a live one until it lapses, and a waiter that gave up first would fail although nothing
    /// is wrong (a live holder gives it back within its refresh budget).
    fn lock_wait(&self, configured: Duration) -> Duration {
        configured.max(self.inner.lease + LEASE_LAPSE)
    }

    fn nothing_stored(&self) -> ClaudeCodeAuthError {
        ClaudeCodeAuthError::StoreEmpty {
            store: self.inner.shown.clone(),
        }
    }

    fn fingerprint(&self) -> Option<Fingerprint> {
        *self
            .inner
            .last_fingerprint
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// One round trip: the login's generation and epoch. While Redis cannot be reached, the last
    /// one read, so a header still valid in memory keeps being served.
    async fn current_fingerprint(&self) -> Option<Fingerprint> {
        let inner = &self.inner;
        let read: Result<(Option<String>, Option<String>), _> = inner
            .connection
            .query(
                redis::cmd("HMGET")
                    .arg(&inner.keys.login)
                    .arg("generation")
                    .arg("epoch"),
            )
            .await;
        let mut last = inner
            .last_fingerprint
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Ok((generation, epoch)) = read {
            *last = Some(Fingerprint::of(&(generation_of(generation), epoch)));
        }
        *last
    }
}

/// The stored `generation` field as a number (0: no login).
fn generation_of(stored: Option<String>) -> u64 {
    stored.and_then(|g| g.parse().ok()).unwrap_or(0)
}

/// `n` random bytes as hex.
pub(super) fn random_hex(n: usize) -> ClaudeCodeAuthResult<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| ClaudeCodeAuthError::StoreSecret {
        path: "the system's random source".into(),
        problem: e.to_string(),
    })?;
    Ok(seal::hex(&bytes))
}

/// The URL without its user and password (and anything after the authority but the database).
fn shown_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    format!("{scheme}://{rest}")
}

/// What failed, in Redis's words (which never hold the password).
fn describe(error: &redis::RedisError) -> String {
    if error.is_connection_refusal() {
        "connection refused".into()
    } else if error.is_timeout() {
        "timed out".into()
    } else {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store configured wrongly says so, naming what is wrong — not a credential file or a
    /// token endpoint.
    #[test]
    fn a_wrong_configuration_is_said_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let bad_ca = dir.path().join("ca.pem");
        std::fs::write(&bad_ca, "not a certificate").unwrap();
        let cases = [
            (
                RedisCredentialStore::builder("redis://127.0.0.1:1").key("a{b}"),
                "the store key's name",
            ),
            (
                RedisCredentialStore::builder("rediss://127.0.0.1:1").ca_file(&bad_ca),
                "its CA file",
            ),
            (
                RedisCredentialStore::builder("rediss://127.0.0.1:1")
                    .ca_file(dir.path().join("missing.pem")),
                "its CA file",
            ),
            (
                RedisCredentialStore::builder("redis://127.0.0.1:1").ca_file(&bad_ca),
                "rediss://",
            ),
        ];
        for (builder, said) in cases {
            let Err(error) = builder.plaintext().build() else {
                panic!("built a store that is configured wrongly");
            };
            let text = error.to_string();
            assert!(
                matches!(error, ClaudeCodeAuthError::StoreInvalid { .. }) && text.contains(said),
                "{text}"
            );
            assert!(!text.contains("credentials at") && !text.contains("token endpoint"));
        }
    }
}
