//! Where the credential comes from: `--store` (Redis, or a credential file), `--credentials`,
//! or as the `claude` CLI decides (`CLAUDE_CODE_OAUTH_TOKEN`, the macOS keychain, the file in
//! the config dir).

use std::path::PathBuf;
use std::sync::Arc;

use super::Failure;
use entelix_auth_claude_code::{
    ClaudeCliLogin, ClaudeCliSource, CredentialStore, FileCredentialStore, RedisCredentialStore,
};

/// How the user chose the store.
pub(super) struct Choice {
    /// `--credentials PATH`.
    pub(super) credentials: Option<PathBuf>,
    /// `--store URL|PATH`.
    pub(super) store: Option<String>,
    /// `--store-key NAME`.
    pub(super) store_key: Option<String>,
    /// `--store-secret-file PATH`.
    pub(super) secret: Option<PathBuf>,
    /// `--store-ca-file PATH`.
    pub(super) ca_file: Option<PathBuf>,
    /// `--store-plaintext`.
    pub(super) plaintext: bool,
    /// `--store-lease DURATION`.
    pub(super) lease: Option<std::time::Duration>,
}

/// The store the command uses.
pub(super) struct Source {
    /// `file`, `env`, `keychain` or `redis`, as `status` shows it.
    pub(super) kind: &'static str,
    pub(super) store: Arc<dyn CredentialStore>,
    /// The credential file, for a file store.
    pub(super) file: Option<PathBuf>,
    /// The Redis store, for a Redis store (its high-water marks can be imported).
    pub(super) redis: Option<RedisCredentialStore>,
}

/// What `--store`'s value names.
#[derive(Debug, PartialEq, Eq)]
enum Named {
    /// A Redis (or Valkey) URL, as given but for surrounding blanks.
    Redis(String),
    /// A credential file.
    File(PathBuf),
}

/// Schemes of the Redis URLs the store takes.
const REDIS_SCHEMES: [&str; 4] = ["redis", "rediss", "valkey", "valkeys"];

/// What `store` names: anything that looks like a URL (`scheme:` of two letters or more, or
/// `scheme//`, or `://` anywhere) is a URL, and only a Redis one over TCP is taken; a path
/// otherwise. A refusal never shows a user name, password or query.
fn named(store: &str) -> Result<Named, Failure> {
    let given = store.trim();
    let not_a_store = || {
        Failure::Refused(format!(
            "`{}` is not a store this command takes: give redis://… or rediss://… (valkey://, \
             valkeys://), or the path of a credential file",
            redacted(given)
        ))
    };
    let word_end = given
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .unwrap_or(given.len());
    let word = &given[..word_end];
    let rest = &given[word_end..];
    let scheme_like = word.len() >= 2 && word.starts_with(|c: char| c.is_ascii_alphabetic());
    if scheme_like && (rest.starts_with(':') || rest.starts_with("//")) || given.contains("://") {
        let redis = REDIS_SCHEMES
            .iter()
            .any(|scheme| word.eq_ignore_ascii_case(scheme));
        return match redis && rest.starts_with("://") {
            true => Ok(Named::Redis(given.to_owned())),
            false => Err(not_a_store()),
        };
    }
    Ok(Named::File(PathBuf::from(store)))
}

/// `value` without what could be a credential: the query and fragment, and a user name and
/// password before an `@`.
fn redacted(value: &str) -> String {
    let value = value.split(['?', '#']).next().unwrap_or_default();
    match value.rfind('@') {
        Some(at) => {
            let head = &value[..at];
            let keep = head
                .rfind('/')
                .or_else(|| head.find(':'))
                .map_or(0, |i| i + 1);
            format!(
                "{}[credentials removed]@{}",
                &value[..keep],
                &value[at + 1..]
            )
        }
        None => value.to_owned(),
    }
}

