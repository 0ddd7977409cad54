//! Builds the test components from source with `componentize/` (not the product's build, which
//! has none: the refresh component ships prebuilt): the hostile guest, the filesystem store, and
//! the store composed with the shipped refresh component. A copy of the last two goes to
//! `<target dir>/component/` for people trying the composition by hand.

use std::path::{Path, PathBuf};

use claude_code_auth_componentize as componentize;

const HOSTILE: (&str, &str) = (
    "claude-code-auth-hostile-guest",
    "claude_code_auth_hostile_guest.wasm",
);
const FS_STORE: (&str, &str) = (
    "claude-code-auth-fs-store",
    "claude_code_auth_fs_store.wasm",
);
const COMPOSED: &str = "claude_code_auth_with_fs_store.wasm";

fn main() {
    let root = componentize::workspace_root();
    for watched in [
        "tests/hostile-guest/src",
        "tests/hostile-guest/Cargo.toml",
        "stores/fs-store/src",
        "stores/fs-store/Cargo.toml",
        "wit",
        "Cargo.lock",
        componentize::SHIPPED,
    ] {
        println!("cargo::rerun-if-changed={}", root.join(watched).display());
    }
    if let Err(message) = build(&root) {
        println!("cargo::error={message}");
    }
}

fn build(root: &Path) -> Result<(), String> {
    let target = componentize::guest_target_dir(root);
    let built = componentize::build_core_modules(root, &target, &[HOSTILE.0, FS_STORE.0])?;
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let wit = root.join("wit");
    // The hostile component keeps std's imports: it shouts on stdout and stderr on request.
    let hostile =
        componentize::componentize(&componentize::read(&built.join(HOSTILE.1))?, false, &wit)?;
    let fs_store =
        componentize::componentize(&componentize::read(&built.join(FS_STORE.1))?, true, &wit)?;
    let shipped = componentize::read(&root.join(componentize::SHIPPED))?;
    let composed = componentize::compose(&shipped, &fs_store)?;
    for (name, bytes, env) in [
        (HOSTILE.1, &hostile, "TESTKIT_HOSTILE"),
        (FS_STORE.1, &fs_store, "TESTKIT_FS_STORE"),
        (COMPOSED, &composed, "TESTKIT_WITH_FS_STORE"),
    ] {
        let path = out.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("cargo::rustc-env={env}={}", path.display());
    }
    let published = target.with_file_name("component");
    if std::fs::create_dir_all(&published).is_ok() {
        let _ = std::fs::write(published.join(FS_STORE.1), &fs_store);
        let _ = std::fs::write(published.join(COMPOSED), &composed);
    }
    Ok(())
}
