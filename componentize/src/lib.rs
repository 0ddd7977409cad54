//! Builds the components of this workspace from source: the refresh component that
//! `entelix-auth-claude-code` ships (`host/component/claude_code_auth.wasm`, embedded by the crate
//! so that users need no wasm32 target), and the test components (`testkit`'s build script).
//!
//! The build is reproducible: the toolchain is pinned (`rust-toolchain.toml`), the profile is
//! fixed (`component-release`), the environment cannot leak flags into it, and the paths that end
//! up in panic locations (this checkout, the cargo home) are remapped to fixed names. So the
//! component built here from `guest/` is byte for byte the shipped one, whatever the machine or
//! the directory — which [`check`] proves and CI runs.

mod adapters;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use adapters::componentize;

/// The target components are built for.
pub const TARGET: &str = "wasm32-wasip2";
/// Workspace profile tuned for a small component (see the root Cargo.toml).
pub const PROFILE: &str = "component-release";
/// The guest package, and the core module it links to.
const GUEST: (&str, &str) = ("claude-code-auth-guest", "claude_code_auth_guest.wasm");
/// Where the shipped component lives, from the workspace root.
pub const SHIPPED: &str = "host/component/claude_code_auth.wasm";
/// The command that regenerates it.
pub const REGENERATE: &str = "cargo run -p claude-code-auth-componentize -- write";

/// The workspace root (this crate sits directly in it).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The directory the nested wasm builds use: `<target dir>/guest-build`, one for every caller,
/// so the guest compiles once.
pub fn guest_target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("guest-build")
}

/// Whether the toolchain has the wasm32-wasip2 standard library.
pub fn target_installed() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .is_some_and(|libdir| libdir.is_dir())
}

/// Build `packages` as core modules for [`TARGET`] into `target_dir`, reproducibly; the modules
/// are in the returned directory. Cargo's output goes to stderr (a build script's stdout is read
/// by cargo).
pub fn build_core_modules(
    root: &Path,
    target_dir: &Path,
    packages: &[&str],
) -> Result<PathBuf, String> {
    if !target_installed() {
        return Err(format!(
            "the {TARGET} target is missing; run: rustup target add {TARGET}"
        ));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--locked")
        .args(["--target", TARGET, "--profile", PROFILE])
        .arg("--target-dir")
        .arg(target_dir)
        .stdout(Stdio::from(std::io::stderr()));
    for package in packages {
        build.args(["-p", package]);
    }
    // Nothing from the calling build may change this one: its flags, profile overrides,
    // incremental mode, target dir, wrappers.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let kept = ["CARGO_HOME", "CARGO_NET_", "CARGO_HTTP_", "CARGO_REGISTR"]
            .iter()
            .any(|prefix| name.starts_with(prefix));
        if (name.starts_with("CARGO_") && !kept)
            || name.starts_with("RUSTC_")
            || ["RUSTFLAGS", "RUSTDOCFLAGS"].contains(&name.as_ref())
        {
            build.env_remove(name.as_ref());
        }
    }
    build.env("CARGO_ENCODED_RUSTFLAGS", rustflags(root).join("\u{1f}"));
    match build.status() {
        Ok(status) if status.success() => Ok(target_dir.join(TARGET).join(PROFILE)),
        Ok(status) => Err(format!(
            "building {} for {TARGET} failed ({status}); the compiler output is above",
            packages.join(", ")
        )),
        Err(e) => Err(format!("could not run cargo: {e}")),
    }
}

/// Link core modules (the components are made by [`componentize`], which answers std's own
/// imports) and remap every machine-specific path to a fixed one.
fn rustflags(root: &Path) -> Vec<String> {
    let mut flags = vec!["-Clink-arg=--skip-wit-component".to_owned()];
    let mut remap = |from: &Path, to: &str| {
        flags.push(format!("--remap-path-prefix={}={to}", from.display()));
    };
    remap(root, "/entelix-auth-claude-code");
    if let Some(home) = cargo_home() {
        remap(&home, "/cargo");
    }
    flags
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|path| std::fs::canonicalize(&path).unwrap_or(path))
}

/// The refresh component, as `guest/` builds it now.
pub fn product_component(root: &Path) -> Result<Vec<u8>, String> {
    let built = build_core_modules(root, &guest_target_dir(root), &[GUEST.0])?;
    let core = read(&built.join(GUEST.1))?;
    componentize(&core, true, &root.join("wit"))
}

/// Fail unless the shipped component is byte for byte what `guest/` builds now, saying how to
/// regenerate it.
pub fn check(root: &Path) -> Result<(), String> {
    let built = product_component(root)?;
    let shipped = read(&root.join(SHIPPED))?;
    if built == shipped {
        return Ok(());
    }
    Err(format!(
        "{SHIPPED} ({} bytes) is not what guest/ builds now ({} bytes): after changing guest/ or \
         wit/, run `{REGENERATE}` and commit the result",
        shipped.len(),
        built.len()
    ))
}

/// Build the refresh component and write it where the host crate embeds it from.
pub fn write(root: &Path) -> Result<PathBuf, String> {
    let built = product_component(root)?;
    let path = root.join(SHIPPED);
    std::fs::write(&path, built).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// `wac plug`: the exports of `plug` fill the matching imports of `socket`.
pub fn compose(socket: &[u8], plug: &[u8]) -> Result<Vec<u8>, String> {
    use wac_graph::{CompositionGraph, EncodeOptions};
    use wac_types::Package;
    let mut graph = CompositionGraph::new();
    let mut register = |name: &str, bytes: &[u8]| {
        let package = Package::from_bytes(name, None, bytes.to_vec(), graph.types_mut())
            .map_err(|e| format!("{e:#}"))?;
        graph.register_package(package).map_err(|e| e.to_string())
    };
    let socket = register("entelix:claude-code-auth", socket)?;
    let plug = register("entelix:fs-store", plug)?;
    wac_graph::plug(&mut graph, vec![plug], socket).map_err(|e| e.to_string())?;
    graph
        .encode(EncodeOptions::default())
        .map_err(|e| e.to_string())
}

/// Read `path`, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}
