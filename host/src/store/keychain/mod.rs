//! [`KeychainCredentialStore`]: where the `claude` CLI keeps its credential on macOS — a generic
//! password in the login keychain, read and written with the `security` command, as the CLI
//! (2.1.332) does it.
//!
//! The item's service is `Claude Code-credentials`, with `-<first 8 hex digits of sha256(dir)>`
//! appended for a `CLAUDE_SECURESTORAGE_CONFIG_DIR` or `CLAUDE_CONFIG_DIR` (see
//! [`crate::ClaudeCliLogin`]); its account is `USER` (else the system's user name), or
//! `claude-code-user` when that is not `[a-zA-Z0-9._-]+`; its password is the JSON document the
//! file holds elsewhere, non-ASCII escaped. The document goes on `security -i`'s stdin,
//! hex-encoded; only a write whose line would be longer than 4032 characters goes on the command
//! line, as the CLI's does (`security -i` cuts longer lines). An item whose login the CLI split
//! into sealed overflow items (`keychainOverflow`) is refused, never rewritten without them. With
//! a fallback file (the CLI's), a keychain that holds no item is read from the file, a write
//! into an empty item removes the file, and a keychain that refuses the write for good (not a
//! locked one) has it written to the file instead. Commands go through a [`CommandRunner`], so
//! the logic is tested anywhere with the exact command lines.

mod command;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::credential::CredentialFile;
use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};
use crate::files;

use super::cli_dirs::{config_dir_from, keychain_service_for};
use super::cli_lock::session::{self, Session, Site};
use super::{CredentialStore, HeldLock, RefreshLock, blocking, parse_document, render_document};
use command::{
    ID, ITEM_NOT_FOUND, KEYCHAIN_LOCKED, SECURITY, WriteCommand, account_for, delete_args,
    read_args, write_command,
};

pub use super::cli_dirs::KEYCHAIN_SERVICE;

/// How long a write outside a refresh waits for the CLI's write lock.
const SAVE_LOCK_WAIT: Duration = Duration::from_secs(15);

/// What a command printed and how it ended.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CommandOutput {
    /// Exit status; `None` when killed by a signal.
    pub(crate) status: Option<i32>,
    /// Standard output.
    pub(crate) stdout: Vec<u8>,
    /// Standard error.
    pub(crate) stderr: Vec<u8>,
}

impl std::fmt::Debug for CommandOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Stdout carries the keychain password.
        f.debug_struct("CommandOutput")
            .field("status", &self.status)
            .field("stdout_bytes", &self.stdout.len())
            .field("stderr", &String::from_utf8_lossy(&self.stderr))
            .finish()
    }
}

/// Runs a program: the seam between the keychain logic and the `security` binary, where the
/// unit tests stand in the command lines the CLI's own code produces. Not public: the product
/// runs the real `security`.
pub(crate) trait CommandRunner: Send + Sync + 'static {
    /// Run `program` with `args`, writing `stdin` to it, and wait for it. Blocking.
    fn run(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> io::Result<CommandOutput>;
}

