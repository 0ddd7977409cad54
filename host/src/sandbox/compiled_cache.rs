//! The compiled component, cached on disk so a process starts in milliseconds instead of
//! compiling with Cranelift (hundreds of milliseconds, seconds in a debug build).
//!
//! wasmtime trusts the machine code it deserializes, so a cached artifact is used only when all
//! of this holds: its name carries the hash of the component bytes and of the engine's
//! compilation settings and wasmtime version; it is a regular file owned by this user and
//! writable by nobody else, in a directory owned by this user and writable by nobody else, whose
//! every ancestor is owned by root or this user and either writable by nobody else (as OpenSSH
//! requires of its files) or sticky (`/tmp`: nobody else can rename what is below it) — all
//! checked on the descriptors that are then read, the directory opened `O_DIRECTORY|O_NOFOLLOW`
//! and the file through it with `O_NOFOLLOW`, so no path can be swapped in between; and its
//! content carries an HMAC-SHA256 under a key kept in the same directory (32 random bytes,
//! `0600`). Anything else is ignored and recompiled. A cache that cannot be read or written never
//! fails a call. On Windows the owner and mode checks are not made (see `trusted` there); the
//! name and the MAC are.
//!
//! What the MAC adds to the ownership checks: an artifact that did not come from this cache
//! directory's own writes — copied in from another machine or user, restored from a backup,
//! planted before the key existed — is not loaded. What it does not do: stop code that runs as
//! this user, which can read the key (and could as well replace this program).
//!
//! Location: `$CLAUDE_CODE_AUTH_CACHE_DIR` when set (empty disables the cache), else the user's
//! cache directory (`$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches` on macOS,
//! `%LOCALAPPDATA%` on Windows) under `entelix-auth-claude-code/`.

use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::files::create_private_dir;

/// Environment variable naming the cache directory; empty disables the cache.
pub const CACHE_DIR_ENV: &str = "CLAUDE_CODE_AUTH_CACHE_DIR";

/// Length of the MAC in front of the artifact.
const MAC_LEN: usize = 32;

/// The key file, beside the artifacts.
const KEY_FILE: &str = "cache.key";

/// The component for `engine`: from the cache when a trustworthy artifact is there, else
/// compiled (and cached for the next process).
pub(crate) fn load_or_compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Component> {
    let Some(dir) = cache_dir_from(|name| std::env::var_os(name)) else {
        return Component::new(engine, wasm);
    };
    let name = format!("claude_code_auth-{}.cwasm", cache_key(engine, wasm));
    match load(engine, &dir, &name) {
        Ok(component) => return Ok(component),
        Err(why) => tracing::debug!(dir = %dir.display(), why, "not using the component cache"),
    }
    let component = Component::new(engine, wasm)?;
    if let Err(e) = save(&dir, &name, &component) {
        tracing::debug!(error = %e, dir = %dir.display(), "cannot cache the compiled component");
    }
    Ok(component)
}

/// Where the cache lives, from an environment lookup.
pub(crate) fn cache_dir_from(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    if let Some(dir) = env(CACHE_DIR_ENV) {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    let non_empty = |name| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = if cfg!(target_os = "macos") {
        non_empty("HOME").map(|home| home.join("Library/Caches"))
    } else if cfg!(windows) {
        non_empty("LOCALAPPDATA")
    } else {
        non_empty("XDG_CACHE_HOME").or_else(|| non_empty("HOME").map(|home| home.join(".cache")))
    }?;
    Some(base.join("entelix-auth-claude-code"))
}

/// A [`Hasher`] that feeds SHA-256, so wasmtime's compatibility hash becomes stable bytes.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Component bytes, engine settings and wasmtime version, hashed.
fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    hasher.write(wasm);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.write(env!("CARGO_PKG_VERSION").as_bytes());
    hex::encode(&hasher.0.finalize()[..16])
}

