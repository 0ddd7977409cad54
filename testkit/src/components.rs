//! Components the tests run besides the shipped one, built from source by this crate's build
//! script.

/// A component that misbehaves on request (`tests/hostile-guest/`): loops, hoards memory,
/// sleeps, answers garbage, tries to reach other hosts, writes to stdout and stderr.
pub const HOSTILE: &[u8] = include_bytes!(env!("TESTKIT_HOSTILE"));

/// The `credential-store` component over `wasi:filesystem` (`stores/fs-store/`).
pub const FS_STORE: &[u8] = include_bytes!(env!("TESTKIT_FS_STORE"));

/// The shipped refresh component with [`FS_STORE`] plugged into its `credential-store` import:
/// a component that imports only `wasi:*` interfaces.
pub const WITH_FS_STORE: &[u8] = include_bytes!(env!("TESTKIT_WITH_FS_STORE"));
