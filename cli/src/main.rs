//! The `claude-code-auth` command line: inspect, use and refresh the `claude` CLI's credential
//! through the sandboxed component.
//!
//! Only `token` and `header` ever print a token. Errors are one line on stderr and a non-zero exit
//! code that says how to react (see [`Failure::exit_code`]).

// The argument docs are clap's help text, where a URL is shown as written.
#![allow(rustdoc::bare_urls)]

mod demo;
mod import;
mod render;
mod source;
mod warnings;

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use entelix_auth_claude_code::{
    ClaudeCodeAuthError, ClaudeCodeOAuthConfig, ClaudeCodeOAuthProvider, Reaction, RefreshMode,
    TokenStatus,
};
use source::Source;

/// Use the `claude` CLI's Claude.ai login from other programs, refreshed in a sandbox.
#[derive(Debug, Parser)]
#[command(name = "claude-code-auth", version, about)]
struct Cli {
    /// Credential file [default: the token in $CLAUDE_CODE_OAUTH_TOKEN when set; else the macOS
    /// keychain item on macOS, or $CLAUDE_CONFIG_DIR/.credentials.json, else
    /// ~/.claude/.credentials.json]
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "store")]
    credentials: Option<PathBuf>,
    /// Credential store: redis://… or rediss://… (TLS; an ACL user and password may be in the
    /// URL, never shown), or a path, meaning a credential file as --credentials does
    #[arg(
        long,
        global = true,
        value_name = "URL|PATH",
        env = "CLAUDE_CODE_AUTH_STORE",
        hide_env_values = true
    )]
    store: Option<String>,
    /// Name of the login in the store
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        env = "CLAUDE_CODE_AUTH_STORE_KEY",
        default_value = "claude-code-auth"
    )]
    store_key: String,
    /// File of 32 random bytes (mode 0600) the login is sealed with in the store
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "CLAUDE_CODE_AUTH_STORE_SECRET_FILE",
        hide_env_values = true
    )]
    store_secret_file: Option<PathBuf>,
    /// PEM file of CA certificates to trust for a rediss:// store (a private CA), besides the
    /// web PKI roots and the files SSL_CERT_FILE and NODE_EXTRA_CA_CERTS name
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "CLAUDE_CODE_AUTH_STORE_CA_FILE"
    )]
    store_ca_file: Option<PathBuf>,
    /// Keep the login in the store unsealed: anyone who reads Redis or its backups reads the
    /// tokens
    #[arg(long, global = true)]
    store_plaintext: bool,
    /// Token endpoint [default: https://platform.claude.com/v1/oauth/token]
    #[arg(long, global = true, value_name = "URL")]
    token_url: Option<String>,
    /// User-Agent of the refresh request [default: axios/1.15.2, as the claude CLI sends]
    #[arg(long, global = true, value_name = "TEXT")]
    user_agent: Option<String>,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Show the stored credential: expiry, subscription, scopes. Never the token.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the access token alone, refreshing it first when it is about to expire.
    Token,
    /// Print `Authorization: Bearer <token>`, refreshing first when needed.
    Header,
    /// Refresh the access token when it is about to expire.
    Refresh {
        /// Refresh even when the token is still fresh.
        #[arg(long)]
        force: bool,
    },
    /// Copy the login in a credential file into the store (--store), refusing to replace a
    /// different login there
    Import {
        /// The credential file, as `claude login` wrote it.
        file: PathBuf,
        /// Replace a different login in the store.
        #[arg(long)]
        force: bool,
    },
    /// Show a refresh end to end with no account: a loopback token endpoint, a temporary
    /// credential file holding an expired token, the sandboxed component, the rewritten file.
    Demo,
}

/// Exit code for errors that a new login fixes because there is no credential.
const EXIT_MISSING: u8 = 3;
/// Exit code for an expired credential that cannot be renewed (log in again).
const EXIT_EXPIRED: u8 = 4;
/// Exit code for a credential, store or output that is unusable as it is.
const EXIT_REFUSED: u8 = 5;
/// Exit code for an unreachable token endpoint or a busy lock (retry later).
const EXIT_UNREACHABLE: u8 = 6;

/// Why a command failed.
enum Failure {
    /// The library's error: its kind says how to react.
    Auth(ClaudeCodeAuthError),
    /// Standard output could not take what was printed (closed, full).
    Output(io::Error),
    /// A step of the demo did not do what it shows.
    Demo(String),
    /// A command refused to do what it was asked as it was asked (exit 5).
    Refused(String),
}

impl Failure {
    /// 3 missing, 4 expired, 5 refused (or no usable stdout), 6 unreachable, 1 otherwise.
    fn exit_code(&self) -> u8 {
        match self {
            Self::Auth(error) => match error.reaction() {
                Reaction::Missing => EXIT_MISSING,
                Reaction::Expired => EXIT_EXPIRED,
                Reaction::Refused => EXIT_REFUSED,
                Reaction::Unreachable => EXIT_UNREACHABLE,
            },
            Self::Output(_) | Self::Refused(_) => EXIT_REFUSED,
            Self::Demo(_) => 1,
        }
    }
}

impl From<ClaudeCodeAuthError> for Failure {
    fn from(error: ClaudeCodeAuthError) -> Self {
        Self::Auth(error)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auth(error) => error.fmt(f),
            Self::Output(error) => write!(f, "cannot write to standard output: {error}"),
            Self::Demo(what) => write!(f, "demo check failed: {what}"),
            Self::Refused(what) => f.write_str(what),
        }
    }
}