/// HMAC-SHA256 of `message` under `key`.
fn mac(key: &[u8; 32], message: &[u8]) -> [u8; MAC_LEN] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The key of the cache in `dir`; made (32 random bytes, `0600`) when `create` and there is none.
fn key(dir: &trusted::Dir, create: bool) -> Result<[u8; 32], &'static str> {
    if let Ok(bytes) = dir.read(KEY_FILE) {
        return bytes
            .try_into()
            .map_err(|_| "the cache key is not 32 bytes");
    }
    if !create {
        return Err("the cache has no key");
    }
    let key = trusted::Dir::fresh_key()?;
    dir.write(KEY_FILE, &key)
        .map_err(|_| "cannot write the cache key")?;
    Ok(key)
}

fn load(engine: &Engine, dir: &Path, name: &str) -> Result<Component, &'static str> {
    let dir = trusted::Dir::open(dir)?;
    let key = key(&dir, false)?;
    let bytes = dir.read(name)?;
    let (stored, artifact) = bytes
        .split_at_checked(MAC_LEN)
        .ok_or("artifact too short")?;
    // Not a secret comparison an attacker can time usefully: the artifact is not secret.
    if mac(&key, artifact).as_slice() != stored {
        return Err("the artifact's MAC does not match this cache's key");
    }
    deserialize(engine, artifact).ok_or("wasmtime refused the artifact")
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> Option<Component> {
    // SAFETY: wasmtime requires the bytes to come from `Component::serialize` of a compatible
    // engine. They do: the file name binds them to this component, engine configuration and
    // wasmtime version; the MAC binds them to what was written into this cache directory; the
    // file and every directory above it are this user's (or root's) and writable by no one
    // else, checked on the very descriptors read. wasmtime checks version and settings again in
    // the artifact header.
    unsafe { Component::deserialize(engine, artifact) }.ok()
}

fn save(dir: &Path, name: &str, component: &Component) -> std::io::Result<()> {
    create_private_dir(dir)?;
    let dir = trusted::Dir::open(dir).map_err(std::io::Error::other)?;
    let key = key(&dir, true).map_err(std::io::Error::other)?;
    let artifact = component.serialize().map_err(std::io::Error::other)?;
    let mut bytes = Vec::with_capacity(MAC_LEN + artifact.len());
    bytes.extend_from_slice(&mac(&key, &artifact));
    bytes.extend_from_slice(&artifact);
    dir.write(name, &bytes)
}

/// The cache directory, opened and checked once, then used only through its descriptor.
#[cfg(unix)]
mod trusted {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::{AsFd, OwnedFd};
    use std::path::Path;

