//! The header a component hands back, checked before a transport may send it. Independent of
//! the contract's version.

use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};

/// Longest bearer token accepted from the component.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The component's header `value` under `name`, if it is one a transport can send:
/// `authorization: Bearer <token>` with a token of visible ASCII. Anything else (a misbehaving
/// component) is refused.
pub(super) fn checked_header(name: &str, value: String) -> ClaudeCodeAuthResult<String> {
    let refused = |what: &str| ClaudeCodeAuthError::Sandbox {
        message: format!("the component returned {what}; refused"),
    };
    if !name.eq_ignore_ascii_case("authorization") {
        return Err(refused("a header other than authorization"));
    }
    let token = crate::secret::bearer_token(&value)
        .ok_or_else(|| refused("a header value that is not a bearer token"))?;
    let visible = token.bytes().all(|b| b.is_ascii_graphic());
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES || !visible {
        return Err(refused(
            "a bearer token that is empty, oversized or not visible ASCII",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_token_of_visible_ascii_passes() {
        let ok = checked_header("Authorization", "Bearer abc.DEF-1".into());
        assert_eq!(ok.unwrap(), "Bearer abc.DEF-1");
        for (name, value) in [
            ("cookie", "Bearer abc"),
            ("authorization", "Basic abc"),
            ("authorization", "Bearer "),
            ("authorization", "Bearer a b"),
            ("authorization", "Bearer a\r\nx: y"),
        ] {
            let refused = checked_header(name, value.into());
            assert!(
                matches!(refused, Err(ClaudeCodeAuthError::Sandbox { .. })),
                "{name}: {value:?} passed"
            );
        }
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert!(checked_header("authorization", long).is_err());
    }
}