fn main() -> ExitCode {
    harden_process();
    guard_standard_streams();
    warnings::show_on_stderr();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}"), 1),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(&failure.to_string(), failure.exit_code()),
    }
}

/// This process holds tokens in memory: no core dump may carry them away (`RLIMIT_CORE` 0), and
/// on Linux no other process of the user may attach to it or read its memory (not dumpable).
/// The library leaves such process-wide settings to its application.
fn harden_process() {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, setrlimit};
        let none = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        let _ = setrlimit(Resource::Core, none);
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let _ =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    }
}

/// Standard output was closed when the process started (`token >&-`).
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Rust reopens a standard stream that was closed at startup as `/dev/null` (read-write), so a
/// token printed to a closed stdout would vanish while the command says it worked. A stdout that
/// is `/dev/null` opened read-write is taken for that — a shell's `>/dev/null` opens it
/// write-only — and printing to it is an error.
fn guard_standard_streams() {
    #[cfg(unix)]
    {
        use rustix::fs::{FileType, OFlags, fcntl_getfl, fstat, stat};
        use std::os::fd::AsFd;
        let stdout = std::io::stdout();
        let fd = stdout.as_fd();
        let (Ok(out), Ok(null)) = (fstat(fd), stat("/dev/null")) else {
            return;
        };
        let is_null = FileType::from_raw_mode(out.st_mode) == FileType::CharacterDevice
            && out.st_rdev == null.st_rdev;
        let read_write = fcntl_getfl(fd).is_ok_and(|f| f & OFlags::RWMODE == OFlags::RDWR);
        STDOUT_CLOSED.store(is_null && read_write, std::sync::atomic::Ordering::Relaxed);
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "error: {}", render::shown(message));
    ExitCode::from(code)
}

/// Run `cli`, printing to stdout.
async fn run(cli: Cli) -> Result<(), Failure> {
    if matches!(cli.command, Command::Demo) {
        return demo::run().await;
    }
    let explicit_store = cli.store.is_some();
    let Source { kind, store, file } = source::source(source::Choice {
        credentials: cli.credentials,
        store: cli.store,
        store_key: cli.store_key,
        secret: cli.store_secret_file,
        ca_file: cli.store_ca_file,
        plaintext: cli.store_plaintext,
    })?;
    if let Command::Import { file: from, force } = &cli.command {
        if !explicit_store {
            return Err(Failure::Refused(
                "import copies a login into a store: name it with --store".into(),
            ));
        }
        return print(&import::import(store.as_ref(), from, *force).await?);
    }
    let mut config = ClaudeCodeOAuthConfig::new();
    if let Some(url) = cli.token_url {
        config = config.with_token_url(url);
    }
    if let Some(agent) = cli.user_agent {
        config = config.with_user_agent(agent);
    }
    let provider = ClaudeCodeOAuthProvider::with_config(store, config);
    let location = provider.location();
    let out = match cli.command {
        Command::Status { json } => {
            let status = provider.status().await?;
            if let Some(path) = &file {
                warn_hard_links(path);
            }
            let shown = if json {
                render::status_json(kind, &location, &status)
            } else {
                render::status_text(kind, &location, &status, chrono::Utc::now())
            };
            print(&shown)?;
            // Logged out: fail as `token` would (exit 4), so a script can test `status` alone.
            return match status.logged_in {
                true => Ok(()),
                false => Err(ClaudeCodeAuthError::LoggedOut { path: location }.into()),
            };
        }
        Command::Token => {
            let (header, status) = provider.header_with_status().await?;
            warn_login_deadline(&status);
            let token = header.expose_secret();
            token.strip_prefix("Bearer ").unwrap_or(token).to_owned()
        }
        Command::Header => {
            let (header, status) = provider.header_with_status().await?;
            warn_login_deadline(&status);
            format!("Authorization: {}", header.expose_secret())
        }
        Command::Refresh { force } => {
            let mode = match force {
                true => RefreshMode::Force,
                false => RefreshMode::IfNeeded,
            };
            let report = provider.refresh(mode).await?;
            warn_login_deadline(&report.status);
            render::refresh_text(&report)
        }
        Command::Demo | Command::Import { .. } => unreachable!("handled above"),
    };
    print(&out)
}

/// One line on stderr when the login ends within three days (stdout is left alone).
fn warn_login_deadline(status: &TokenStatus) {
    if let Some(line) = render::login_warning(status, chrono::Utc::now()) {
        let _ = writeln!(std::io::stderr(), "warning: {line}");
    }
}

/// A warning when the credential file has other names (hard links): a refresh writes a new file
/// and renames it over this name, so the others keep the old login, whose refresh token the
/// refresh spent. A symlink has no such problem.
fn warn_hard_links(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.nlink() > 1
        {
            let _ = writeln!(
                std::io::stderr(),
                "warning: {} has {} hard links; a refresh replaces this name only and the others \
                 keep a login it spent (link with a symlink instead)",
                render::shown(&path.display().to_string()),
                meta.nlink()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Print `text` and a newline; a closed stdout is an error like any other.
fn print(text: &str) -> Result<(), Failure> {
    // A closed standard output would take the token nowhere while the command says it worked.
    if STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Failure::Output(io::Error::other(
            "it was closed when the command started",
        )));
    }
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(Failure::Output)
}
