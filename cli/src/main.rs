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
mod serve;
mod source;
mod stopping;
mod via_broker;
mod warnings;

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use entelix_auth_claude_code::{
    ClaudeCodeAuthError, ClaudeCodeOAuthConfig, ClaudeCodeOAuthProvider, Reaction, RefreshMode,
    TokenStatus,
};
use source::Source;
use stopping::{Signals, Stopper};

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
    /// Name of the login in the store [default: claude-code-auth]
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        env = "CLAUDE_CODE_AUTH_STORE_KEY"
    )]
    store_key: Option<String>,
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
    /// Length of a Redis store's refresh lease (`90s`, `2m`; default twice the refresh
    /// timeout, 60s): the longest a machine that died holding it blocks the others, who wait it
    /// out in the same call; it must exceed the refresh timeout
    #[arg(
        long,
        global = true,
        value_name = "DURATION",
        env = "CLAUDE_CODE_AUTH_STORE_LEASE",
        value_parser = parse_duration
    )]
    store_lease: Option<std::time::Duration>,
    /// Ask a broker (`claude-code-auth serve --socket PATH`) on this Unix socket instead of a
    /// store: for token, header, status and refresh inside a sandbox
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "CLAUDE_CODE_AUTH_BROKER",
        conflicts_with_all = ["credentials", "store"]
    )]
    broker: Option<PathBuf>,
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
    /// Keep the login on this host and hand sandboxes access tokens only: mirror directories
    /// holding a credential file without a refresh token, and a Unix socket
    Serve(serve::ServeArgs),
    /// Show a refresh end to end with no account: a loopback token endpoint, a temporary
    /// credential file holding an expired token, the sandboxed component, the rewritten file.
    Demo,
}

/// `90`, `90s`, `1500ms`, `2m`: a duration as people write it (bare numbers are seconds).
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |at| text.split_at(at));
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (write 90s, 2m or 1500ms)"))?;
    let millis = match unit {
        "" | "s" => value.checked_mul(1000),
        "ms" => Some(value),
        "m" => value.checked_mul(60_000),
        _ => None,
    }
    .ok_or_else(|| format!("`{text}` is not a duration (write 90s, 2m or 1500ms)"))?;
    Ok(std::time::Duration::from_millis(millis))
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
    runtime.block_on(supervise(cli))
}

