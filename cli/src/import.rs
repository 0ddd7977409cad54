//! `claude-code-auth --store … import FILE`: copy a login from a credential file into the
//! store, refusing to replace a different login there without `--force`.

use std::path::Path;

use serde_json::Value;

use entelix_auth_claude_code::{ClaudeCodeAuthError, CredentialStore, FileCredentialStore};

use super::Failure;

/// What an import did, in one line.
pub(super) async fn import(
    store: &dyn CredentialStore,
    from: &Path,
    force: bool,
) -> Result<String, Failure> {
    let source = FileCredentialStore::with_path(from);
    let document =
        source
            .load_document()
            .await?
            .ok_or_else(|| ClaudeCodeAuthError::CredentialsMissing {
                path: from.display().to_string(),
            })?;
    let incoming = tokens(&document, &from.display().to_string())?;
    if incoming == (None, None) {
        return Err(ClaudeCodeAuthError::LoggedOut {
            path: from.display().to_string(),
        }
        .into());
    }
    let location = store.location();
    let stored = match store.load_document().await {
        Ok(stored) => stored,
        // What is there cannot be read (sealed under a lost secret, say): --force replaces it.
        Err(ClaudeCodeAuthError::InvalidDocument { .. }) if force => None,
        Err(error) => return Err(error.into()),
    };
    if let Some(stored) = stored {
        let there = tokens(&stored, &location).unwrap_or((None, None));
        if there == incoming {
            return Ok(format!(
                "{location} already holds this login; nothing written"
            ));
        }
        if there != (None, None) && !force {
            return Err(Failure::Refused(format!(
                "{location} holds another login (or another rotation of it); replacing it logs \
                 out whoever uses it: add --force to replace it"
            )));
        }
    }
    store.save_document(&document).await?;
    Ok(format!(
        "imported the login from {} into {location}; delete the file (or log that CLI out) so \
         that nothing else refreshes the same login",
        from.display()
    ))
}

/// The access and refresh tokens a document holds (empty ones count as none).
fn tokens(document: &str, at: &str) -> Result<(Option<String>, Option<String>), Failure> {
    let value: Value =
        serde_json::from_str(document).map_err(|_| ClaudeCodeAuthError::InvalidDocument {
            path: at.to_owned(),
            problem: "not JSON".into(),
        })?;
    let oauth =
        value
            .get("claudeAiOauth")
            .ok_or_else(|| ClaudeCodeAuthError::OAuthSectionMissing {
                path: at.to_owned(),
            })?;
    let token = |key: &str| {
        oauth
            .get(key)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    Ok((token("accessToken"), token("refreshToken")))
}
