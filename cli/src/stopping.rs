//! Being stopped without logging anyone out. `SIGTERM` (what `docker stop`, systemd, Kubernetes
//! and `timeout` send), `SIGHUP` (a closed terminal), `SIGINT` and `SIGQUIT` are caught for the
//! whole run. Outside a refresh in flight they act at once: the provider is drained — a wait for
//! a lock ends, giving back what it took, and a request not sent yet is not sent — and the
//! process exits `128 + n` as soon as the command has let go. While a refresh's answer is on its
//! way, the exit waits until the answer is kept (at most the refresh timeout, plus the write);
//! a second signal changes nothing, only `SIGKILL` can cut it short. After a signal nothing more
//! is printed on stdout.

use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use entelix_auth_claude_code::ClaudeCodeOAuthProvider;

/// How long the command may take to let go once the provider is drained (it ends within
/// milliseconds: every wait sees the stop); past it the process exits anyway, holding nothing
/// a drained provider could hold.
pub(super) const LET_GO: Duration = Duration::from_secs(2);

/// The provider a command runs, so that a signal can drain it, even one that arrives before it
/// exists.
#[derive(Default)]
pub(super) struct Stopper {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    provider: Option<ClaudeCodeOAuthProvider>,
    stopped: bool,
}

impl Stopper {
    /// The command's provider: drained at once if a signal came first.
    pub(super) fn register(&self, provider: &ClaudeCodeOAuthProvider) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.stopped {
            // Dropped: draining happens when `drain` is called, not when it is awaited.
            drop(provider.drain());
        }
        state.provider = Some(provider.clone());
    }

    /// A signal came: drain the provider (if there is one yet) and wait until none of its
    /// refreshes is in flight.
    pub(super) async fn stop(&self) {
        let drained = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.stopped = true;
            state.provider.as_ref().map(ClaudeCodeOAuthProvider::drain)
        };
        if let Some(drained) = drained {
            drained.await;
        }
    }
}

/// The signals that stop the command, caught from the start.
pub(super) struct Signals {
    #[cfg(unix)]
    streams: Vec<(u8, tokio::signal::unix::Signal)>,
    #[cfg(windows)]
    streams: Vec<(u8, WindowsSignal)>,
}

impl Signals {
    /// Catch `SIGTERM`, `SIGHUP`, `SIGINT` and `SIGQUIT` (on Windows: Ctrl-C, Ctrl-Break and
    /// the console closing, shown as 2, 3 and 1). Call inside the runtime.
    pub(super) fn install() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let kinds = [
                (15, SignalKind::terminate()),
                (1, SignalKind::hangup()),
                (2, SignalKind::interrupt()),
                (3, SignalKind::quit()),
            ];
            let mut streams = Vec::with_capacity(kinds.len());
            for (number, kind) in kinds {
                streams.push((number, signal(kind)?));
            }
            Ok(Self { streams })
        }
        #[cfg(windows)]
        {
            use tokio::signal::windows;
            Ok(Self {
                streams: vec![
                    (2, WindowsSignal::CtrlC(windows::ctrl_c()?)),
                    (3, WindowsSignal::CtrlBreak(windows::ctrl_break()?)),
                    (1, WindowsSignal::CtrlClose(windows::ctrl_close()?)),
                ],
            })
        }
    }

    /// The number of the first signal to arrive.
    pub(super) async fn next(&mut self) -> u8 {
        let waiting = self.streams.iter_mut().map(|(number, stream)| {
            let number = *number;
            let next: Waiting<'_> = Box::pin(async move {
                stream.recv().await;
                number
            });
            next
        });
        first_of(waiting.collect()).await
    }
}

/// A Windows console event stream.
#[cfg(windows)]
pub(super) enum WindowsSignal {
    CtrlC(tokio::signal::windows::CtrlC),
    CtrlBreak(tokio::signal::windows::CtrlBreak),
    CtrlClose(tokio::signal::windows::CtrlClose),
}

#[cfg(windows)]
impl WindowsSignal {
    async fn recv(&mut self) -> Option<()> {
        match self {
            Self::CtrlC(s) => s.recv().await,
            Self::CtrlBreak(s) => s.recv().await,
            Self::CtrlClose(s) => s.recv().await,
        }
    }
}

/// A wait for one signal.
type Waiting<'a> = std::pin::Pin<Box<dyn Future<Output = u8> + Send + 'a>>;

/// The output of the first of `futures` to finish.
async fn first_of(mut futures: Vec<Waiting<'_>>) -> u8 {
    std::future::poll_fn(move |cx| {
        for future in &mut futures {
            if let std::task::Poll::Ready(out) = future.as_mut().poll(cx) {
                return std::task::Poll::Ready(out);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