/// Run the command, stopping as [`stopping`] says when a signal comes.
async fn supervise(cli: Cli) -> ExitCode {
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => return fail(&format!("cannot catch termination signals: {e}"), 1),
    };
    let stopper = Arc::new(Stopper::default());
    let serving = matches!(cli.command, Command::Serve(_));
    let shutdown = Arc::new(tokio::sync::Notify::new());
    let mut command = tokio::spawn(run(cli, stopper.clone(), shutdown.clone()));
    let ended = |done: Result<Result<(), Failure>, tokio::task::JoinError>| match done {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(failure)) => fail(&failure.to_string(), failure.exit_code()),
        Err(e) => fail(&format!("the command failed: {e}"), 1),
    };
    tokio::select! {
        done = &mut command => ended(done),
        // The broker ends as a service should: its refresh in flight completes, its socket
        // goes, and it exits 0 (further signals change nothing; only SIGKILL cuts it short).
        signal = signals.next() => {
            if serving {
                shutdown.notify_one();
                return ended(command.await);
            }
            close_stdout();
            stopper.stop().await;
            let _ = tokio::time::timeout(stopping::LET_GO, command).await;
            ExitCode::from(128 + signal)
        }
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

/// Run `cli`, printing to stdout; `stopper` gets the provider; `shutdown` ends `serve`.
async fn run(
    cli: Cli,
    stopper: Arc<Stopper>,
    shutdown: Arc<tokio::sync::Notify>,
) -> Result<(), Failure> {
    if matches!(cli.command, Command::Demo) {
        return demo::run().await;
    }
    if let Some(socket) = &cli.broker {
        return via_broker::run(&cli.command, socket).await;
    }
    let explicit_store = cli.store.is_some();
    let source = source::source(source::Choice {
        credentials: cli.credentials,
        store: cli.store,
        store_key: cli.store_key,
        secret: cli.store_secret_file,
        ca_file: cli.store_ca_file,
        plaintext: cli.store_plaintext,
        lease: cli.store_lease,
    })?;
    let config = provider_config(cli.token_url, cli.user_agent);
    match cli.command {
        Command::Import { file, force } => import_into(&source, explicit_store, &file, force).await,
        Command::Serve(args) => serve_from(args, source, config, shutdown).await,
        command => {
            let provider = ClaudeCodeOAuthProvider::with_config(source.store.clone(), config);
            stopper.register(&provider);
            one_shot(command, &provider, &source).await
        }
    }
}

/// The provider's settings from the command line.
fn provider_config(token_url: Option<String>, user_agent: Option<String>) -> ClaudeCodeOAuthConfig {
    let mut config = ClaudeCodeOAuthConfig::new();
    if let Some(url) = token_url {
        config = config.with_token_url(url);
    }
    if let Some(agent) = user_agent {
        config = config.with_user_agent(agent);
    }
    config
}

/// `import`: copy the login in `from` into the store `--store` named.
async fn import_into(
    source: &Source,
    explicit_store: bool,
    from: &Path,
    force: bool,
) -> Result<(), Failure> {
    if !explicit_store {
        return Err(Failure::Refused(
            "import copies a login into a store: name it with --store".into(),
        ));
    }
    let store = source.store.as_ref();
    print(&import::import(store, source.redis.as_ref(), from, force).await?)
}

/// `serve`: the broker, until `shutdown`.
async fn serve_from(
    args: serve::ServeArgs,
    source: Source,
    config: ClaudeCodeOAuthConfig,
    shutdown: Arc<tokio::sync::Notify>,
) -> Result<(), Failure> {
    #[cfg(unix)]
    {
        // The lead is the provider's skew: it refreshes when the token expires within it.
        let config = config.with_expiry_skew(args.lead);
        let provider = ClaudeCodeOAuthProvider::with_config(source.store, config);
        serve::run(args, provider, shutdown).await
    }
    #[cfg(not(unix))]
    {
        let _ = (args, source, config, shutdown);
        Err(Failure::Refused(
            "serve needs a Unix system (its socket and mirrors)".into(),
        ))
    }
}

/// `status`, `token`, `header` or `refresh`: one answer on stdout.
async fn one_shot(
    command: Command,
    provider: &ClaudeCodeOAuthProvider,
    source: &Source,
) -> Result<(), Failure> {
    let out = match command {
        Command::Status { json } => return status(provider, source, json).await,
        Command::Token => {
            let (token, status) = provider.token_with_status().await?;
            warn_login_deadline(&status);
            token.expose_secret().to_owned()
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
        Command::Demo | Command::Import { .. } | Command::Serve(_) => {
            unreachable!("handled in run")
        }
    };
    print(&out)
}

/// `status`: the stored credential, then the exit `token` would give when logged out.
async fn status(
    provider: &ClaudeCodeOAuthProvider,
    source: &Source,
    json: bool,
) -> Result<(), Failure> {
    let location = provider.location();
    let status = provider.status().await?;
    if let Some(path) = &source.file {
        warn_links(path);
    }
    let shown = if json {
        render::status_json(source.kind, &location, &status)
    } else {
        render::status_text(source.kind, &location, &status, chrono::Utc::now())
    };
    print(&shown)?;
    // Logged out: fail as `token` would (exit 4), so a script can test `status` alone, with its
    // words (the login's time limit, say). A logged-out login sends nothing.
    if status.logged_in {
        return Ok(());
    }
    Err(match provider.header_with_status().await {
        Err(error) => error.into(),
        Ok(_) => ClaudeCodeAuthError::LoggedOut { path: location }.into(),
    })
}

/// One line on stderr when the login ends within three days (stdout is left alone).
fn warn_login_deadline(status: &TokenStatus) {
    if let Some(line) = render::login_warning(status, chrono::Utc::now()) {
        let _ = writeln!(std::io::stderr(), "warning: {line}");
    }
}

/// Warnings when the credential file has other names. Hard links: a refresh writes a new file
/// and renames it over this name, so the other names keep the login it spent. A symlinked
/// file: ours writes through it, but the `claude` CLI (2.1.332) replaces the link with a regular
/// file at its next write, and the link's target then keeps the login that write spent.
fn warn_links(path: &std::path::Path) {
    const INSTEAD: &str = "give both the same config directory instead (link the directory, or set CLAUDE_CONFIG_DIR)";
    let shown = render::shown(&path.display().to_string());
    if std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink()) {
        let target = std::fs::canonicalize(path)
            .map(|t| render::shown(&t.display().to_string()))
            .unwrap_or_else(|_| "its target".into());
        let _ = writeln!(
            std::io::stderr(),
            "warning: {shown} is a symlink to {target}; the `claude` CLI replaces the link with a \
             file when it next refreshes, and {target} then keeps a login it spent ({INSTEAD})"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.nlink() > 1
        {
            let _ = writeln!(
                std::io::stderr(),
                "warning: {shown} has {} hard links; a refresh replaces this name only and the \
                 others keep a login it spent ({INSTEAD})",
                meta.nlink()
            );
        }
    }
}

/// Whether stdout still takes output: not after a signal (the exit code says what happened).
static STDOUT_OPEN: std::sync::Mutex<bool> = std::sync::Mutex::new(true);

/// Print nothing more on stdout (a signal came); a print under way finishes first.
fn close_stdout() {
    *STDOUT_OPEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = false;
}

/// Print `text` and a newline; a closed stdout is an error like any other.
fn print(text: &str) -> Result<(), Failure> {
    // A closed standard output would take the token nowhere while the command says it worked.
    if STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Failure::Output(io::Error::other(
            "it was closed when the command started",
        )));
    }
    let open = STDOUT_OPEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !*open {
        return Ok(());
    }
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(Failure::Output)
}
