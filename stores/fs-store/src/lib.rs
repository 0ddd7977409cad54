//! `entelix:claude-code-auth/credential-store` as a component: the credential document in one
//! directory the host preopens at `/credentials`, locked with an exclusively created lock file,
//! written through a temporary file prepared (created, its space written) before the refresh
//! token is spent and renamed over the document. Composed with the refresh component
//! (`claude_code_auth_componentize::compose`, done by `testkit/build.rs`), it yields a component
//! that imports only standard `wasi:*` interfaces.

#[cfg(target_arch = "wasm32")]
mod component {
    // The ABI glue that `generate!` and `export!` expand to is unsafe by nature.
    #![allow(unsafe_code)]

    use std::cell::RefCell;
    use std::fs::{self, File, OpenOptions};
    use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
    use std::time::{Duration, Instant, SystemTime};

    wit_bindgen::generate!({
        path: "../../wit",
        world: "credential-store-component",
        generate_all,
    });

    use exports::entelix::claude_code_auth::credential_store::{
        Guest, GuestRefreshLock, Kept, RefreshLock, StoreError,
    };

    const DOCUMENT: &str = "/credentials/.credentials.json";
    const LOCK: &str = "/credentials/.credentials.json.component-lock";
    /// The prepared write; one at a time, under the lock.
    const TEMP: &str = "/credentials/.credentials.json.component-tmp";
    /// Largest document read.
    const MAX_BYTES: u64 = 1 << 20;
    /// How long `lock` waits for another holder.
    const LOCK_WAIT: Duration = Duration::from_secs(10);
    /// A lock file older than this was left by a holder that died.
    const LOCK_STALE: Duration = Duration::from_secs(60);

    struct Store;

    export!(Store);

    fn unavailable(doing: &str, error: &std::io::Error) -> StoreError {
        StoreError::Unavailable(format!("could not {doing} {DOCUMENT}: {error}"))
    }

    impl Guest for Store {
        type RefreshLock = Held;

        fn load() -> Result<String, StoreError> {
            // Opening a FIFO waits for a writer, and wasi:filesystem has no non-blocking open:
            // look first, so that anything but a regular file is refused without opening it.
            match fs::metadata(DOCUMENT) {
                Ok(meta) if !meta.is_file() => {
                    return Err(StoreError::Unavailable(format!(
                        "{DOCUMENT} is not a regular file"
                    )));
                }
                _ => {}
            }
            let file = match File::open(DOCUMENT) {
                Ok(file) => file,
                Err(e) if e.kind() == ErrorKind::NotFound => return Err(StoreError::NotFound),
                Err(e) => return Err(unavailable("open", &e)),
            };
            let mut bytes = Vec::new();
            file.take(MAX_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| unavailable("read", &e))?;
            if bytes.len() as u64 > MAX_BYTES {
                return Err(StoreError::Corrupt(format!(
                    "{DOCUMENT} is larger than 1 MiB"
                )));
            }
            String::from_utf8(bytes)
                .map_err(|_| StoreError::Corrupt(format!("{DOCUMENT} is not UTF-8 text")))
        }

        fn lock() -> Result<RefreshLock, StoreError> {
            let started = Instant::now();
            loop {
                match OpenOptions::new().write(true).create_new(true).open(LOCK) {
                    Ok(_) => return Ok(RefreshLock::new(Held::default())),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        let age = fs::metadata(LOCK)
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|m| SystemTime::now().duration_since(m).ok());
                        if age.is_some_and(|age| age > LOCK_STALE) {
                            let _ = fs::remove_file(LOCK);
                            continue;
                        }
                    }
                    Err(e) => return Err(unavailable("lock", &e)),
                }
                if started.elapsed() >= LOCK_WAIT {
                    return Err(StoreError::LockTimeout(format!(
                        "{LOCK} stayed taken for {}s",
                        LOCK_WAIT.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// A held lock: the lock file exists while this lives.
    #[derive(Default)]
    struct Held {
        /// The temporary file `prepare` made.
        prepared: RefCell<Option<File>>,
    }

    impl GuestRefreshLock for Held {
        fn prepare(&self, size: u64) -> Result<(), StoreError> {
            let _ = fs::remove_file(TEMP);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(TEMP)
                .map_err(|e| unavailable("prepare a write to", &e))?;
            // Write the space now: a full disk shows before anything is spent.
            let reserved = usize::try_from(size).unwrap_or(usize::MAX).min(1 << 20);
            file.write_all(&vec![b' '; reserved])
                .and_then(|()| file.sync_all())
                .map_err(|e| {
                    let _ = fs::remove_file(TEMP);
                    unavailable("prepare a write to", &e)
                })?;
            *self.prepared.borrow_mut() = Some(file);
            Ok(())
        }

        fn load_for_write(&self) -> Result<String, StoreError> {
            Store::load()
        }

        fn commit(&self, document: String) -> Result<Kept, StoreError> {
            let prepared = self.prepared.borrow_mut().take();
            let mut file = match prepared {
                Some(file) => file,
                None => OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(TEMP)
                    .map_err(|e| unavailable("write", &e))?,
            };
            let written = file
                .seek(SeekFrom::Start(0))
                .and_then(|_| file.write_all(document.as_bytes()))
                .and_then(|()| file.set_len(document.len() as u64))
                .and_then(|()| file.sync_all())
                .and_then(|()| fs::rename(TEMP, DOCUMENT));
            written.map_err(|e| {
                let _ = fs::remove_file(TEMP);
                unavailable("write", &e)
            })?;
            Ok(Kept::Stored)
        }
    }

    impl Drop for Held {
        fn drop(&mut self) {
            if self.prepared.borrow_mut().take().is_some() {
                let _ = fs::remove_file(TEMP);
            }
            let _ = fs::remove_file(LOCK);
        }
    }
}
