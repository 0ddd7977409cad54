//! A rotated login is never thrown away. Each way the write after a refresh can fail — a full
//! disk, a name too long for a temporary file, `fsync` failing with EIO, a `kill -9` between
//! the complete write and its rename, a store that refuses the write, an odd 2xx answer, an
//! answer that takes most of the refresh budget — against the loopback endpoint that rotates the
//! refresh token on every grant and revokes the whole login when a spent one comes back. Each
//! ends with the fault cleared and the next call succeeding with no spent token reused.
//!
//! Real processes run under `LD_PRELOAD` with `tests/scenarios/faults/shim.c` (compiled here with the C
//! compiler the build already needs) to make `fsync` fail or to kill at the rename.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::{expired_login, finish, real_now_ms, spawn_cli, text};
use async_trait::async_trait;
use claude_code_auth_testkit::loopback::TokenEndpoint;
use entelix_auth_claude_code::{
    ClaudeCodeAuthError, ClaudeCodeAuthResult, ClaudeCodeOAuthConfig, ClaudeCodeOAuthProvider,
    CredentialFile, CredentialStore, FileCredentialStore, HeldLock, MemoryCredentialStore,
    RefreshLock, RefreshMode, RefreshOutcome,
};
use secrecy::ExposeSecret;
use serde_json::Value;

/// The fault shim, compiled once per run.
pub(crate) fn shim() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let source =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/faults/shim.c");
            let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ccauth-fault-shim.so");
            let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
                .args(["-shared", "-fPIC", "-O2", "-o"])
                .arg(&out)
                .arg(&source)
                .arg("-ldl")
                .status()
                .expect("a C compiler (cc) builds the fault shim");
            assert!(status.success(), "compiling the fault shim failed");
            out
        })
        .clone()
}

/// `command` held by the fault shim at `point` (see `faults/shim.c`) for `millis`, once: `mark`
/// is created when it gets there.
pub(crate) fn paused_at(command: &mut Command, point: &str, mark: &Path, millis: u128) {
    command
        .env("LD_PRELOAD", shim())
        .env("CCAUTH_PAUSE", point)
        .env("CCAUTH_PAUSE_MARK", mark)
        .env("CCAUTH_PAUSE_MS", millis.to_string());
}

