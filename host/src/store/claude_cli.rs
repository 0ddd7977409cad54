//! The login the `claude` CLI of this environment would use, chosen as the CLI (2.1.332) chooses
//! it: the long-lived token in `CLAUDE_CODE_OAUTH_TOKEN`; else, on macOS, the keychain item (with
//! the credential file as its fallback); else the credential file, in the config dir
//! [`super::cli_dirs`] works out.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::ClaudeCodeAuthResult;

use super::cli_dirs::config_dir_from;
use super::env_token::OAUTH_TOKEN_ENV;
use super::{
    CommandRunner, CredentialStore, EnvTokenStore, FileCredentialStore, KeychainCredentialStore,
    SystemRunner,
};

/// Where the login the `claude` CLI would use is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaudeCliSource {
    /// The long-lived token in `CLAUDE_CODE_OAUTH_TOKEN` (never refreshed).
    EnvToken,
    /// The macOS keychain item of this service, with `fallback` (the credential file) read when
    /// the keychain holds no item.
    Keychain {
        /// The item's service name.
        service: String,
        /// The credential file the CLI falls back to.
        fallback: PathBuf,
    },
    /// The credential file.
    File {
        /// Its path, as the CLI names it.
        path: PathBuf,
    },
}

impl ClaudeCliSource {
    /// `env`, `keychain` or `file`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::EnvToken => "env",
            Self::Keychain { .. } => "keychain",
            Self::File { .. } => "file",
        }
    }

    /// The credential file this source reads (the keychain's fallback for a keychain).
    #[must_use]
    pub fn credential_file(&self) -> Option<&Path> {
        match self {
            Self::EnvToken => None,
            Self::Keychain { fallback, .. } => Some(fallback),
            Self::File { path } => Some(path),
        }
    }
}

/// The login the `claude` CLI of this environment would use: where it is, and a store for it.
///
/// ```no_run
/// use entelix_auth_claude_code::{ClaudeCliLogin, ClaudeCodeOAuthProvider};
/// # fn main() -> Result<(), entelix_auth_claude_code::ClaudeCodeAuthError> {
/// let login = ClaudeCliLogin::find()?;
/// println!("using the login in {:?}", login.source());
/// let provider = ClaudeCodeOAuthProvider::new(login.into_store());
/// # let _ = provider;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ClaudeCliLogin {
    source: ClaudeCliSource,
    store: Arc<dyn CredentialStore>,
}

impl std::fmt::Debug for ClaudeCliLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaudeCliLogin")
            .field("source", &self.source)
            .field("store", &self.store.location())
            .finish()
    }
}

impl ClaudeCliLogin {
    /// The login the `claude` CLI would use in this process's environment.
    ///
    /// # Errors
    /// [`crate::ClaudeCodeAuthError::HomeUnresolved`] when no config dir can be worked out (no
    /// `HOME` and neither variable set).
    pub fn find() -> ClaudeCodeAuthResult<Self> {
        Self::find_in(
            |name| std::env::var_os(name),
            cfg!(target_os = "macos"),
            SystemRunner,
        )
    }

    /// [`find`](Self::find) in the environment `env` reads, on macOS or not, with the keychain
    /// reached through `runner`.
    pub(crate) fn find_in(
        env: impl Fn(&str) -> Option<OsString>,
        macos: bool,
        runner: impl CommandRunner,
    ) -> ClaudeCodeAuthResult<Self> {
        let token = env(OAUTH_TOKEN_ENV).and_then(|v| v.into_string().ok());
        if let Some(store) = EnvTokenStore::from_value(token) {
            return Ok(Self {
                source: ClaudeCliSource::EnvToken,
                store: Arc::new(store),
            });
        }
        if macos {
            let keychain = KeychainCredentialStore::for_claude_cli_with(&env, runner)?;
            return Ok(Self {
                source: ClaudeCliSource::Keychain {
                    service: keychain.service().to_owned(),
                    fallback: keychain
                        .fallback()
                        .map(Path::to_path_buf)
                        .unwrap_or_default(),
                },
                store: Arc::new(keychain),
            });
        }
        let path = config_dir_from(&env)?.join(".credentials.json");
        Ok(Self {
            source: ClaudeCliSource::File { path: path.clone() },
            store: Arc::new(FileCredentialStore::with_path(path)),
        })
    }

