//! The token endpoint's answer: never panics, takes every 2xx that carries a token (a grant with
//! at least one token; a lifetime only within bounds), and never lets a long token-like run or a
//! control character into an error detail.

#![no_main]

use claude_code_auth_guest::answer::{MAX_EXPIRES_IN_S, Rejection, interpret};
use claude_code_auth_guest::ports::HttpAnswer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [s0, s1, flags, rest @ ..] = data else {
        return;
    };
    let status = u16::from_le_bytes([*s0, *s1]) % 600;
    let (retry_after, body) = if flags & 1 == 1 {
        let split = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        (
            Some(String::from_utf8_lossy(&rest[..split]).into_owned()),
            &rest[split.min(rest.len())..],
        )
    } else {
        (None, rest)
    };
    let answer = HttpAnswer {
        status,
        retry_after,
        body: body.to_vec(),
    };
    match interpret(&answer) {
        Ok(grant) => {
            assert!((200..300).contains(&status));
            assert!(grant.access_token.is_some() || grant.refresh_token.is_some());
            assert!(grant.access_token.as_ref().is_none_or(|t| !t.is_empty()));
            assert!(grant
                .expires_in_s
                .is_none_or(|s| (1..=MAX_EXPIRES_IN_S).contains(&s)));
            for oddity in &grant.oddities {
                assert!(!oddity.chars().any(char::is_control), "{oddity:?}");
            }
        }
        Err(Rejection::GrantRejected { detail } | Rejection::Refused { detail, .. }) => {
            assert!(!detail.chars().any(char::is_control), "{detail:?}");
            assert!(detail.chars().count() <= 2 * 160 + 40, "{detail:?}");
            assert!(
                !detail
                    .split(|c: char| !c.is_ascii_alphanumeric() && !"-_.~+/=".contains(c))
                    .any(|run| run.len() >= 40 && run != "[redacted]"),
                "{detail:?}"
            );
        }
        Err(Rejection::Invalid { problem }) => {
            assert!(!problem.chars().any(char::is_control), "{problem:?}");
        }
        Err(Rejection::Unavailable { status, .. }) => assert!(status == 429 || status >= 500),
    }
});