/// Wait (at most 30 s) until a process [`paused_at`] a point made `mark`; `what` names the
/// point for the failure.
pub(crate) async fn until_paused(mark: &Path, what: &str) {
    let started = std::time::Instant::now();
    while !mark.exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "never {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// `claude-code-auth <args>` on `path` with `fault` injected.
async fn with_fault(path: &Path, url: &str, args: &[&str], fault: &str) -> std::process::Output {
    let home = path.parent().unwrap();
    let mut command = crate::support::cli_command(home);
    command
        .args(args)
        .arg("--credentials")
        .arg(path)
        .args(["--token-url", url])
        .env("LD_PRELOAD", shim())
        .env("CCAUTH_FAULT", fault);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

async fn cli(path: &Path, url: &str, args: &[&str]) -> std::process::Output {
    finish(spawn_cli(path, url, args)).await
}

/// After a fault: the next call works, and the endpoint never saw a spent token come back.
async fn next_call_succeeds(path: &Path, endpoint: &TokenEndpoint) {
    let output = cli(path, &endpoint.url(), &["refresh", "--force"]).await;
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let output = cli(path, &endpoint.url(), &["token"]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(endpoint.accepts_access_token(stdout.trim()));
    assert_eq!(endpoint.revoked_families(), 0, "a spent token was reused");
}

fn stored_refresh(path: &Path) -> String {
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    doc["claudeAiOauth"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn fsync_failing_with_eio_keeps_the_rotated_login() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let before = stored_refresh(&scenario.path);
    let output = with_fault(&scenario.path, &endpoint.url(), &["token"], "fsync-eio").await;
    let (stdout, stderr) = text(&output);
    // The bytes are written; only their durability is in doubt. Renaming them in beats keeping
    // the spent token, and the user is told.
    assert!(output.status.success(), "{stderr}");
    assert!(endpoint.accepts_access_token(stdout.trim()));
    assert_eq!(endpoint.grants_served(), 1);
    assert_ne!(stored_refresh(&scenario.path), before);
    assert!(
        stderr.contains("warning: the refreshed credential could not be synced to disk"),
        "{stderr}"
    );
    next_call_succeeds(&scenario.path, &endpoint).await;
}

#[tokio::test]
async fn a_directory_sync_failing_after_the_rename_keeps_the_new_file_and_says_so() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let before = stored_refresh(&scenario.path);
    let output = with_fault(&scenario.path, &endpoint.url(), &["token"], "dirsync-eio").await;
    let (stdout, stderr) = text(&output);
    // The rename is done: the file holds the new login (not byte-identical to before, and
    // rightly so), the command succeeds, and stderr names what is in doubt.
    assert!(output.status.success(), "{stderr}");
    assert!(endpoint.accepts_access_token(stdout.trim()));
    assert_ne!(stored_refresh(&scenario.path), before);
    assert!(
        stderr.contains(
            "warning: the refreshed credential is in place, but its directory could not be synced"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains(stdout.trim()), "a token in a warning");
    next_call_succeeds(&scenario.path, &endpoint).await;
}

#[tokio::test]
async fn a_kill_between_the_complete_write_and_its_rename_is_handed_over() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let before = stored_refresh(&scenario.path);
    let output = with_fault(
        &scenario.path,
        &endpoint.url(),
        &["token"],
        "kill-at-rename",
    )
    .await;
    assert_eq!(output.status.signal(), Some(9), "{}", text(&output).1);
    assert_eq!(
        endpoint.grants_served(),
        1,
        "the killed process spent the grant"
    );
    assert_eq!(
        stored_refresh(&scenario.path),
        before,
        "killed before the rename"
    );

    // The next process finds the complete write on record and puts it in place: no new grant,
    // no spent token presented.
    let output = cli(&scenario.path, &endpoint.url(), &["token"]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(endpoint.accepts_access_token(stdout.trim()));
    assert_eq!(
        endpoint.grants_served(),
        1,
        "handed over, not refreshed again"
    );
    assert_ne!(stored_refresh(&scenario.path), before);
    let leftovers: Vec<_> = std::fs::read_dir(scenario.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    next_call_succeeds(&scenario.path, &endpoint).await;
}

#[tokio::test]
async fn credential_file_names_too_long_for_a_suffix_still_refresh() {
    for length in [240, 252] {
        let endpoint = TokenEndpoint::start().await.unwrap();
        let scenario = expired_login(&endpoint);
        let long = scenario.dir().join("c".repeat(length));
        std::fs::rename(&scenario.path, &long).unwrap();
        let output = cli(&long, &endpoint.url(), &["token"]).await;
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{length}: {stderr}");
        assert!(endpoint.accepts_access_token(stdout.trim()), "{length}");
        let output = cli(&long, &endpoint.url(), &["refresh", "--force"]).await;
        assert!(output.status.success(), "{length}: {}", text(&output).1);
        assert_eq!(endpoint.revoked_families(), 0, "{length}");
    }
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: PathBuf, size: &str) -> Option<Self> {
        std::fs::create_dir_all(&at).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&at)
            .status()
            .ok()?;
        status.success().then_some(Self(at))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_fails_before_spending_and_the_next_call_succeeds() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(scratch.path().join("disk"), "256k") else {
        use std::io::Write;
        // Past the harness's capture: a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED a_full_disk_fails_before_spending: mounting a tmpfs needs root"
        );
        return;
    };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let source = expired_login(&endpoint);
    let config_dir = disk.0.join("claude");
    std::fs::create_dir(&config_dir).unwrap();
    let path = config_dir.join(".credentials.json");
    std::fs::copy(&source.path, &path).unwrap();
    let before = std::fs::read(&path).unwrap();
    // Fill the disk a page at a time, then give one page back: the lock's journal fits, a
    // refreshed document next to the old one does not.
    let mut fillers = Vec::new();
    loop {
        let filler = disk.0.join(format!("fill-{}", fillers.len()));
        if std::fs::write(&filler, [7u8; 4096]).is_err() {
            let _ = std::fs::remove_file(&filler);
            break;
        }
        fillers.push(filler);
    }
    std::fs::remove_file(fillers.pop().unwrap()).unwrap();

    let output = cli(&path, &endpoint.url(), &["token"]).await;
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(stderr.contains("no refresh was attempted"), "{stderr}");
    assert!(endpoint.requests().is_empty(), "nothing may be spent");
    assert_eq!(std::fs::read(&path).unwrap(), before);

    for filler in fillers {
        std::fs::remove_file(filler).unwrap();
    }
    let output = cli(&path, &endpoint.url(), &["token"]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(endpoint.accepts_access_token(stdout.trim()));
    next_call_succeeds(&path, &endpoint).await;
    drop(disk);
}

fn provider(path: &Path, endpoint: &TokenEndpoint) -> ClaudeCodeOAuthProvider {
    ClaudeCodeOAuthProvider::with_config(
        FileCredentialStore::with_path(path),
        ClaudeCodeOAuthConfig::new().with_token_url(endpoint.url()),
    )
}

#[tokio::test]
async fn a_2xx_without_a_lifetime_or_with_an_odd_token_type_is_kept() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let spent = stored_refresh(&scenario.path);
    endpoint.reshape_next_grant(|answer| {
        answer.remove("expires_in");
        answer.insert("token_type".into(), "mac".into());
    });
    let provider = provider(&scenario.path, &endpoint);
    let header = provider.header_value().await.unwrap();
    let token = header.expose_secret().strip_prefix("Bearer ").unwrap();
    assert!(endpoint.accepts_access_token(token));
    assert_ne!(
        stored_refresh(&scenario.path),
        spent,
        "the rotated token is stored"
    );
    let doc: Value = serde_json::from_slice(&scenario.bytes()).unwrap();
    let due = doc["claudeAiOauth"]["expiresAt"].as_i64().unwrap();
    assert!(
        due <= real_now_ms(),
        "stored as due: the next use refreshes"
    );

    // The next use refreshes with the rotated token: a second grant, nothing revoked.
    let again = provider.header_value().await.unwrap();
    assert_ne!(again.expose_secret(), header.expose_secret());
    assert_eq!(endpoint.grants_served(), 2);
    assert_eq!(endpoint.revoked_families(), 0);
}

#[tokio::test]
async fn a_2xx_with_only_a_refresh_token_keeps_it_and_says_so() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let spent = stored_refresh(&scenario.path);
    endpoint.reshape_next_grant(|answer| {
        answer.remove("access_token");
    });
    let provider = provider(&scenario.path, &endpoint);
    let error = provider.header_value().await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("rotated refresh token was saved"),
        "{error}"
    );
    assert_ne!(stored_refresh(&scenario.path), spent);
    provider.header_value().await.unwrap();
    assert_eq!(endpoint.revoked_families(), 0);
}

/// A store that refuses refreshed writes while `refusing` is set (a read-only or failing
/// medium, a keychain that says no).
struct Refusing {
    inner: Arc<MemoryCredentialStore>,
    refusing: Arc<AtomicBool>,
}

#[async_trait]
impl CredentialStore for Refusing {
    async fn load(&self) -> ClaudeCodeAuthResult<Option<CredentialFile>> {
        self.inner.load().await
    }

    async fn save(&self, file: &CredentialFile) -> ClaudeCodeAuthResult<()> {
        self.inner.save(file).await
    }

    async fn load_document(&self) -> ClaudeCodeAuthResult<Option<String>> {
        self.inner.load_document().await
    }

    async fn lock_refresh(&self, _: Duration) -> ClaudeCodeAuthResult<RefreshLock> {
        Ok(RefreshLock::new(RefusingLock {
            inner: self.inner.clone(),
            refusing: self.refusing.clone(),
        }))
    }

    fn location(&self) -> String {
        "refusing test store".into()
    }
}

/// [`Refusing`]'s refresh lock: it says no to the refreshed document while told to.
struct RefusingLock {
    inner: Arc<MemoryCredentialStore>,
    refusing: Arc<AtomicBool>,
}

#[async_trait]
impl HeldLock for RefusingLock {
    async fn save_refreshed(&mut self, document: &str) -> ClaudeCodeAuthResult<()> {
        if self.refusing.load(Ordering::SeqCst) {
            return Err(ClaudeCodeAuthError::ReadOnly {
                store: "refusing test store".into(),
            });
        }
        self.inner.save_document(document).await
    }
}

#[tokio::test]
async fn a_store_that_refuses_the_write_gets_the_login_back_from_a_rescue_file() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let original = String::from_utf8(scenario.bytes()).unwrap();
    let store = Arc::new(Refusing {
        inner: Arc::new(MemoryCredentialStore::with_document(original.clone())),
        refusing: Arc::new(AtomicBool::new(true)),
    });
    let rescue_dir = tempfile::tempdir().unwrap();
    let config = ClaudeCodeOAuthConfig::new()
        .with_token_url(endpoint.url())
        .with_rescue_dir(rescue_dir.path().join("rescue"));
    let provider = ClaudeCodeOAuthProvider::with_config(store.clone(), config.clone());
    let first = provider.header_value().await.unwrap();
    assert_eq!(
        store.inner.document().unwrap(),
        original,
        "the store refused"
    );
    let rescued: Vec<_> = std::fs::read_dir(rescue_dir.path().join("rescue"))
        .unwrap()
        .collect();
    assert_eq!(rescued.len(), 1);

    // Another provider (another process of ours) answers the rescued login, not the spent one
    // still in the store: a forced refresh presents the rotated token.
    let other = ClaudeCodeOAuthProvider::with_config(store.clone(), config.clone());
    let report = other.refresh(RefreshMode::Force).await.unwrap();
    assert_eq!(report.outcome, RefreshOutcome::Refreshed);
    assert_eq!(
        endpoint.revoked_families(),
        0,
        "the spent token never came back"
    );

    // The store takes writes again: the next call of any provider writes the rescued login back
    // at once (a status is enough), before anything presents the spent token still stored.
    store.refusing.store(false, Ordering::SeqCst);
    let third = ClaudeCodeOAuthProvider::with_config(store.clone(), config);
    assert!(third.status().await.unwrap().logged_in);
    let stored: Value = serde_json::from_str(&store.inner.document().unwrap()).unwrap();
    assert!(
        endpoint.accepts_access_token(stored["claudeAiOauth"]["accessToken"].as_str().unwrap())
    );
    assert_ne!(first.expose_secret(), "");
    assert_eq!(
        std::fs::read_dir(rescue_dir.path().join("rescue"))
            .unwrap()
            .count(),
        0,
        "the rescue file is gone once the store holds its login"
    );
    assert_eq!(endpoint.revoked_families(), 0);
}

