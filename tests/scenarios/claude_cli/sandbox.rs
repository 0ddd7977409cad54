//! A sandbox as people make one for an agent (`bwrap`, Debian's `bubblewrap`): a mount namespace
//! of its own inside the scenario's network namespace, the system read-only, an empty home and
//! `/tmp`, and only what is handed in: the `claude` CLI, the proxy's CA, a broker's mirror
//! directory as its config dir (read-only) and the broker's socket. A shell inside runs the
//! steps it is given, one at a time when the test says `go`, writing each step's output and
//! exit status into a control directory; meanwhile the test can look at everything the sandbox
//! can read through `/proc/<pid>/root`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where things are inside the sandbox.
pub const HOME: &str = "/home/agent";
pub const CONFIG: &str = "/home/agent/.claude";
pub const CLAUDE: &str = "/opt/claude/claude";
pub const OURS: &str = "/opt/ccauth/claude-code-auth";
pub const SOCKET: &str = "/run/claude-code-auth/broker.sock";
/// Where a mirror goes when the CLI keeps a config dir of its own (`SecureStorageDir`).
pub const LOGIN: &str = "/run/claude-login";

/// How the mirror is handed to the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The mirror is the CLI's config dir (`CLAUDE_CONFIG_DIR`), read-only: every CLI version.
    ConfigDir,
    /// The mirror, read-only, is where the CLI keeps its login
    /// (`CLAUDE_SECURESTORAGE_CONFIG_DIR`); its config dir is its own and writable.
    SecureStorageDir,
}
const CA: &str = "/opt/ca.pem";
const CONTROL: &str = "/control";

/// A running sandbox.
pub struct Sandbox {
    child: Child,
    control: tempfile::TempDir,
    steps: usize,
}

