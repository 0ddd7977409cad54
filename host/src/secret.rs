//! [`SecretToken`]: a token that reads like a string but never prints.

use std::fmt;
use std::ops::Deref;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The token of an `Authorization` value `Bearer <token>`; `None` for any other value. The
/// one place that knows the scheme's spelling.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    value.strip_prefix("Bearer ")
}

/// An access or refresh token. It derefs to `str` so code written for plain `String` fields keeps
/// compiling, but `Debug` prints `[redacted]`, there is no `Display`, and the memory is zeroed on
/// drop.
#[derive(Clone)]
pub struct SecretToken(SecretString);

impl SecretToken {
    /// Wrap `token`.
    pub fn new(token: impl Into<String>) -> Self {
        Self(SecretString::from(token.into()))
    }

    /// The token itself. Named so every use is visible in review.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl Deref for SecretToken {
    type Target = str;

    fn deref(&self) -> &str {
        self.expose_secret()
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl PartialEq for SecretToken {
    fn eq(&self, other: &Self) -> bool {
        self.expose_secret() == other.expose_secret()
    }
}

impl Eq for SecretToken {}

impl PartialEq<str> for SecretToken {
    fn eq(&self, other: &str) -> bool {
        self.expose_secret() == other
    }
}

impl PartialEq<&str> for SecretToken {
    fn eq(&self, other: &&str) -> bool {
        self.expose_secret() == *other
    }
}

impl PartialEq<String> for SecretToken {
    fn eq(&self, other: &String) -> bool {
        self.expose_secret() == other
    }
}

impl From<String> for SecretToken {
    fn from(token: String) -> Self {
        Self::new(token)
    }
}

impl From<&str> for SecretToken {
    fn from(token: &str) -> Self {
        Self::new(token)
    }
}

impl Serialize for SecretToken {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose_secret())
    }
}

impl<'de> Deserialize<'de> for SecretToken {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

#[cfg(test)]
mod tests {
    use super::SecretToken;

    #[test]
    fn reads_like_a_string_but_never_prints() {
        let token = SecretToken::new("sk-ant-oat01-abc");
        assert_eq!(token, "sk-ant-oat01-abc");
        assert_eq!(token.len(), 16);
        assert!(token.starts_with("sk-ant"));
        assert_eq!(format!("{token:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(token.clone())), "Some([redacted])");
        assert_eq!(
            serde_json::to_string(&token).unwrap(),
            "\"sk-ant-oat01-abc\""
        );
    }
}