/// A store whose reads are slow (a network store, a keychain that prompts).
struct SlowReads {
    inner: FileCredentialStore,
    delay: Duration,
}

#[async_trait]
impl CredentialStore for SlowReads {
    async fn load(&self) -> ClaudeCodeAuthResult<Option<CredentialFile>> {
        self.inner.load().await
    }

    async fn save(&self, file: &CredentialFile) -> ClaudeCodeAuthResult<()> {
        self.inner.save(file).await
    }

    async fn load_document(&self) -> ClaudeCodeAuthResult<Option<String>> {
        tokio::time::sleep(self.delay).await;
        self.inner.load_document().await
    }

    async fn save_document(&self, document: &str) -> ClaudeCodeAuthResult<()> {
        self.inner.save_document(document).await
    }

    async fn lock_refresh(&self, wait: Duration) -> ClaudeCodeAuthResult<RefreshLock> {
        self.inner.lock_refresh(wait).await
    }
}

/// The call's own bound (lock + refresh + 5 s, counted from its start) must not cut off an
/// answer the refresh budget allows once the request is out: here slow reads use 6 s before
/// the request, the answer takes 3.5 s, the write-back read 3 s more — past the 9.5 s bound,
/// well inside 6 s + the 4 s budget + 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_within_the_refresh_budget_is_never_cut_off_by_the_call_bound() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    endpoint.set_latency(Duration::from_millis(3500)..Duration::from_millis(3501));
    let store = SlowReads {
        inner: FileCredentialStore::with_path(&scenario.path),
        delay: Duration::from_secs(3),
    };
    let config = ClaudeCodeOAuthConfig::new()
        .with_token_url(endpoint.url())
        .with_lock_timeout(Duration::from_millis(500))
        .with_refresh_timeout(Duration::from_secs(4));
    let provider = ClaudeCodeOAuthProvider::with_config(store, config);
    let started = Instant::now();
    let header = provider.header_value().await;
    let took = started.elapsed();
    let header = header.unwrap_or_else(|e| panic!("after {took:?}: {e}"));
    assert!(
        took > Duration::from_millis(9500),
        "the case needs it: {took:?}"
    );
    let token = header.expose_secret().strip_prefix("Bearer ").unwrap();
    assert!(endpoint.accepts_access_token(token));
    assert_eq!(scenario.oauth("accessToken"), token, "and it was stored");
}