    use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, fstat, openat, renameat, unlinkat};

    /// Largest artifact read (the component compiles to a few MiB).
    const MAX_ARTIFACT: u64 = 256 << 20;

    pub(super) struct Dir(OwnedFd);

    /// This user's, and writable by nobody else: what is needed of every file and directory the
    /// cache trusts; an ancestor may also be root's.
    fn private(stat: &Stat, or_root: bool) -> bool {
        let me = rustix::process::geteuid().as_raw();
        let owner_ok = stat.st_uid == me || (or_root && stat.st_uid == 0);
        let mode = Mode::from_raw_mode(stat.st_mode);
        owner_ok && !mode.intersects(Mode::WGRP | Mode::WOTH)
    }

    /// A directory such as `/tmp`: others may write in it, but the sticky bit keeps them from
    /// renaming or removing what is not theirs, so the directory below cannot be swapped. Only
    /// as an ancestor, and only root's or this user's.
    fn sticky(stat: &Stat) -> bool {
        let me = rustix::process::geteuid().as_raw();
        (stat.st_uid == me || stat.st_uid == 0)
            && Mode::from_raw_mode(stat.st_mode).contains(Mode::SVTX)
    }

    fn is(stat: &Stat, kind: FileType) -> bool {
        FileType::from_raw_mode(stat.st_mode) == kind
    }

    const DIRECTORY: FileType = FileType::Directory;
    const REGULAR: FileType = FileType::RegularFile;

    impl Dir {
        /// Open `path` as a directory without following a symlink, and check it and every
        /// directory above it.
        pub(super) fn open(path: &Path) -> Result<Self, &'static str> {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = openat(rustix::fs::CWD, path, flags, Mode::empty())
                .map_err(|_| "the cache directory cannot be opened (missing, or a symlink)")?;
            let stat = fstat(&fd).map_err(|_| "cannot stat the cache directory")?;
            if !is(&stat, DIRECTORY) || !private(&stat, false) {
                return Err("the cache directory is not this user's alone");
            }
            let real = std::fs::canonicalize(path).map_err(|_| "cannot resolve the cache path")?;
            for ancestor in real.ancestors().skip(1) {
                let stat = rustix::fs::stat(ancestor).map_err(|_| "cannot stat an ancestor")?;
                if !private(&stat, true) && !sticky(&stat) {
                    return Err("a directory above the cache is writable by others");
                }
            }
            Ok(Self(fd))
        }

        fn open_file(&self, name: &str, flags: OFlags) -> rustix::io::Result<File> {
            let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
            openat(&self.0, name, flags, Mode::from_raw_mode(0o600)).map(File::from)
        }

        /// The whole of `name`, if it is a private regular file of this user's.
        pub(super) fn read(&self, name: &str) -> Result<Vec<u8>, &'static str> {
            let file = self
                .open_file(name, OFlags::RDONLY)
                .map_err(|_| "no cached artifact (or a symlink)")?;
            let stat = fstat(file.as_fd()).map_err(|_| "cannot stat the artifact")?;
            if !is(&stat, REGULAR) || !private(&stat, false) {
                return Err("the artifact is not a private regular file of this user's");
            }
            let mut bytes = Vec::new();
            file.take(MAX_ARTIFACT)
                .read_to_end(&mut bytes)
                .map_err(|_| "cannot read the artifact")?;
            Ok(bytes)
        }

        /// 32 random bytes for a new cache key, from the kernel (`/dev/urandom` exists on every
        /// Unix this builds for; `getrandom(2)` does not).
        pub(super) fn fresh_key() -> Result<[u8; 32], &'static str> {
            let mut key = [0u8; 32];
            File::open("/dev/urandom")
                .and_then(|mut random| random.read_exact(&mut key))
                .map_err(|_| "no randomness for a cache key")?;
            Ok(key)
        }

        /// Replace `name` with `bytes`: a private temporary file made through the descriptor,
        /// renamed into place.
        pub(super) fn write(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
            let temp = format!(".{name}.{}.tmp", std::process::id());
            let _ = unlinkat(&self.0, temp.as_str(), AtFlags::empty());
            let mut file = self.open_file(&temp, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL)?;
            let written = file
                .write_all(bytes)
                .and_then(|()| file.sync_all())
                .and_then(|()| Ok(renameat(&self.0, temp.as_str(), &self.0, name)?));
            if written.is_err() {
                let _ = unlinkat(&self.0, temp.as_str(), AtFlags::empty());
            }
            written
        }
    }
}

/// Without descriptor-relative calls or Unix owners and modes (Windows): the directory must be a
/// directory, not a reparse point; who may write in it is left to its ACL (`%LOCALAPPDATA%` is
/// the user's own), which is not read. The MAC still keeps out what this cache did not write.
#[cfg(not(unix))]
mod trusted {
    use std::path::{Path, PathBuf};

    pub(super) struct Dir(PathBuf);

    impl Dir {
        pub(super) fn open(path: &Path) -> Result<Self, &'static str> {
            let meta = std::fs::symlink_metadata(path).map_err(|_| "no cache directory")?;
            if meta.is_dir() {
                Ok(Self(path.to_path_buf()))
            } else {
                Err("the cache directory is not a directory")
            }
        }

        pub(super) fn read(&self, name: &str) -> Result<Vec<u8>, &'static str> {
            std::fs::read(self.0.join(name)).map_err(|_| "no cached artifact")
        }

        /// 32 random bytes for a new cache key, from the system's source (`ProcessPrng` on
        /// Windows).
        pub(super) fn fresh_key() -> Result<[u8; 32], &'static str> {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|_| "no randomness for a cache key")?;
            Ok(key)
        }

        pub(super) fn write(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
            crate::files::write_atomically(&self.0.join(name), bytes)
        }
    }
}

