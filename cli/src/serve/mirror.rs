//! A mirror: `DIR/.credentials.json` holding what a `claude` CLI (or anything else) inside a
//! sandbox needs to use the login — the access token, its expiry, the scopes, the subscription
//! type and the rate-limit tier — and never a refresh token. Such a CLI uses the token as it is
//! and does not try to refresh it (it has nothing to refresh with); it re-reads the file when its
//! mtime changes, so a refresh on the host reaches it.
//!
//! The directory is mounted into the sandbox, not the file: every write makes a new file and
//! renames it over the old name, and a bind-mounted file would keep the old inode. The
//! directory is trusted only as opened: `O_NOFOLLOW`, owned by this user (or the mirror's
//! owner), writable by no one else, checked on the descriptor each time; the file is created
//! inside it by name relative to that descriptor, `O_EXCL|O_NOFOLLOW`, mode 0600, owned by
//! `--mirror-owner` when given, synced, then renamed into place.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, fchown, fstat, fsync, mkdirat, openat, renameat};
use rustix::process::{Gid, Uid, geteuid};
use serde_json::{Map, Value, json};

/// The file the CLI reads in its config dir.
const FILE: &str = ".credentials.json";

/// Who owns what a mirror writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Owner {
    pub(super) uid: u32,
    pub(super) gid: Option<u32>,
}

impl Owner {
    /// `UID` or `UID:GID`.
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let number = |part: &str| {
            part.trim().parse::<u32>().map_err(|_| {
                format!("`{text}` is not UID[:GID] (numbers, as inside the sandbox: 1000:1000)")
            })
        };
        match text.split_once(':') {
            Some((uid, gid)) => Ok(Self {
                uid: number(uid)?,
                gid: Some(number(gid)?),
            }),
            None => Ok(Self {
                uid: number(text)?,
                gid: None,
            }),
        }
    }
}

/// One mirror directory.
#[derive(Debug, Clone)]
pub(super) struct Mirror {
    dir: PathBuf,
    owner: Option<Owner>,
}

/// What a mirror holds: the login without its refresh token.
pub(super) struct Stamp<'a> {
    pub(super) access_token: &'a str,
    pub(super) expires_at_ms: Option<i64>,
    pub(super) scopes: &'a [String],
    pub(super) subscription_type: Option<&'a str>,
    pub(super) rate_limit_tier: Option<&'a str>,
}

impl Stamp<'_> {
    /// The document, as the CLI writes its own (compact, `claudeAiOauth`).
    fn document(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut oauth = Map::new();
        oauth.insert("accessToken".into(), self.access_token.into());
        if let Some(at) = self.expires_at_ms {
            oauth.insert("expiresAt".into(), at.into());
        }
        oauth.insert("scopes".into(), json!(self.scopes));
        if let Some(kind) = self.subscription_type {
            oauth.insert("subscriptionType".into(), kind.into());
        }
        if let Some(tier) = self.rate_limit_tier {
            oauth.insert("rateLimitTier".into(), tier.into());
        }
        let mut root = Map::new();
        root.insert("claudeAiOauth".into(), Value::Object(oauth));
        zeroize::Zeroizing::new(Value::Object(root).to_string().into_bytes())
    }
}