/// The store `choice` names: `--store` first, then `--credentials`, then as the `claude` CLI
/// decides: the long-lived token in `CLAUDE_CODE_OAUTH_TOKEN`, else the macOS keychain item (on
/// macOS) or the credential file in the config dir. `--store-*` options are for a Redis store:
/// given with any other, they are refused rather than ignored.
pub(super) fn source(choice: Choice) -> Result<Source, Failure> {
    let named = choice.store.as_deref().map(named).transpose()?;
    let Some(Named::Redis(url)) = named else {
        refuse_redis_options(&choice)?;
        return Ok(match named {
            Some(Named::File(path)) => file(path),
            _ => default_source(choice.credentials)?,
        });
    };
    let key = choice
        .store_key
        .unwrap_or_else(|| entelix_auth_claude_code::defaults::DEFAULT_STORE_KEY.to_owned());
    let mut builder = RedisCredentialStore::builder(url).key(key);
    if let Some(secret) = choice.secret {
        builder = builder.secret_file(secret);
    }
    if let Some(ca) = choice.ca_file {
        builder = builder.ca_file(ca);
    }
    if choice.plaintext {
        builder = builder.plaintext();
    }
    if let Some(lease) = choice.lease {
        builder = builder.lease(lease);
    }
    let redis = builder.build()?;
    Ok(Source {
        kind: "redis",
        store: Arc::new(redis.clone()),
        file: None,
        redis: Some(redis),
    })
}

/// Refuse the Redis store's options for another store.
fn refuse_redis_options(choice: &Choice) -> Result<(), Failure> {
    let given = [
        ("--store-key", choice.store_key.is_some()),
        ("--store-secret-file", choice.secret.is_some()),
        ("--store-ca-file", choice.ca_file.is_some()),
        ("--store-plaintext", choice.plaintext),
        ("--store-lease", choice.lease.is_some()),
    ];
    match given.iter().find(|(_, given)| *given) {
        Some((option, _)) => Err(Failure::Refused(format!(
            "{option} is for a Redis store (--store redis://…); this command's store is not one \
             (or its CLAUDE_CODE_AUTH_STORE_* variable is set for another)"
        ))),
        None => Ok(()),
    }
}

fn file(path: PathBuf) -> Source {
    Source {
        kind: "file",
        store: Arc::new(FileCredentialStore::with_path(path.clone())),
        file: Some(path),
        redis: None,
    }
}

/// `--credentials`, else as the `claude` CLI decides ([`ClaudeCliLogin`]).
fn default_source(credentials: Option<PathBuf>) -> Result<Source, Failure> {
    if let Some(path) = credentials {
        return Ok(file(path));
    }
    let login = ClaudeCliLogin::find()?;
    let file = match login.source() {
        ClaudeCliSource::File { path } => Some(path.clone()),
        _ => None,
    };
    Ok(Source {
        kind: login.source().kind(),
        store: login.into_store(),
        file,
        redis: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_looks_like_a_url_is_one_and_only_redis_is_taken() {
        for taken in [
            "redis://h:6379/0",
            "rediss://u:p@h:6380/0",
            "VALKEY://h",
            " redis://u:p@h/0 ",
        ] {
            assert!(matches!(named(taken), Ok(Named::Redis(_))), "{taken}");
        }
        for path in [
            "creds.json",
            "./redis//x",
            "/home/u/.claude/.credentials.json",
            "C:\\Users\\u\\.claude\\.credentials.json",
            "redis.json",
        ] {
            assert_eq!(
                named(path).ok(),
                Some(Named::File(PathBuf::from(path))),
                "{path}"
            );
        }
        for refused in [
            "redis:/fleet:PASSWORD@host:6380/0",
            "redis//fleet:PASSWORD@host:6380/0",
            "redis+unix:///tmp/redis.sock?pass=PASSWORD",
            "redis+sentinel://fleet:PASSWORD@host/master",
            "http://fleet:PASSWORD@host",
            "unix:/PASSWORD@sock",
        ] {
            let Err(Failure::Refused(why)) = named(refused) else {
                panic!("{refused} was taken");
            };
            assert!(!why.contains("PASSWORD"), "{why}");
        }
    }
}
