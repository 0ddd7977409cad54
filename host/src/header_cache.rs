//! The provider's hot path: the last header, reused while the store's fingerprint is unchanged
//! and the token is outside the refresh window. Anything else — another process's write, a
//! token nearing expiry, another component — goes to the component.

use std::sync::{Mutex, PoisonError};

use secrecy::SecretString;

use crate::status::TokenStatus;
use crate::store::Fingerprint;

/// The last header a component produced, and what it is valid for.
#[derive(Default)]
pub(crate) struct HeaderCache {
    slot: Mutex<Option<Entry>>,
}

struct Entry {
    fingerprint: Fingerprint,
    component: usize,
    header: SecretString,
    status: TokenStatus,
    /// Unix ms from which the component must be asked again.
    refresh_at_ms: i64,
}

impl HeaderCache {
    /// The cached header and its status, if it was produced by `component` from the store
    /// state `fingerprint` and `now_ms` is before its refresh window.
    pub(crate) fn get(
        &self,
        fingerprint: Fingerprint,
        component: usize,
        now_ms: i64,
    ) -> Option<(SecretString, TokenStatus)> {
        let slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref()
            .filter(|e| {
                e.fingerprint == fingerprint && e.component == component && now_ms < e.refresh_at_ms
            })
            .map(|e| (e.header.clone(), e.status.clone()))
    }

    /// Remember `header`, produced by `component` from the store state `fingerprint`, for as
    /// long as `status` allows. Tokens that need a refresh are not remembered.
    pub(crate) fn put(
        &self,
        fingerprint: Fingerprint,
        component: usize,
        header: &SecretString,
        status: &TokenStatus,
        skew_ms: i64,
    ) {
        let refresh_at_ms = match status.expires_at_ms {
            _ if status.needs_refresh => return,
            Some(expires_at) => expires_at.saturating_sub(skew_ms),
            // A long-lived token: valid as long as the store does not change.
            None => i64::MAX,
        };
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Entry {
            fingerprint,
            component,
            header: header.clone(),
            status: status.clone(),
            refresh_at_ms,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn status(expires_at_ms: Option<i64>, needs_refresh: bool) -> TokenStatus {
        TokenStatus {
            logged_in: true,
            expires_at_ms,
            expired: false,
            needs_refresh,
            has_refresh_token: true,
            subscription_type: None,
            rate_limit_tier: None,
            scopes: Vec::new(),
            login_expires_at_ms: None,
        }
    }

    #[test]
    fn reused_only_for_the_same_state_component_and_time() {
        let cache = HeaderCache::default();
        let fp = Fingerprint::of(&[1, 2, 3, 4, 5]);
        let header = SecretString::from("Bearer a");
        cache.put(fp, 7, &header, &status(Some(10_000), false), 1_000);
        assert_eq!(
            cache.get(fp, 7, 8_999).unwrap().0.expose_secret(),
            "Bearer a"
        );
        assert!(
            cache.get(fp, 7, 9_000).is_none(),
            "inside the refresh window"
        );
        assert!(
            cache.get(Fingerprint::of(&[1, 2, 3, 4, 6]), 7, 0).is_none(),
            "the store changed"
        );
        assert!(cache.get(fp, 8, 0).is_none(), "another component");
    }

    #[test]
    fn tokens_needing_a_refresh_are_not_kept_long_lived_ones_are() {
        let cache = HeaderCache::default();
        let fp = Fingerprint::of(&[0; 5]);
        cache.put(
            fp,
            1,
            &SecretString::from("Bearer a"),
            &status(Some(10_000), true),
            0,
        );
        assert!(cache.get(fp, 1, 0).is_none());
        cache.put(
            fp,
            1,
            &SecretString::from("Bearer b"),
            &status(None, false),
            0,
        );
        assert!(cache.get(fp, 1, i64::MAX - 1).is_some());
    }
}
