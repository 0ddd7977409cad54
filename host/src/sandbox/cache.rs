//! The compiled component, cached on disk so a process starts in milliseconds instead of
//! compiling with Cranelift (hundreds of milliseconds, seconds in a debug build).
//!
//! wasmtime trusts the machine code it deserializes, so a cached artifact is used only when all
//! of this holds: its name carries the hash of the component bytes and of the engine's
//! compilation settings and wasmtime version; its content matches the digest stored with it;
//! and it sits, owned by this user, in a directory nobody else can write. Anything else is
//! ignored and recompiled. A cache that cannot be read or written never fails a call.
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

use crate::store::atomic::{create_private_dir, write_atomically};

/// Environment variable naming the cache directory; empty disables the cache.
pub const CACHE_DIR_ENV: &str = "CLAUDE_CODE_AUTH_CACHE_DIR";

const DIGEST_LEN: usize = 32;

/// The component for `engine`: from the cache when a trustworthy artifact is there, else
/// compiled (and cached for the next process).
pub(crate) fn load_or_compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Component> {
    let Some(dir) = cache_dir_from(|name| std::env::var_os(name)) else {
        return Component::new(engine, wasm);
    };
    let path = dir.join(format!(
        "claude_code_auth-{}.cwasm",
        cache_key(engine, wasm)
    ));
    if let Some(component) = load(engine, &dir, &path) {
        return Ok(component);
    }
    let component = Component::new(engine, wasm)?;
    if let Err(e) = save(&dir, &path, &component) {
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
    hex(&hasher.0.finalize()[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn load(engine: &Engine, dir: &Path, path: &Path) -> Option<Component> {
    if !private_to_us(dir, true) || !private_to_us(path, false) {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    let (digest, artifact) = bytes.split_at_checked(DIGEST_LEN)?;
    if Sha256::digest(artifact).as_slice() != digest {
        tracing::debug!(path = %path.display(), "ignoring a cached component that fails its digest");
        return None;
    }
    deserialize(engine, artifact)
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> Option<Component> {
    // SAFETY: wasmtime requires the bytes to come from `Component::serialize` of a compatible
    // engine. They do: the file name binds them to this component, engine configuration and
    // wasmtime version, the digest binds the content to what this process's code wrote, and the
    // file sits in a directory only this user can write. wasmtime checks version and settings
    // again in the artifact header.
    unsafe { Component::deserialize(engine, artifact) }.ok()
}

fn save(dir: &Path, path: &Path, component: &Component) -> std::io::Result<()> {
    create_private_dir(dir)?;
    if !private_to_us(dir, true) {
        return Err(std::io::Error::other(
            "the cache directory is writable by others",
        ));
    }
    let artifact = component.serialize().map_err(std::io::Error::other)?;
    let mut bytes = Vec::with_capacity(DIGEST_LEN + artifact.len());
    bytes.extend_from_slice(&Sha256::digest(&artifact));
    bytes.extend_from_slice(&artifact);
    write_atomically(path, &bytes)
}

/// Owned by this process's user, not a symlink, not writable by group or others.
#[cfg(unix)]
fn private_to_us(path: &Path, is_dir: bool) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let kind_ok = if is_dir {
        meta.is_dir()
    } else {
        meta.is_file()
    };
    // `/proc/self` belongs to the process's user; elsewhere compare with the home directory.
    let owner = std::fs::metadata("/proc/self")
        .or_else(|_| std::fs::metadata(std::env::var_os("HOME").unwrap_or_default()))
        .map(|m| m.uid());
    kind_ok && owner.is_ok_and(|uid| uid == meta.uid()) && meta.mode() & 0o022 == 0
}

#[cfg(not(unix))]
fn private_to_us(path: &Path, is_dir: bool) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| if is_dir { m.is_dir() } else { m.is_file() })
}

#[cfg(test)]
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
            let got = cache_dir_from(|name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            });
            assert_eq!(got, want.map(PathBuf::from), "{vars:?}");
        }
    }

    #[test]
    fn artifacts_are_reused_only_when_intact_and_private() {
        let engine = Engine::default();
        let wasm = wat_component();
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let path = cache.join("c.cwasm");
        let component = Component::new(&engine, &wasm).unwrap();
        save(&cache, &path, &component).unwrap();
        assert_eq!(
            std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(load(&engine, &cache, &path).is_some());

        // A flipped byte fails the digest.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(load(&engine, &cache, &path).is_none());

        // A directory others can write is not trusted.
        save(&cache, &path, &component).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(load(&engine, &cache, &path).is_none());
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(load(&engine, &cache, &path).is_some());
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