/// Runs programs for real.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn run(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> io::Result<CommandOutput> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input)?;
        }
        let output = child.wait_with_output()?;
        Ok(CommandOutput {
            status: output.status.code(),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}

/// The `claude` CLI's credential in the macOS keychain.
#[derive(Clone)]
pub struct KeychainCredentialStore {
    service: String,
    account: String,
    config_dir: PathBuf,
    fallback: Option<PathBuf>,
    runner: Arc<dyn CommandRunner>,
}

impl std::fmt::Debug for KeychainCredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeychainCredentialStore")
            .field("service", &self.service)
            .field("account", &self.account)
            .field("config_dir", &self.config_dir)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

/// What the keychain holds.
enum Item {
    /// No item, or an empty one.
    Absent,
    /// The item's text.
    Present(Zeroizing<String>),
}

impl KeychainCredentialStore {
    /// The item the `claude` CLI of this user and environment uses, through the real
    /// `security`, with the CLI's credential file as its fallback.
    pub fn for_claude_cli() -> ClaudeCodeAuthResult<Self> {
        Self::for_claude_cli_with(|name| std::env::var_os(name), SystemRunner)
    }

    /// [`for_claude_cli`](Self::for_claude_cli) in the environment `env` reads, running
    /// commands (`security`, and `id` for the user name when `USER` is not set) through
    /// `runner`.
    pub(crate) fn for_claude_cli_with(
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
        runner: impl CommandRunner,
    ) -> ClaudeCodeAuthResult<Self> {
        let config_dir = config_dir_from(&env)?;
        let user = env("USER")
            .and_then(|user| user.into_string().ok())
            .filter(|user| !user.is_empty())
            .or_else(|| system_user(&runner));
        let account = account_for(user.as_deref());
        Ok(
            Self::with_runner(keychain_service_for(&env), account, &config_dir, runner)
                .with_file_fallback(config_dir.join(".credentials.json")),
        )
    }

    /// A store for the item `service` / `account`, whose refresh lock belongs to `config_dir`,
    /// through the real `security`; no fallback file.
    pub fn new(
        service: impl Into<String>,
        account: impl Into<String>,
        config_dir: impl Into<PathBuf>,
    ) -> Self {
        Self::with_runner(service, account, config_dir, SystemRunner)
    }

    /// [`new`](Self::new), running commands through `runner`.
    pub(crate) fn with_runner(
        service: impl Into<String>,
        account: impl Into<String>,
        config_dir: impl Into<PathBuf>,
        runner: impl CommandRunner,
    ) -> Self {
        Self {
            service: service.into(),
            account: account.into(),
            config_dir: config_dir.into(),
            fallback: None,
            runner: Arc::new(runner),
        }
    }

    /// The same store with `file` as the CLI's fallback: read when the keychain holds no item,
    /// removed once a write fills an empty item, written when the keychain refuses a write.
    #[must_use]
    pub fn with_file_fallback(mut self, file: impl Into<PathBuf>) -> Self {
        self.fallback = Some(file.into());
        self
    }

    /// The item's service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The item's account.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The fallback credential file, if any.
    pub fn fallback(&self) -> Option<&Path> {
        self.fallback.as_deref()
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> ClaudeCodeAuthResult<CommandOutput> {
        self.runner
            .run(SECURITY, args, stdin)
            .map_err(|source| ClaudeCodeAuthError::Io {
                path: self.location(),
                source,
            })
    }

    fn failure(&self, doing: &str, output: &CommandOutput) -> ClaudeCodeAuthError {
        let said = String::from_utf8_lossy(&output.stderr);
        let hint = match output.status {
            Some(KEYCHAIN_LOCKED) => {
                " (the keychain is locked; unlock it with `security unlock-keychain` and try again)"
            }
            _ => "",
        };
        ClaudeCodeAuthError::Io {
            path: self.location(),
            source: io::Error::other(format!(
                "`security` could not {doing} (exit status {}){hint}: {}",
                output
                    .status
                    .map_or_else(|| "none".into(), |s| s.to_string()),
                said.trim()
            )),
        }
    }

    fn read_item(&self) -> ClaudeCodeAuthResult<Item> {
        let output = self.run(&read_args(&self.account, &self.service), None)?;
        let stdout = Zeroizing::new(output.stdout.clone());
        match output.status {
            Some(0) => {}
            Some(ITEM_NOT_FOUND) => return Ok(Item::Absent),
            _ => return Err(self.failure("read the item", &output)),
        }
        let text =
            std::str::from_utf8(&stdout).map_err(|e| ClaudeCodeAuthError::InvalidDocument {
                path: self.location(),
                problem: format!(
                    "the item is not UTF-8 text (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            })?;
        // `security -w` ends the password with a newline; the CLI trims it.
        let text = text.trim();
        if text.is_empty() {
            return Ok(Item::Absent);
        }
        if split_into_overflow(text) {
            return Err(ClaudeCodeAuthError::InvalidDocument {
                path: self.location(),
                problem: "the `claude` CLI keeps part of this login in sealed overflow items \
                          (`keychainOverflow`), which this crate cannot read; it is left \
                          untouched rather than rewritten without them"
                    .into(),
            });
        }
        Ok(Item::Present(Zeroizing::new(text.to_owned())))
    }

    fn read(&self) -> ClaudeCodeAuthResult<Option<String>> {
        match self.read_item()? {
            Item::Present(text) => Ok(Some(text.as_str().to_owned())),
            Item::Absent => match &self.fallback {
                Some(file) => read_fallback(file),
                None => Ok(None),
            },
        }
    }

    fn write_item(&self, document: &str) -> ClaudeCodeAuthResult<Written> {
        let command = write_command(&self.account, &self.service, document).ok_or_else(|| {
            ClaudeCodeAuthError::InvalidDocument {
                path: self.location(),
                problem: "the keychain account or service name holds a control character (a \
                              newline would start another `security` command); refusing to write"
                    .into(),
            }
        })?;
        let output = match &command {
            WriteCommand::Stdin(line) => self.run(&["-i"], Some(line.as_bytes()))?,
            WriteCommand::Argv(args) => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                self.run(&args, None)?
            }
        };
        Ok(match output.status {
            Some(0) => Written::Done,
            status => Written::Refused {
                // A locked keychain, a `security` killed or cut short: it may pass later.
                lasting: !matches!(status, None | Some(KEYCHAIN_LOCKED)),
                error: self.failure("write the item", &output),
            },
        })
    }

    /// Write `document` as the CLI does: into the item; a write that fills an empty item
    /// removes the fallback file; a write the keychain refuses for good (not a locked keychain)
    /// goes to the fallback file, and the item it would have replaced is deleted.
    fn write(&self, document: &str) -> ClaudeCodeAuthResult<()> {
        let had_item = matches!(self.read_item()?, Item::Present(_));
        let file = match (self.write_item(document)?, &self.fallback) {
            (Written::Done, fallback) => {
                if let (false, Some(file)) = (had_item, fallback) {
                    remove_fallback(file);
                }
                return Ok(());
            }
            (Written::Refused { lasting: true, .. }, Some(file)) => file,
            (Written::Refused { error, .. }, _) => return Err(error),
        };
        files::write_atomically(file, document.as_bytes()).map_err(|source| {
            ClaudeCodeAuthError::Io {
                path: file.display().to_string(),
                source,
            }
        })?;
        tracing::warn!(
            item = %self.location(),
            file = %file.display(),
            "the keychain refused the credential; it is stored in the plaintext file instead, as the claude CLI does"
        );
        if had_item {
            let deleted = self.run(&delete_args(&self.account, &self.service), None)?;
            if !matches!(deleted.status, Some(0 | ITEM_NOT_FOUND)) {
                return Err(
                    self.failure("delete the item the credential file now replaces", &deleted)
                );
            }
        }
        Ok(())
    }

    fn sites(&self) -> Vec<Site> {
        vec![Site::new(
            &self.config_dir,
            ".credentials.keychain.flock".as_ref(),
        )]
    }
}

/// How a write into the item ended.
enum Written {
    Done,
    /// Refused; `lasting` unless it may pass later (a locked keychain, a `security` killed),
    /// and only a lasting refusal sends the write to the fallback file.
    Refused {
        lasting: bool,
        error: ClaudeCodeAuthError,
    },
}

/// The item names the sealed overflow items the CLI may split a large login into.
fn split_into_overflow(text: &str) -> bool {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
        .is_ok_and(|root| root.contains_key("keychainOverflow"))
}

fn read_fallback(file: &Path) -> ClaudeCodeAuthResult<Option<String>> {
    match std::fs::read(file) {
        Ok(bytes) => {
            String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| ClaudeCodeAuthError::InvalidDocument {
                    path: file.display().to_string(),
                    problem: format!(
                        "not UTF-8 text (invalid byte at offset {})",
                        e.utf8_error().valid_up_to()
                    ),
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ClaudeCodeAuthError::Io {
            path: file.display().to_string(),
            source,
        }),
    }
}

/// The CLI removes its plaintext file once the keychain holds the login.
fn remove_fallback(file: &Path) {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!(file = %file.display(), error = %e, "the plaintext credential file the keychain now replaces could not be removed");
        }
        _ => {}
    }
}

/// The system's name for this user (`id -un`), when there is one.
fn system_user(runner: &impl CommandRunner) -> Option<String> {
    let output = runner.run(ID, &["-un"], None).ok()?;
    let name = String::from_utf8(output.stdout).ok()?;
    let name = name.trim();
    (output.status == Some(0) && !name.is_empty()).then(|| name.to_owned())
}

#[async_trait]
impl CredentialStore for KeychainCredentialStore {
    async fn load(&self) -> ClaudeCodeAuthResult<Option<CredentialFile>> {
        match self.load_document().await? {
            Some(text) => parse_document(&Zeroizing::new(text), || self.location()).map(Some),
            None => Ok(None),
        }
    }

    async fn save(&self, file: &CredentialFile) -> ClaudeCodeAuthResult<()> {
        let text = Zeroizing::new(render_document(file, || self.location())?);
        self.save_document(&text).await
    }

    async fn load_document(&self) -> ClaudeCodeAuthResult<Option<String>> {
        let store = self.clone();
        blocking(move || store.read()).await
    }

    /// A write outside a refresh, under the CLI's write lock, as the CLI's are.
    async fn save_document(&self, document: &str) -> ClaudeCodeAuthResult<()> {
        let store = self.clone();
        let document = Zeroizing::new(document.to_owned());
        session::under_write_locks(self.sites(), SAVE_LOCK_WAIT, move || store.write(&document))
            .await
    }

    async fn lock_refresh(&self, wait: Duration) -> ClaudeCodeAuthResult<RefreshLock> {
        // A keychain item is written through `security`, never through a temporary file: no
        // killed writer's file is ever handed over.
        let session = session::lock(self.sites(), Vec::new(), wait).await?;
        Ok(session.refresh_lock(KeychainLock {
            store: self.clone(),
            session: session.clone(),
        }))
    }

    fn location(&self) -> String {
        format!(
            "macOS keychain item `{}` (account `{}`)",
            self.service, self.account
        )
    }
}

/// The keychain store's refresh lock: the CLI's locks of its config dir.
struct KeychainLock {
    store: KeychainCredentialStore,
    session: Session,
}

#[async_trait]
impl HeldLock for KeychainLock {
    /// The CLI takes `.storage-write.lock` of its config dir around keychain writes too.
    async fn lock_write(&mut self, wait: Duration) -> ClaudeCodeAuthResult<()> {
        self.session.with(move |held| held.lock_write(wait)).await
    }

    async fn save_refreshed(&mut self, document: &str) -> ClaudeCodeAuthResult<()> {
        let store = self.store.clone();
        let document = Zeroizing::new(document.to_owned());
        let written = blocking(move || store.write(&document)).await;
        self.session
            .with(|held| {
                held.unlock_write();
                Ok(())
            })
            .await?;
        written
    }
}

#[cfg(test)]
mod tests;
