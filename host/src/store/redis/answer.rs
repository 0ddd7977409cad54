//! A refresh exchange as Redis keeps it, in `{NAME}:answer`: the note, before the request
//! leaves, that a holder presents a refresh token, and the token endpoint's answer, kept the
//! moment it is read. A machine killed between its answer and its write leaves it to the machine
//! that takes the lease next, whose component gets it instead of a request presenting the spent
//! token; a holder whose lease was taken from it (an eviction, a failover, a pause) still keeps
//! its answer, and the next holder waits for it rather than presenting the token again. Sealed
//! like the login and bound to the generation it refreshes; fenced by the note's owner; spent by
//! the next write of the login.

use std::io;
use std::sync::Arc;

use async_trait::async_trait;

use super::lease::LeaseState;
use super::scripts;
use super::seal::Binding;
use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};
use crate::store::exchange::{Answer, ExchangeLog};

/// How much longer than the refresh budget another holder's note of a token it presented is
/// honoured: past it, that holder's exchange has ended (the host cuts it at the budget), and its
/// answer, if it came, is kept already.
const PENDING_SLACK: std::time::Duration = std::time::Duration::from_secs(5);

// The system clock: notes compare times of several machines (their clocks, roughly in step).
use crate::time::now_ms;

/// The lease holder's record of its exchange.
pub(super) struct AnswerLog {
    state: Arc<LeaseState>,
    /// What a kept answer is bound to, besides its generation: never taken for a login.
    bound_to: String,
    /// The token this holder noted it presents: a retry of the same request is no second spend.
    noted: std::sync::Mutex<Option<String>>,
}

impl AnswerLog {
    pub(super) fn new(state: Arc<LeaseState>) -> Self {
        let bound_to = format!("{}/answer", state.inner().name);
        Self {
            state,
            bound_to,
            noted: std::sync::Mutex::new(None),
        }
    }

    fn binding(&self, generation: u64) -> Binding<'_> {
        Binding {
            name: &self.bound_to,
            generation,
        }
    }
}

#[async_trait]
impl ExchangeLog for AnswerLog {
    /// Refuse a token this machine presented before (Redis went back in time), and note in
    /// Redis — beyond the lease, which an eviction or a failover can take — that this holder
    /// presents it: a holder that got the lease after this one lost it waits for this one's
    /// answer instead of presenting the token a second time.
    async fn sending(&self, spent: &str) -> ClaudeCodeAuthResult<()> {
        let inner = self.state.inner();
        let generation = self.state.generation();
        let retry = self
            .noted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_deref()
            == Some(spent);
        let rolled_back = || ClaudeCodeAuthError::StoreRolledBack {
            store: inner.shown.clone(),
            found: generation,
            seen: inner
                .marks
                .read()
                .map_or(generation, |mark| mark.generation),
            spent: true,
            kept: inner.kept(),
        };
        if !retry && !inner.marks.spending(spent) {
            return Err(rolled_back());
        }
        let grace = inner.refresh_budget + PENDING_SLACK;
        let mut spend = scripts::SPEND.key(&inner.keys.answer);
        spend
            .key(&inner.keys.lease)
            .key(&inner.keys.login)
            .key(&inner.keys.spent)
            .arg(self.state.owner())
            .arg(spent)
            .arg(generation.to_string())
            .arg(now_ms().to_string())
            .arg(crate::time::millis(grace).to_string());
        let noted: String = inner
            .connection
            .script(&spend)
            .await
            .map_err(|e| inner.failed(&e))?;
        let busy = |why: String| ClaudeCodeAuthError::LockLost {
            lock: format!("the refresh lease of {}", inner.shown),
            why,
        };
        match noted.as_str() {
            "ok" => {
                self.state.spends();
                *self
                    .noted
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(spent.to_owned());
                Ok(())
            }
            "spent" => Err(rolled_back()),
            "lease" => Err(busy("it ran out and may be another holder's now".into())),
            "generation" => Err(busy("another holder wrote the login meanwhile".into())),
            pending => Err(busy(format!(
                "another machine presented this refresh token {} ms ago, after this one's lease was taken from it, and its answer is awaited",
                pending.trim_start_matches("pending:")
            ))),
        }
    }

    async fn answered(&self, answer: &Answer) -> io::Result<()> {
        let inner = self.state.inner();
        let generation = self.state.generation();
        let record = answer.to_record();
        let text = std::str::from_utf8(&record).map_err(io::Error::other)?;
        let sealed = zeroize::Zeroizing::new(
            inner
                .sealing
                .seal(text, &self.binding(generation))
                .map_err(|e| io::Error::other(e.to_string()))?,
        );
        let mut keep = scripts::KEEP_ANSWER.key(&inner.keys.answer);
        keep.key(&inner.keys.login)
            .arg(self.state.owner())
            .arg(&sealed[..])
            .arg(generation.to_string());
        let kept: i64 = inner
            .connection
            .script(&keep)
            .await
            .map_err(|e| io::Error::other(inner.failed(&e).to_string()))?;
        match kept {
            1 => Ok(()),
            _ => Err(io::Error::other(
                "another holder presented the token since, or wrote the login",
            )),
        }
    }

    async fn replay(&self, spent: &str) -> Option<Answer> {
        let inner = self.state.inner();
        let (value, generation): (Option<Vec<u8>>, Option<String>) = inner
            .connection
            .query(
                redis::cmd("HMGET")
                    .arg(&inner.keys.answer)
                    .arg("answer")
                    .arg("generation"),
            )
            .await
            .ok()?;
        // Kept by a holder that lost its lease (see `sending`): it answers the token all the
        // same, and this machine stores it.
        let generation: u64 = generation?.parse().ok()?;
        // An answer to a refresh of the login as this holder read it, and to no other.
        if generation != self.state.generation() {
            return None;
        }
        let value = zeroize::Zeroizing::new(value?);
        let text = inner.sealing.open(&value, &self.binding(generation)).ok()?;
        let answer = Answer::from_record(text.as_bytes())?;
        (answer.spent_sha256 == spent).then_some(answer)
    }
}
