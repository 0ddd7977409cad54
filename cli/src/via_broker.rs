//! `--broker PATH`: `token`, `header`, `status` and `refresh` asked of a broker (`serve
//! --socket PATH`) instead of a store — what a process inside a sandbox runs. It never holds a
//! refresh token: `refresh` asks the broker to replace the current token.

use std::path::Path;

use entelix_auth_claude_code::{BrokerClient, ClaudeCodeAuthError};
use secrecy::ExposeSecret;

use super::{Command, Failure, print, render};

/// Run `command` against the broker at `socket`.
pub(super) async fn run(command: &Command, socket: &Path) -> Result<(), Failure> {
    let client = BrokerClient::new(socket);
    let location = format!("broker {}", socket.display());
    let until = |at: Option<i64>| {
        at.and_then(chrono::DateTime::from_timestamp_millis)
            .map_or_else(
                || "for an unknown time".to_owned(),
                |at| format!("until {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
            )
    };
    let out = match command {
        Command::Token => client
            .token()
            .await?
            .access_token
            .expose_secret()
            .to_owned(),
        Command::Header => format!(
            "Authorization: {}",
            client.header().await?.0.expose_secret()
        ),
        Command::Status { json } => {
            let status = client.status().await?;
            let shown = if *json {
                render::status_json("broker", &location, &status)
            } else {
                render::status_text("broker", &location, &status, chrono::Utc::now())
            };
            print(&shown)?;
            return match status.logged_in {
                true => Ok(()),
                false => Err(ClaudeCodeAuthError::LoggedOut { path: location }.into()),
            };
        }
        Command::Refresh { force: false } => format!(
            "the broker keeps the login fresh: its access token is valid {}",
            until(client.token().await?.expires_at_ms)
        ),
        Command::Refresh { force: true } => {
            let current = client.token().await?;
            let fresh = client
                .refresh_rejected(current.access_token.expose_secret())
                .await?;
            match fresh.refreshed {
                true => format!(
                    "refreshed: the new access token is valid {}",
                    until(fresh.expires_at_ms)
                ),
                false => format!(
                    "another process had just refreshed; its access token is valid {}",
                    until(fresh.expires_at_ms)
                ),
            }
        }
        _ => {
            return Err(Failure::Refused(
                "--broker works with token, header, status and refresh".into(),
            ));
        }
    };
    print(&out)
}
