//! Paths in records (the lock journal, rescue pointers) as their bytes (hex), so that any path
//! the system allows — not only UTF-8 — can be recorded.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serializer};

fn to_hex(path: &Path) -> String {
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
    #[cfg(not(unix))]
    let bytes = path.to_string_lossy().into_owned().into_bytes();
    hex::encode(bytes)
}

fn from_hex(text: &str) -> Option<PathBuf> {
    let bytes = hex::decode(text).ok()?;
    #[cfg(unix)]
    let path =
        PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes));
    #[cfg(not(unix))]
    let path = PathBuf::from(String::from_utf8(bytes).ok()?);
    Some(path)
}

pub(crate) fn serialize<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&to_hex(path))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let text = String::deserialize(d)?;
    from_hex(&text).ok_or_else(|| serde::de::Error::custom("not a hex path"))
}

/// The same for an optional path.
pub(crate) mod option {
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)]
    pub(crate) fn serialize<S: Serializer>(
        path: &Option<PathBuf>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match path {
            Some(path) => serializer.serialize_some(&super::to_hex(path)),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<PathBuf>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| {
                super::from_hex(&text).ok_or_else(|| serde::de::Error::custom("not a hex path"))
            })
            .transpose()
    }
}