/// Paths the system allows must not make a refresh impossible: a config directory whose name is
/// not UTF-8 (the lock journal records paths as bytes), and one of 245 bytes (staging names are
/// short, whatever the lock's name).
#[tokio::test]
async fn unusual_but_legal_directory_names_refresh() {
    use std::os::unix::ffi::OsStrExt;
    let names: [&std::ffi::OsStr; 2] = [
        std::ffi::OsStr::from_bytes(b"claude-\xff\xfe-config"),
        std::ffi::OsStr::from_bytes(&[b'd'; 245]),
    ];
    for name in names {
        let endpoint = TokenEndpoint::start().await.unwrap();
        let scenario = expired_login(&endpoint);
        let dir = scenario.dir().join(name);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join(".credentials.json");
        std::fs::rename(&scenario.path, &path).unwrap();
        let output = cli(&path, &endpoint.url(), &["token"]).await;
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{name:?}: {stderr}");
        assert!(endpoint.accepts_access_token(stdout.trim()));
        next_call_succeeds(&path, &endpoint).await;
    }
}

/// A store over the credential file that, between taking the refresh lock and spending the
/// refresh token, has the CLI's lock directory taken from it (another process judged it stale).
struct LockTakenMeanwhile {
    inner: FileCredentialStore,
    lock: PathBuf,
}

