//! A real `redis-server` (Debian's package) on a free loopback port, without persistence, for
//! as long as the value lives: stopped, started again (empty, as after a restart without
//! persistence), paused and resumed, and killed on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A running (or stopped) `redis-server` on `127.0.0.1:port`.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    tls: Option<Tls>,
    scratch: tempfile::TempDir,
}

/// The PEM files of a TLS-only server.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The server's certificate (for `localhost` and `127.0.0.1`).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA that signed it.
    pub ca: PathBuf,
}

impl RedisServer {
    /// Whether `redis-server` can be run here.
    pub fn available() -> bool {
        Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Start one on a free port; panics when it does not answer within 10 s.
    pub fn start() -> Self {
        let mut server = Self::free();
        server.run();
        server
    }

    /// Start one that speaks TLS only (no plaintext port), with the certificate in `tls`.
    pub fn start_tls(tls: Tls) -> Self {
        let mut server = Self::free();
        server.tls = Some(tls);
        server.run();
        server
    }

    fn free() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        Self {
            port,
            child: None,
            tls: None,
            scratch: tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}")),
        }
    }

    /// A directory that lives as long as the server: state of the machines using it (their
    /// high-water marks), so that no test sees another's.
    pub fn scratch(&self) -> &std::path::Path {
        self.scratch.path()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:port`, or `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stop it (`SIGKILL`: whatever it held is gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Pause it (`SIGSTOP`): connections stay open, nothing answers, nothing is lost.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resume it after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap_or_else(|e| panic!("kill: {e}"));
            assert!(status.success(), "kill {signal} redis-server");
        }
    }

    /// Start it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// `redis-cli` with `args` against this server: its standard output.
    pub fn cli(&self, args: &[&str]) -> Vec<u8> {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(tls) = &self.tls {
            command.arg("--tls").arg("--cacert").arg(&tls.ca);
        }
        let output = command
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("redis-cli: {e}"));
        output.stdout
    }

    fn run(&mut self) {
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some(tls) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .args(["--tls-auth-clients", "no"]),
        };
        let child = command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            // Whatever it writes (a replica's full sync makes an RDB file) stays in its own dir.
            .arg("--dir")
            .arg(self.scratch.path())
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
        self.child = Some(child);
        let started = Instant::now();
        while self.cli(&["PING"]) != b"PONG\n" {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server on port {} did not answer",
                self.port
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