impl Mirror {
    /// The mirror at `dir`, made (0700, the owner's) if it is missing, refused when it is a
    /// symlink, not this user's (nor the owner's), or writable by others.
    pub(super) fn open(dir: &Path, owner: Option<Owner>) -> Result<Self, String> {
        let mirror = Self {
            dir: dir.to_path_buf(),
            owner,
        };
        match mirror.directory() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => mirror.make()?,
            other => drop(other.map_err(|e| mirror.refusal(&e))?),
        }
        Ok(mirror)
    }

    /// Its directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    fn refusal(&self, error: &io::Error) -> String {
        format!("mirror directory {}: {error}", self.dir.display())
    }

    fn make(&self) -> Result<(), String> {
        let parent = self.dir.parent().unwrap_or(Path::new("."));
        let name = self
            .dir
            .file_name()
            .ok_or_else(|| format!("mirror directory {}: no name", self.dir.display()))?;
        let at = openat(
            rustix::fs::CWD,
            if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            },
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.refusal(&e.into()))?;
        mkdirat(&at, name, Mode::from_raw_mode(0o700)).map_err(|e| self.refusal(&e.into()))?;
        let dir = openat(
            &at,
            name,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.refusal(&e.into()))?;
        if let Some(owner) = self.owner {
            fchown(
                &dir,
                Some(Uid::from_raw(owner.uid)),
                owner.gid.map(Gid::from_raw),
            )
            .map_err(|e| self.refusal(&e.into()))?;
        }
        Ok(())
    }

    /// The directory, opened without following a symlink and checked on the descriptor.
    fn directory(&self) -> io::Result<OwnedFd> {
        let dir = openat(
            rustix::fs::CWD,
            &self.dir,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
                io::Error::other("is a symlink or not a directory; give the directory itself")
            }
            e => e.into(),
        })?;
        let stat = fstat(&dir)?;
        let me = geteuid().as_raw();
        let owned = stat.st_uid == me || self.owner.is_some_and(|o| o.uid == stat.st_uid);
        if !owned {
            return Err(io::Error::other(format!(
                "is owned by uid {}, not by this user ({me}){}",
                stat.st_uid,
                self.owner
                    .map(|o| format!(" nor the mirror's owner ({})", o.uid))
                    .unwrap_or_default()
            )));
        }
        if stat.st_mode & 0o022 != 0 {
            return Err(io::Error::other(format!(
                "is writable by others (mode {:o}); make it 0700 or 0755",
                stat.st_mode & 0o7777
            )));
        }
        Ok(dir)
    }

    /// Write `stamp` into the mirror: a new file, then renamed over the old one.
    pub(super) fn write(&self, stamp: &Stamp<'_>) -> io::Result<()> {
        let dir = self.directory()?;
        let document = stamp.document();
        let temp = format!("{FILE}.tmp.{:08x}", unique());
        let file = openat(
            &dir,
            temp.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let written = (|| {
            if let Some(owner) = self.owner {
                fchown(
                    &file,
                    Some(Uid::from_raw(owner.uid)),
                    owner.gid.map(Gid::from_raw),
                )?;
            }
            rustix::fs::fchmod(&file, Mode::from_raw_mode(0o600))?;
            let mut left: &[u8] = &document;
            while !left.is_empty() {
                let n = rustix::io::write(&file, left)?;
                left = &left[n..];
            }
            fsync(&file)?;
            renameat(&dir, temp.as_str(), &dir, FILE)?;
            Ok::<(), rustix::io::Errno>(())
        })();
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
            return Err(e.into());
        }
        let _ = fsync(&dir);
        Ok(())
    }
}

/// Bits for a unique temporary name (uniqueness, not secrecy).
fn unique() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16) ^ NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn stamp() -> Stamp<'static> {
        Stamp {
            access_token: "sk-ant-oat01-mirrored",
            expires_at_ms: Some(1_900_000_000_000),
            scopes: &[],
            subscription_type: Some("max"),
            rate_limit_tier: None,
        }
    }

    #[test]
    fn a_mirror_holds_the_access_token_and_never_a_refresh_token() {
        let dir = tempfile::tempdir().unwrap();
        let mirror = Mirror::open(&dir.path().join("m"), None).unwrap();
        mirror.write(&stamp()).unwrap();
        let file = dir.path().join("m").join(FILE);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            text,
            r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-mirrored","expiresAt":1900000000000,"scopes":[],"subscriptionType":"max"}}"#
        );
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("m"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        // A second write replaces the file (a new inode), leaving nothing else behind.
        let first = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&file).unwrap());
        mirror.write(&stamp()).unwrap();
        let second = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&file).unwrap());
        assert_ne!(first, second);
        assert_eq!(std::fs::read_dir(dir.path().join("m")).unwrap().count(), 1);
    }

    #[test]
    fn a_symlinked_or_open_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let error = Mirror::open(&link, None).unwrap_err();
        assert!(error.contains("symlink"), "{error}");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = Mirror::open(&real, None).unwrap_err();
        assert!(error.contains("writable by others"), "{error}");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(Mirror::open(&real, None).is_err(), "group-writable");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(Mirror::open(&real, None).is_ok());
        // Swapped for a symlink after it was opened: the next write refuses it.
        let mirror = Mirror::open(&real, None).unwrap();
        std::fs::rename(&real, dir.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("moved"), &real).unwrap();
        assert!(mirror.write(&stamp()).is_err());
        assert!(!dir.path().join("moved").join(FILE).exists());
    }

    #[test]
    fn owners_are_numbers() {
        assert_eq!(
            Owner::parse("1000:1001"),
            Ok(Owner {
                uid: 1000,
                gid: Some(1001)
            })
        );
        assert_eq!(
            Owner::parse("1000"),
            Ok(Owner {
                uid: 1000,
                gid: None
            })
        );
        assert!(Owner::parse("vscode").is_err());
    }
}