    /// Where the login is kept.
    #[must_use]
    pub fn source(&self) -> &ClaudeCliSource {
        &self.source
    }

    /// The store for it, shared.
    #[must_use]
    pub fn store(&self) -> Arc<dyn CredentialStore> {
        self.store.clone()
    }

    /// The store for it.
    #[must_use]
    pub fn into_store(self) -> Arc<dyn CredentialStore> {
        self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::env;

    /// A `security` holding one item, for the account and service the CLI would use, and an
    /// `id` that knows no user; every call recorded.
    struct OneItem {
        item: String,
        calls: std::sync::Mutex<Vec<Vec<String>>>,
    }

    impl CommandRunner for Arc<OneItem> {
        fn run(
            &self,
            program: &str,
            args: &[&str],
            _stdin: Option<&[u8]>,
        ) -> std::io::Result<super::super::keychain::CommandOutput> {
            let mut call = vec![program.to_owned()];
            call.extend(args.iter().map(|a| (*a).to_owned()));
            self.calls.lock().unwrap().push(call);
            let found = args
                == [
                    "find-generic-password",
                    "-a",
                    "ada",
                    "-w",
                    "-s",
                    "Claude Code-credentials-6a5b8464",
                ];
            Ok(super::super::keychain::CommandOutput {
                status: Some(if found { 0 } else { 44 }),
                stdout: if found {
                    format!("{}\n", self.item).into_bytes()
                } else {
                    Vec::new()
                },
                stderr: Vec::new(),
            })
        }
    }

    /// An entelix user following the README on macOS gets the keychain item the CLI uses (here
    /// through the seam), on Linux the file, with the token variable before either.
    #[tokio::test]
    async fn the_login_is_found_where_the_cli_finds_it() {
        use secrecy::ExposeSecret;
        let home = tempfile::tempdir().unwrap();
        let far = chrono::Utc::now().timestamp_millis() + 3_600_000;
        let item = format!(
            r#"{{"claudeAiOauth":{{"accessToken":"sk-ant-oat01-from-keychain","refreshToken":"r","expiresAt":{far},"scopes":["user:inference"]}}}}"#
        );
        let runner = Arc::new(OneItem {
            item,
            calls: std::sync::Mutex::default(),
        });
        let home_str = home.path().to_str().unwrap().to_owned();
        let vars = [
            ("HOME", home_str.as_str()),
            ("USER", "ada"),
            ("CLAUDE_CONFIG_DIR", "/Users/ada/.claude-work"),
        ];
        let login = ClaudeCliLogin::find_in(env(&vars), true, runner.clone()).unwrap();
        assert_eq!(
            login.source(),
            &ClaudeCliSource::Keychain {
                service: "Claude Code-credentials-6a5b8464".into(),
                fallback: PathBuf::from("/Users/ada/.claude-work/.credentials.json"),
            }
        );
        let provider = crate::ClaudeCodeOAuthProvider::new(login.into_store());
        let header = provider.header_value().await.unwrap();
        assert_eq!(header.expose_secret(), "Bearer sk-ant-oat01-from-keychain");
        assert!(
            runner
                .calls
                .lock()
                .unwrap()
                .iter()
                .any(|call| call[0] == "/usr/bin/security")
        );

        // Elsewhere: the file in the config dir.
        let login = ClaudeCliLogin::find_in(env(&vars), false, runner.clone()).unwrap();
        assert_eq!(
            login.source(),
            &ClaudeCliSource::File {
                path: PathBuf::from("/Users/ada/.claude-work/.credentials.json")
            }
        );
        // The token variable first, on either.
        let with_token = [
            ("HOME", "/h"),
            ("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-long"),
        ];
        for macos in [true, false] {
            let login = ClaudeCliLogin::find_in(env(&with_token), macos, runner.clone()).unwrap();
            assert_eq!(login.source(), &ClaudeCliSource::EnvToken);
        }
    }
}
