//! `claude-code-auth serve`: a broker on the host. One process keeps the login (from any store
//! the other commands take, under all the CLI's locks), refreshes it ahead of expiry, and hands
//! sandboxes and containers access tokens only — through mirror directories holding a
//! `.credentials.json` without a refresh token ([`mirror`]) and a Unix socket speaking the
//! broker protocol ([`socket`]). A foreground process: it logs to stderr (never a token), is
//! ready once the first mirror is written and the socket listens (`--ready-file`), and ends
//! cleanly on `SIGTERM`: a refresh in flight completes first, the socket file is removed.

mod args;
#[cfg(unix)]
mod broker;
#[cfg(unix)]
mod mirror;
#[cfg(unix)]
mod socket;

pub(super) use args::ServeArgs;

#[cfg(unix)]
pub(super) use unix::run;

/// One line on stderr, as the broker says what it does.
#[cfg(unix)]
fn log(line: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "claude-code-auth serve: {}",
        super::render::shown(line)
    );
}

#[cfg(unix)]
mod unix {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use entelix_auth_claude_code::ClaudeCodeOAuthProvider;
    use tokio::sync::Notify;

    use super::args::ServeArgs;
    use super::broker::{Broker, until};
    use super::log;
    use super::mirror::{Mirror, Owner};
    use super::socket::Socket;
    use crate::Failure;

    /// The longest between two looks at the login (a refresh by the host's CLI reaches the
    /// mirrors within it).
    const LOOK_EVERY: Duration = Duration::from_secs(30);

    /// Serve until `shutdown` is notified (a signal), or once with `--once`. `provider` refreshes
    /// when the token expires within the lead (its skew).
    pub(crate) async fn run(
        args: ServeArgs,
        provider: ClaudeCodeOAuthProvider,
        shutdown: Arc<Notify>,
    ) -> Result<(), Failure> {
        let mirrors = open_mirrors(&args)?;
        let group = args.socket_group.as_deref().map(group_id).transpose()?;
        let broker = Arc::new(Broker::new(provider.clone(), mirrors));
        let current = broker.current().await?;
        if !broker.stamp(&current, true) {
            return Err(Failure::Refused(
                "the mirrors could not be written (above)".into(),
            ));
        }
        log(&format!(
            "the login's token is valid until {}",
            until(&current.status)
        ));
        if args.once {
            return Ok(());
        }
        let socket = match &args.socket {
            Some(path) => Some(Arc::new(
                Socket::bind(path, group).map_err(Failure::Refused)?,
            )),
            None => None,
        };
        let stop_socket = Arc::new(Notify::new());
        let serving = socket
            .clone()
            .map(|socket| listen(&args, socket, broker.clone(), stop_socket.clone()));
        if let Some(ready) = &args.ready_file {
            write_ready(ready).map_err(|e| {
                Failure::Refused(format!(
                    "cannot write the ready file {}: {e}",
                    ready.display()
                ))
            })?;
        }
        keep_fresh(&broker, &current.status, args.lead, &shutdown).await;
        log("stopping: a refresh in flight completes first");
        stop_socket.notify_one();
        if let Some(socket) = &socket {
            socket.remove();
        }
        provider.drain().await;
        if let Some(serving) = serving {
            serving.abort();
        }
        if let Some(ready) = &args.ready_file {
            let _ = std::fs::remove_file(ready);
        }
        log("stopped");
        Ok(())
    }

    /// The `--mirror` directories, owned as `--mirror-owner` says; at least one way out.
    fn open_mirrors(args: &ServeArgs) -> Result<Vec<Mirror>, Failure> {
        let owner = args
            .mirror_owner
            .as_deref()
            .map(Owner::parse)
            .transpose()
            .map_err(Failure::Refused)?;
        let mirrors = args
            .mirrors
            .iter()
            .map(|dir| Mirror::open(dir, owner))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Failure::Refused)?;
        if mirrors.is_empty() && args.socket.is_none() {
            return Err(Failure::Refused(
                "serve hands out tokens through --mirror DIR or --socket PATH: give one".into(),
            ));
        }
        Ok(mirrors)
    }

    /// Answer on `socket` the uids `--allow-uid` names (else ours) until `stop`.
    fn listen(
        args: &ServeArgs,
        socket: Arc<Socket>,
        broker: Arc<Broker>,
        stop: Arc<Notify>,
    ) -> tokio::task::JoinHandle<()> {
        let me = rustix::process::geteuid().as_raw();
        let allowed = Arc::new(if args.allow_uids.is_empty() {
            vec![me]
        } else {
            args.allow_uids.clone()
        });
        log(&format!(
            "listening on {} for uid {}",
            args.socket.as_deref().unwrap_or(Path::new("")).display(),
            allowed
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        tokio::spawn(async move { socket.serve(broker, allowed, &stop).await })
    }

    /// Look at the login when its token enters `lead` (refreshing it, the mirrors re-stamped),
    /// and at least every [`LOOK_EVERY`], until `shutdown`.
    async fn keep_fresh(
        broker: &Broker,
        status: &entelix_auth_claude_code::TokenStatus,
        lead: Duration,
        shutdown: &Notify,
    ) {
        let mut next = next_look(status, lead);
        loop {
            tokio::select! {
                () = shutdown.notified() => return,
                () = tokio::time::sleep(next) => {
                    next = match broker.current().await {
                        Ok(current) => next_look(&current.status, lead),
                        Err(error) => {
                            log(&format!("the login could not be refreshed: {error}"));
                            LOOK_EVERY
                        }
                    };
                }
            }
        }
    }

    /// When to look again: when the token enters the lead (the refresh is due), and at least
    /// every [`LOOK_EVERY`].
    fn next_look(status: &entelix_auth_claude_code::TokenStatus, lead: Duration) -> Duration {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let lead_ms = i64::try_from(lead.as_millis()).unwrap_or(i64::MAX);
        status
            .expires_at_ms
            .map(|at| at.saturating_sub(lead_ms).saturating_sub(now_ms))
            .filter(|due| *due > 0)
            .map_or(LOOK_EVERY, |due| {
                Duration::from_millis(u64::try_from(due).unwrap_or(u64::MAX)).min(LOOK_EVERY)
            })
    }

    /// `GROUP` as a gid: a number, or a name in `/etc/group`.
    fn group_id(group: &str) -> Result<u32, Failure> {
        if let Ok(gid) = group.parse() {
            return Ok(gid);
        }
        std::fs::read_to_string("/etc/group")
            .ok()
            .and_then(|groups| {
                groups.lines().find_map(|line| {
                    let mut fields = line.split(':');
                    (fields.next() == Some(group))
                        .then(|| fields.nth(1).and_then(|gid| gid.parse().ok()))
                        .flatten()
                })
            })
            .ok_or_else(|| {
                Failure::Refused(format!(
                    "no group `{group}` (give a name in /etc/group or a gid)"
                ))
            })
    }

    /// The ready file: written whole (a new file renamed into place) once serving.
    fn write_ready(path: &Path) -> std::io::Result<()> {
        let temp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&temp, format!("{}\n", std::process::id()))?;
        std::fs::rename(&temp, path)
    }
}
