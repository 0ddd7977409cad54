//! In-memory ports for unit tests of the pure logic.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use crate::ports::{
    Clock, GrantRequest, HeldLock, Http, HttpAnswer, HttpFailure, Kept, Store, StoreError,
};

/// The stored document, shared so a fake HTTP exchange can play "another process".
pub type Shared = Rc<RefCell<Option<String>>>;

/// What happened, in order, across the store and HTTP: `lock`, `prepare`, `post`,
/// `load-for-write`, `commit`, `unlock`.
pub type Events = Rc<RefCell<Vec<&'static str>>>;

/// A store holding one document in memory.
#[derive(Default)]
pub struct FakeStore {
    /// The document; `None` is "not found".
    pub doc: Shared,
    /// Every committed document, in order.
    pub saves: Rc<RefCell<Vec<String>>>,
    /// Locks taken.
    pub locks: u32,
    /// Errors for the next `lock` calls, in order.
    pub lock_errors: VecDeque<StoreError>,
    /// Error for `prepare`.
    pub prepare_error: Option<StoreError>,
    /// Error for `load-for-write`.
    pub load_for_write_error: Option<StoreError>,
    /// Error for every `commit`.
    pub commit_error: Option<StoreError>,
    /// Where a successful `commit` says the document went.
    pub kept: Option<Kept>,
    /// Document another process writes while this one waits for the lock.
    pub written_while_waiting: Option<String>,
    /// The event log.
    pub events: Events,
}

impl FakeStore {
    /// A store holding `doc`.
    pub fn holding(doc: &str) -> Self {
        Self {
            doc: Rc::new(RefCell::new(Some(doc.to_owned()))),
            ..Self::default()
        }
    }

    /// The committed documents.
    pub fn saved(&self) -> Vec<String> {
        self.saves.borrow().clone()
    }
}

/// The lock a [`FakeStore`] hands out: it reaches the same document.
pub struct FakeLock {
    doc: Shared,
    saves: Rc<RefCell<Vec<String>>>,
    prepare_error: Option<StoreError>,
    load_for_write_error: Option<StoreError>,
    commit_error: Option<StoreError>,
    kept: Kept,
    events: Events,
}

impl HeldLock for FakeLock {
    fn prepare(&mut self, _size: u64) -> Result<(), StoreError> {
        self.events.borrow_mut().push("prepare");
        self.prepare_error.clone().map_or(Ok(()), Err)
    }

    fn load_for_write(&mut self) -> Result<String, StoreError> {
        self.events.borrow_mut().push("load-for-write");
        if let Some(e) = &self.load_for_write_error {
            return Err(e.clone());
        }
        self.doc.borrow().clone().ok_or(StoreError::NotFound)
    }

    fn commit(&mut self, document: &str) -> Result<Kept, StoreError> {
        self.events.borrow_mut().push("commit");
        if let Some(e) = &self.commit_error {
            return Err(e.clone());
        }
        self.saves.borrow_mut().push(document.to_owned());
        if self.kept == Kept::Stored {
            *self.doc.borrow_mut() = Some(document.to_owned());
        }
        Ok(self.kept)
    }
}

impl Drop for FakeLock {
    fn drop(&mut self) {
        self.events.borrow_mut().push("unlock");
    }
}

impl Store for FakeStore {
    type Lock = FakeLock;

    fn load(&mut self) -> Result<String, StoreError> {
        self.doc.borrow().clone().ok_or(StoreError::NotFound)
    }

    fn lock(&mut self) -> Result<FakeLock, StoreError> {
        if let Some(theirs) = self.written_while_waiting.take() {
            *self.doc.borrow_mut() = Some(theirs);
        }
        if let Some(e) = self.lock_errors.pop_front() {
            return Err(e);
        }
        self.locks += 1;
        self.events.borrow_mut().push("lock");
        Ok(FakeLock {
            doc: self.doc.clone(),
            saves: self.saves.clone(),
            prepare_error: self.prepare_error.clone(),
            load_for_write_error: self.load_for_write_error.clone(),
            commit_error: self.commit_error.clone(),
            kept: self.kept.unwrap_or(Kept::Stored),
            events: self.events.clone(),
        })
    }
}

/// One scripted answer, optionally rewriting the store as it is given (a racing process).
pub struct Scripted {
    /// What `post_json` returns.
    pub answer: Result<HttpAnswer, HttpFailure>,
    /// Document written to the shared store when this answer is given.
    pub store_becomes: Option<String>,
}

/// HTTP that replays scripted answers and records requests.
#[derive(Default)]
pub struct FakeHttp {
    /// Answers still to give.
    pub script: VecDeque<Scripted>,
    /// Every request and the timeout it was given.
    pub requests: Vec<(GrantRequest, Duration)>,
    /// The store a scripted answer may rewrite.
    pub store: Shared,
    /// The event log, shared with the store by [`crate::engine::tests`].
    pub events: Events,
}

impl FakeHttp {
    /// Append an answer with `status` and `body`.
    pub fn answer(mut self, status: u16, body: &str) -> Self {
        self.script.push_back(Scripted {
            answer: Ok(HttpAnswer {
                status,
                retry_after: None,
                body: body.as_bytes().to_vec(),
            }),
            store_becomes: None,
        });
        self
    }

    /// Append an answer with a `Retry-After` header.
    pub fn answer_retry_after(mut self, status: u16, retry_after: &str) -> Self {
        self.script.push_back(Scripted {
            answer: Ok(HttpAnswer {
                status,
                retry_after: Some(retry_after.to_owned()),
                body: Vec::new(),
            }),
            store_becomes: None,
        });
        self
    }

    /// Append a transport failure.
    pub fn fail(mut self, failure: HttpFailure) -> Self {
        self.script.push_back(Scripted {
            answer: Err(failure),
            store_becomes: None,
        });
        self
    }

    /// Make the last scripted answer also rewrite the store to `doc`.
    pub fn while_store_becomes(mut self, store: &Shared, doc: &str) -> Self {
        self.store = store.clone();
        if let Some(last) = self.script.back_mut() {
            last.store_becomes = Some(doc.to_owned());
        }
        self
    }
}

impl Http for FakeHttp {
    fn post_json(
        &mut self,
        request: &GrantRequest,
        timeout: Duration,
    ) -> Result<HttpAnswer, HttpFailure> {
        self.events.borrow_mut().push("post");
        self.requests.push((request.clone(), timeout));
        let next = self
            .script
            .pop_front()
            .unwrap_or_else(|| panic!("unscripted request #{}", self.requests.len()));
        if let Some(doc) = next.store_becomes {
            *self.store.borrow_mut() = Some(doc);
        }
        next.answer
    }
}

/// A clock that moves when slept on, and by `tick` each time it is read (time passing while the
/// logic works).
#[derive(Default)]
pub struct FakeClock {
    /// Wall-clock time in Unix ms.
    pub now_ms: i64,
    /// Monotonic time.
    pub elapsed: std::cell::Cell<Duration>,
    /// How far each reading of the monotonic clock moves it.
    pub tick: Duration,
    /// Every sleep, in order.
    pub sleeps: Vec<Duration>,
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.now_ms
    }

    fn elapsed(&self) -> Duration {
        let now = self.elapsed.get() + self.tick;
        self.elapsed.set(now);
        now
    }

    fn sleep(&mut self, duration: Duration) {
        self.sleeps.push(duration);
        self.elapsed.set(self.elapsed.get() + duration);
        self.now_ms += i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    }
}