// Unix only: they are about modes, owners and symlinks.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn cache_dir_resolution() {
        type Env<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Env, Option<&str>)] = &[
            (&[(CACHE_DIR_ENV, "/c"), ("HOME", "/h")], Some("/c")),
            (&[(CACHE_DIR_ENV, ""), ("HOME", "/h")], None),
            (
                &[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")],
                Some("/x/entelix-auth-claude-code"),
            ),
            (
                &[("HOME", "/h")],
                Some("/h/.cache/entelix-auth-claude-code"),
            ),
            (&[], None),
        ];
        for (vars, want) in cases {
            let got = cache_dir_from(crate::test_support::env(vars));
            assert_eq!(got, want.map(PathBuf::from), "{vars:?}");
        }
    }

    /// A scratch directory whose ancestors are private (under `target/`, not `/tmp`, which
    /// everyone can write).
    fn scratch() -> tempfile::TempDir {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
        std::fs::create_dir_all(&target).unwrap();
        tempfile::Builder::new()
            .prefix("cache-test-")
            .tempdir_in(target)
            .unwrap()
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn artifacts_are_reused_only_when_intact_and_private() {
        let engine = Engine::default();
        let wasm = wat_component();
        let dir = scratch();
        let cache = dir.path().join("cache");
        let component = Component::new(&engine, &wasm).unwrap();
        save(&cache, "c.cwasm", &component).unwrap();
        assert_eq!(
            std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(load(&engine, &cache, "c.cwasm").is_ok());

        // A flipped byte fails the MAC.
        let path = cache.join("c.cwasm");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(load(&engine, &cache, "c.cwasm").is_err());

        // A directory others can write is not trusted.
        save(&cache, "c.cwasm", &component).unwrap();
        chmod(&cache, 0o777);
        assert!(load(&engine, &cache, "c.cwasm").is_err());
        chmod(&cache, 0o700);
        assert!(load(&engine, &cache, "c.cwasm").is_ok());
    }

    /// What a path check followed by a read by path let through: a directory or an artifact
    /// swapped for a symlink, a parent others can write (to swap the directory), bytes written
    /// elsewhere.
    #[test]
    fn nothing_reached_through_a_symlink_or_an_open_ancestor_or_another_key_is_loaded() {
        let engine = Engine::default();
        let component = Component::new(&engine, wat_component()).unwrap();
        let dir = scratch();
        let cache = dir.path().join("cache");
        save(&cache, "c.cwasm", &component).unwrap();
        assert!(load(&engine, &cache, "c.cwasm").is_ok());

        let linked_dir = dir.path().join("linked");
        std::os::unix::fs::symlink(&cache, &linked_dir).unwrap();
        assert!(
            load(&engine, &linked_dir, "c.cwasm").is_err(),
            "a symlinked directory"
        );

        std::os::unix::fs::symlink(cache.join("c.cwasm"), cache.join("l.cwasm")).unwrap();
        assert!(
            load(&engine, &cache, "l.cwasm").is_err(),
            "a symlinked artifact"
        );

        chmod(dir.path(), 0o777);
        assert!(
            load(&engine, &cache, "c.cwasm").is_err(),
            "an ancestor others can write"
        );
        // Sticky, as /tmp is: others cannot rename the cache directory, so it is trusted.
        chmod(dir.path(), 0o1777);
        assert!(
            load(&engine, &cache, "c.cwasm").is_ok(),
            "a sticky ancestor"
        );
        chmod(dir.path(), 0o700);

        // The same bytes in another cache, under another key.
        let other = dir.path().join("other");
        save(&other, "x.cwasm", &component).unwrap();
        std::fs::copy(cache.join("c.cwasm"), other.join("c.cwasm")).unwrap();
        assert!(
            load(&engine, &other, "c.cwasm").is_err(),
            "an artifact from elsewhere"
        );
        assert!(load(&engine, &other, "x.cwasm").is_ok());
    }

    #[test]
    fn the_key_follows_component_and_engine() {
        let plain = Engine::default();
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let other = Engine::new(&config).unwrap();
        let wasm = wat_component();
        assert_eq!(cache_key(&plain, &wasm), cache_key(&plain, &wasm));
        assert_ne!(cache_key(&plain, &wasm), cache_key(&other, &wasm));
        assert_ne!(cache_key(&plain, &wasm), cache_key(&plain, b"other bytes"));
    }

    /// The smallest valid component, `(component)`, in binary form: magic, version, layer.
    fn wat_component() -> Vec<u8> {
        vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]
    }
}
