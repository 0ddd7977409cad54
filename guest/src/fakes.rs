//! In-memory ports for unit tests of the pure logic.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use crate::ports::{Clock, Http, HttpAnswer, HttpFailure, Store, StoreError};

/// The stored document, shared so a fake HTTP exchange can play "another process".
pub type Shared = Rc<RefCell<Option<String>>>;

/// A store holding one document in memory.
#[derive(Default)]
pub struct FakeStore {
    /// The document; `None` is "not found".
    pub doc: Shared,
    /// Every saved document, in order.
    pub saves: Vec<String>,
    /// Locks taken.
    pub locks: u32,
    /// Errors for the next `lock` calls, in order.
    pub lock_errors: VecDeque<StoreError>,
    /// Error for every `save`.
    pub save_error: Option<StoreError>,
    /// Document another process writes while this one waits for the lock.
    pub written_while_waiting: Option<String>,
}

impl FakeStore {
    /// A store holding `doc`.
    pub fn holding(doc: &str) -> Self {
        Self {
            doc: Rc::new(RefCell::new(Some(doc.to_owned()))),
            ..Self::default()
        }
    }
}

impl Store for FakeStore {
    type Lock = ();

    fn load(&mut self) -> Result<String, StoreError> {
        self.doc.borrow().clone().ok_or(StoreError::NotFound)
    }

    fn save(&mut self, document: &str) -> Result<(), StoreError> {
        if let Some(e) = &self.save_error {
            return Err(e.clone());
        }
        self.saves.push(document.to_owned());
        *self.doc.borrow_mut() = Some(document.to_owned());
        Ok(())
    }

    fn lock(&mut self) -> Result<(), StoreError> {
        if let Some(e) = self.lock_errors.pop_front() {
            if let Some(theirs) = self.written_while_waiting.take() {
                *self.doc.borrow_mut() = Some(theirs);
            }
            return Err(e);
        }
        self.locks += 1;
        if let Some(theirs) = self.written_while_waiting.take() {
            *self.doc.borrow_mut() = Some(theirs);
        }
        Ok(())
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
    /// (url, body, timeout) of every request.
    pub requests: Vec<(String, String, Duration)>,
    /// The store a scripted answer may rewrite.
    pub store: Shared,
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
        url: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<HttpAnswer, HttpFailure> {
        self.requests
            .push((url.to_owned(), body.to_owned(), timeout));
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

/// A clock that only moves when slept on.
#[derive(Default)]
pub struct FakeClock {
    /// Wall-clock time in Unix ms.
    pub now_ms: i64,
    /// Monotonic time.
    pub elapsed: Duration,
    /// Every sleep, in order.
    pub sleeps: Vec<Duration>,
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.now_ms
    }

    fn elapsed(&self) -> Duration {
        self.elapsed
    }

    fn sleep(&mut self, duration: Duration) {
        self.sleeps.push(duration);
        self.elapsed += duration;
        self.now_ms += i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    }
}