impl Sandbox {
    /// Start a sandbox holding `mirror` as the CLI's login (as `layout` says) and `socket` as
    /// the broker's, reaching the network through `proxy` (trusting `ca`), that will run `steps`
    /// (shell commands, each started when [`Self::go`] says so).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        layout: Layout,
        claude: &Path,
        ours: &Path,
        mirror: &Path,
        socket: Option<&Path>,
        proxy: &str,
        ca: &Path,
        steps: &[String],
    ) -> Self {
        let control = tempfile::tempdir().unwrap();
        let mut script = String::from("echo $$ > /control/pid\n");
        for (i, step) in steps.iter().enumerate() {
            script.push_str(&format!(
                "while [ ! -e /control/go{i} ]; do sleep 0.02; done\n({step}) > /control/out{i} 2> /control/err{i}; echo $? > /control/rc{i}.tmp; mv /control/rc{i}.tmp /control/rc{i}\n"
            ));
        }
        script.push_str("while [ ! -e /control/exit ]; do sleep 0.02; done\n");
        let mut command = Command::new("bwrap");
        for dir in ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"] {
            if Path::new(dir).exists() {
                command.args(["--ro-bind", dir, dir]);
            }
        }
        command
            .args([
                "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/home",
            ])
            .args(["--dir", HOME])
            .args(["--dir", CONFIG])
            .arg("--ro-bind")
            .arg(claude.parent().unwrap())
            .arg("/opt/claude")
            .arg("--ro-bind")
            .arg(ours)
            .arg(OURS)
            .arg("--ro-bind")
            .arg(ca)
            .arg(CA)
            .arg("--ro-bind")
            .arg(mirror)
            .arg(match layout {
                Layout::ConfigDir => CONFIG,
                Layout::SecureStorageDir => LOGIN,
            })
            .arg("--bind")
            .arg(control.path())
            .arg(CONTROL);
        if let Some(socket) = socket {
            command.arg("--bind").arg(socket).arg(SOCKET);
        }
        command
            .args(["--clearenv", "--die-with-parent", "--chdir", HOME])
            .args(["--setenv", "PATH", "/usr/bin:/bin"])
            .args(["--setenv", "HOME", HOME])
            .args(["--setenv", "CLAUDE_CONFIG_DIR", CONFIG])
            .args(match layout {
                Layout::ConfigDir => &[][..],
                Layout::SecureStorageDir => &["--setenv", "CLAUDE_SECURESTORAGE_CONFIG_DIR", LOGIN],
            })
            .args(["--setenv", "HTTPS_PROXY", proxy])
            .args(["--setenv", "HTTP_PROXY", proxy])
            .args(["--setenv", "NODE_EXTRA_CA_CERTS", CA])
            .args(["--setenv", "DISABLE_AUTOUPDATER", "1"])
            .args(["--setenv", "DISABLE_TELEMETRY", "1"])
            .args(["--setenv", "DISABLE_ERROR_REPORTING", "1"])
            .args(["--setenv", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"])
            .args(["/bin/sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = command
            .spawn()
            .expect("bwrap (Debian's bubblewrap) runs the sandbox");
        let sandbox = Self {
            child,
            control,
            steps: steps.len(),
        };
        sandbox.wait_for("pid");
        sandbox
    }

    fn path(&self, name: &str) -> PathBuf {
        self.control.path().join(name)
    }

    fn wait_for(&self, name: &str) {
        let started = Instant::now();
        while !self.path(name).exists() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the sandbox never wrote {name}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Start step `i`.
    pub fn go(&self, i: usize) {
        assert!(i < self.steps);
        std::fs::write(self.path(&format!("go{i}")), "").unwrap();
    }

    /// Wait for step `i`: its exit status, stdout and stderr.
    pub fn done(&self, i: usize) -> (i32, String, String) {
        self.wait_for(&format!("rc{i}"));
        let read = |name: String| std::fs::read_to_string(self.path(&name)).unwrap_or_default();
        let rc = read(format!("rc{i}")).trim().parse().unwrap_or(-1);
        (rc, read(format!("out{i}")), read(format!("err{i}")))
    }

    /// The sandbox's shell: its view of the file system is `/proc/<pid>/root`.
    fn pid(&self) -> u32 {
        std::fs::read_to_string(self.path("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Every file the sandbox can read (beside the system directories it shares read-only
    /// with the host, `/usr`, `/lib`…, and the two programs' installs), and the environment and command line of every process
    /// in it, that holds one of `secrets`: `(where, which secret)`.
    pub fn files_holding(&self, secrets: &[&str]) -> Vec<(String, usize)> {
        let root = PathBuf::from(format!("/proc/{}/root", self.pid()));
        let mut found = Vec::new();
        let mut stack = vec![root.clone()];
        let skip = ["usr", "bin", "sbin", "lib", "lib64", "proc", "sys", "dev"];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                let top = path.strip_prefix(&root).unwrap();
                if meta.is_dir() {
                    let shared = top.components().count() == 1
                        && skip.contains(&top.to_str().unwrap_or_default());
                    // The CLI's and our binaries, read-only from the host's installs.
                    let binaries = top == Path::new("opt/claude") || top == Path::new("opt/ccauth");
                    if shared || binaries {
                        continue;
                    }
                    stack.push(path);
                } else if meta.is_file()
                    && let Ok(bytes) = std::fs::read(&path)
                {
                    for (i, secret) in secrets.iter().enumerate() {
                        if memmem(&bytes, secret.as_bytes()) {
                            found.push((format!("/{}", top.display()), i));
                        }
                    }
                }
            }
        }
        // The processes: the shell and what it runs share its mount namespace.
        let namespace = std::fs::read_link(format!("/proc/{}/ns/mnt", self.pid())).ok();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok() != namespace {
                continue;
            }
            for what in ["environ", "cmdline"] {
                let bytes = std::fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default();
                for (i, secret) in secrets.iter().enumerate() {
                    if memmem(&bytes, secret.as_bytes()) {
                        found.push((format!("/proc/{pid}/{what}"), i));
                    }
                }
            }
        }
        found
    }

    /// Let the sandbox end, and say how it went.
    pub fn end(mut self) -> String {
        std::fs::write(self.path("exit"), "").unwrap();
        let output = self.child.wait().unwrap();
        let mut stderr = String::new();
        use std::io::Read;
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut stderr);
        }
        format!("{output}: {stderr}")
    }
}

fn memmem(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
