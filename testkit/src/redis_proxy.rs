//! A loopback TCP proxy in front of a Redis server that can freeze a client right after a chosen
//! command: it forwards the client's commands one by one and, once armed, stops forwarding after
//! the first one that matches — a `SET … NX` (the lease taken: before any refresh request could
//! leave), or any command holding given words (the answer kept: after the endpoint answered,
//! before the login is written) — holding the rest until released. A test can kill the client or
//! stop it there, deterministically.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The proxy; it runs until dropped.
pub struct RedisProxy {
    port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    /// The words (upper-cased) a command must hold for the hold to start after it, and how many
    /// such commands are let through before that.
    armed: Mutex<Option<(Vec<Vec<u8>>, usize)>>,
    holding: AtomicBool,
    held: Notify,
    released: Notify,
}

impl RedisProxy {
    /// A proxy to the Redis server at `127.0.0.1:upstream_port`.
    pub async fn start(upstream_port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared = accepting.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)).await {
                        let _ = relay(client, server, shared).await;
                    }
                });
            }
        });
        Ok(Self { port, shared, task })
    }

    /// `redis://127.0.0.1:port` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Hold every client's commands after the next `SET … NX` that passes.
    pub fn hold_after_next_lease(&self) {
        self.hold_after_nth_with(1, &["\r\nSET", "\r\nNX\r\n"]);
    }

    /// Hold every client's commands after the `nth` one (from 1) whose RESP bytes hold each of
    /// `words` (compared without case).
    pub fn hold_after_nth_with(&self, nth: usize, words: &[&str]) {
        let words = words
            .iter()
            .map(|w| w.as_bytes().to_ascii_uppercase())
            .collect();
        *self
            .shared
            .armed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((words, nth.saturating_sub(1)));
    }

    /// Wait until a client has taken a lease and its later commands are held.
    pub async fn holding(&self) {
        loop {
            let held = self.shared.held.notified();
            if self.shared.holding.load(Ordering::SeqCst) {
                return;
            }
            held.await;
        }
    }

    /// Forward what is held, and everything after it.
    pub fn release(&self) {
        self.shared.holding.store(false, Ordering::SeqCst);
        self.shared.released.notify_waiters();
    }
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Server to client as it comes; client to server one command at a time, through the hold.
async fn relay(client: TcpStream, server: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let answers = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut pending = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while let Some(end) = command_end(&pending) {
            while shared.holding.load(Ordering::SeqCst) {
                let released = shared.released.notified();
                if !shared.holding.load(Ordering::SeqCst) {
                    break;
                }
                released.await;
            }
            let command: Vec<u8> = pending.drain(..end).collect();
            server_write.write_all(&command).await?;
            if shared.matches(&command) {
                shared.holding.store(true, Ordering::SeqCst);
                shared.held.notify_waiters();
            }
        }
        let read = client_read.read(&mut chunk).await?;
        if read == 0 {
            answers.abort();
            return Ok(());
        }
        pending.extend_from_slice(&chunk[..read]);
    }
}

/// Where the first complete RESP command in `buffer` ends (`*N` then `N` bulk strings).
fn command_end(buffer: &[u8]) -> Option<usize> {
    let (count, mut at) = number_line(buffer, 0, b'*')?;
    for _ in 0..count {
        let (len, start) = number_line(buffer, at, b'$')?;
        at = start + usize::try_from(len).ok()? + 2;
        if at > buffer.len() {
            return None;
        }
    }
    Some(at)
}

/// `<mark><number>\r\n` at `at`: the number and where the next line starts.
fn number_line(buffer: &[u8], at: usize, mark: u8) -> Option<(i64, usize)> {
    if *buffer.get(at)? != mark {
        return None;
    }
    let end = buffer[at..].windows(2).position(|w| w == b"\r\n")? + at;
    let number = std::str::from_utf8(&buffer[at + 1..end])
        .ok()?
        .parse()
        .ok()?;
    Some((number, end + 2))
}

impl Shared {
    /// Whether the hold starts after `command` (and disarm it if so).
    fn matches(&self, command: &[u8]) -> bool {
        let mut armed = self.armed.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((words, before)) = armed.as_mut() else {
            return false;
        };
        if !holds_all(command, words) {
            return false;
        }
        if *before > 0 {
            *before -= 1;
            return false;
        }
        *armed = None;
        true
    }
}

/// Whether `command`, upper-cased, holds each of `words` (upper-cased already).
fn holds_all(command: &[u8], words: &[Vec<u8>]) -> bool {
    let upper = command.to_ascii_uppercase();
    words
        .iter()
        .all(|word| upper.windows(word.len()).any(|w| w == word.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::{command_end, holds_all};

    #[test]
    fn commands_are_split_where_they_end() {
        let set = b"*6\r\n$3\r\nSET\r\n$5\r\nlease\r\n$2\r\nid\r\n$2\r\nNX\r\n$2\r\nPX\r\n$5\r\n60000\r\n";
        let get = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        let both = [&set[..], &get[..]].concat();
        assert_eq!(command_end(&both), Some(set.len()));
        assert_eq!(command_end(&both[..set.len() - 1]), None);
        let lease = [b"\r\nSET".to_vec(), b"\r\nNX\r\n".to_vec()];
        assert!(holds_all(set, &lease));
        assert!(!holds_all(get, &lease));
    }
}