#[async_trait]
impl CredentialStore for LockTakenMeanwhile {
    async fn load(&self) -> ClaudeCodeAuthResult<Option<CredentialFile>> {
        self.inner.load().await
    }

    async fn save(&self, file: &CredentialFile) -> ClaudeCodeAuthResult<()> {
        self.inner.save(file).await
    }

    async fn load_document(&self) -> ClaudeCodeAuthResult<Option<String>> {
        self.inner.load_document().await
    }

    async fn lock_refresh(&self, wait: Duration) -> ClaudeCodeAuthResult<RefreshLock> {
        let lock = self.lock.clone();
        let store = self.inner.clone();
        Ok(self
            .inner
            .lock_refresh(wait)
            .await?
            .wrapped(|inner| TakenMeanwhile { inner, store, lock }))
    }
}

/// [`LockTakenMeanwhile`]'s refresh lock: the file store's, its lock directory taken over right
/// before it prepares the write.
struct TakenMeanwhile {
    inner: RefreshLock,
    store: FileCredentialStore,
    lock: PathBuf,
}

#[async_trait]
impl HeldLock for TakenMeanwhile {
    async fn prepare_save(&mut self, size: u64) -> ClaudeCodeAuthResult<()> {
        // Taken over: removed as stale and made again by its new holder.
        std::fs::remove_dir(&self.lock).unwrap();
        std::fs::create_dir(&self.lock).unwrap();
        self.inner.prepare_save(size).await
    }

    async fn lock_write(&mut self, wait: Duration) -> ClaudeCodeAuthResult<()> {
        self.inner.lock_write(wait).await
    }

    async fn save_refreshed(&mut self, document: &str) -> ClaudeCodeAuthResult<()> {
        self.inner.save_refreshed(&self.store, document).await
    }

    fn send_check(&self) -> Option<entelix_auth_claude_code::SendCheck> {
        self.inner.send_check()
    }

    async fn release(&mut self) {
        self.inner.release().await;
    }
}

#[tokio::test]
async fn a_lock_lost_before_the_request_spends_nothing() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let before = scenario.bytes();
    let store = LockTakenMeanwhile {
        inner: FileCredentialStore::with_path(&scenario.path),
        lock: scenario.dir().join(".oauth_refresh.lock"),
    };
    let provider = ClaudeCodeOAuthProvider::with_config(
        store,
        ClaudeCodeOAuthConfig::new().with_token_url(endpoint.url()),
    );
    let error = provider.header_value().await.unwrap_err();
    // Said as what happened: lost while held, not a wait that timed out.
    assert!(
        matches!(error, ClaudeCodeAuthError::LockLost { .. })
            && error.to_string().contains("taken over by another process")
            && !error.to_string().contains("timed out"),
        "{error}"
    );
    assert!(endpoint.requests().is_empty(), "nothing may be spent");
    assert_eq!(scenario.bytes(), before);
    // Its new holder's lock is left alone.
    assert!(scenario.dir().join(".oauth_refresh.lock").is_dir());
}

/// Plain `http` is allowed to `localhost` because it is loopback: a hosts file mapping it
/// elsewhere must not send the refresh token there in clear. Run in a mount namespace of its
/// own, where `/etc/hosts` maps `localhost` to an address outside the machine.
#[tokio::test]
async fn localhost_stays_loopback_whatever_the_hosts_file_says() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let hosts = scenario.dir().join("hosts");
    std::fs::write(&hosts, "198.51.100.7 localhost\n").unwrap();
    let port = endpoint
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let url = format!("http://localhost:{port}/v1/oauth/token");
    let script = format!(
        "mount --bind '{}' /etc/hosts && exec \"$0\" token --credentials '{}' --token-url '{url}'",
        hosts.display(),
        scenario.path.display()
    );
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "sh", "-c", &script])
        .arg(crate::support::cli_binary())
        .env_remove("CLAUDE_CONFIG_DIR")
        .env_remove("CLAUDE_CODE_OAUTH_TOKEN");
    let probe = Command::new("unshare").args(["--mount", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED localhost_stays_loopback: a mount namespace needs root"
        );
        return;
    }
    crate::support::warm_component_cache();
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(endpoint.accepts_access_token(stdout.trim()));
    assert_eq!(endpoint.grants_served(), 1);
}
