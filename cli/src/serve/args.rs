//! `serve`'s options.

use std::path::PathBuf;
use std::time::Duration;

/// How `serve` hands the login out.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServeArgs {
    /// Refresh when the token expires within this long, so a token handed out always has more
    /// left than the `claude` CLI's 5-minute refresh window (`15m`, `20m`; more than 5m)
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = lead)]
    pub(crate) lead: Duration,
    /// Keep DIR/.credentials.json with the access token, its expiry, scopes, subscription
    /// type and rate-limit tier — never the refresh token (repeatable). Mount the directory
    /// into the sandbox, not the file
    #[arg(long = "mirror", value_name = "DIR")]
    pub(crate) mirrors: Vec<PathBuf>,
    /// Owner of what the mirrors write (the sandbox's user), as numbers
    #[arg(long, value_name = "UID[:GID]")]
    pub(crate) mirror_owner: Option<String>,
    /// Listen on this Unix socket (HTTP/1.1: GET /v1/token, /v1/header, /v1/status, POST
    /// /v1/refresh), mode 0600
    #[arg(long, value_name = "PATH")]
    pub(crate) socket: Option<PathBuf>,
    /// Give the socket to this group, mode 0660 (a name or a gid)
    #[arg(long, value_name = "GROUP", requires = "socket")]
    pub(crate) socket_group: Option<String>,
    /// A user who may use the socket (repeatable; default: this user only), checked on each
    /// connection's peer credentials
    #[arg(long = "allow-uid", value_name = "UID", requires = "socket")]
    pub(crate) allow_uids: Vec<u32>,
    /// Write this file once the first mirror is written and the socket listens (removed at
    /// the end), for supervisors
    #[arg(long, value_name = "PATH")]
    pub(crate) ready_file: Option<PathBuf>,
    /// Refresh if needed, write the mirrors and exit (for cron)
    #[arg(long)]
    pub(crate) once: bool,
}

/// A lead: a duration longer than the CLI's 5-minute window.
fn lead(text: &str) -> Result<Duration, String> {
    let lead = crate::parse_duration(text)?;
    if lead <= Duration::from_secs(5 * 60) {
        return Err(format!(
            "`{text}`: the lead must be more than 5m, the `claude` CLI's refresh window (a \
             mirrored token inside it would make the CLI try to refresh it)"
        ));
    }
    Ok(lead)
}
