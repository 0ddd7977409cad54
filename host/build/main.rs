//! Builds the guest for `wasm32-wasip2`, makes it a component (`componentize.rs`) and embeds it:
//! the host crate always carries the component that matches its sources. The component is also
//! published at `<target dir>/component/claude_code_auth.wasm` for plugin hosts that load it
//! themselves.

mod componentize;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-wasip2";
/// Workspace profile tuned for a small component (see the root Cargo.toml).
const PROFILE: &str = "component-release";
/// The guest's core module, as linked.
const BUILT: &str = "claude_code_auth_guest.wasm";
const PUBLISHED: &str = "claude_code_auth.wasm";
/// The store component from `stores/fs-store/`.
const FS_STORE: &str = "claude_code_auth_fs_store.wasm";
/// The two composed.
const COMPOSED: &str = "claude_code_auth_with_fs_store.wasm";
/// The test-only component from `tests/hostile-guest/`.
const HOSTILE: &str = "claude_code_auth_hostile_guest.wasm";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("host/ sits in the workspace root");
    let guest = root.join("guest");
    let hostile = root.join("tests").join("hostile-guest");
    let fs_store = root.join("stores").join("fs-store");
    for watched in [
        guest.join("src"),
        guest.join("Cargo.toml"),
        hostile.join("src"),
        hostile.join("Cargo.toml"),
        fs_store.join("src"),
        fs_store.join("Cargo.toml"),
        root.join("wit"),
        root.join("Cargo.lock"),
    ] {
        println!("cargo::rerun-if-changed={}", watched.display());
    }

    if !target_installed() {
        println!("cargo::error=the {TARGET} target is missing; run: rustup target add {TARGET}");
        return;
    }

    let target_dir = target_dir(root);
    // One guest target dir for every host build (debug, test, clippy): the guest compiles once.
    let guest_target = target_dir.join("guest-build");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        // The product's component, a store component to compose with it, and the test-only
        // component that misbehaves on request.
        .args([
            "-p",
            "claude-code-auth-guest",
            "-p",
            "claude-code-auth-fs-store",
        ])
        .args(["-p", "claude-code-auth-hostile-guest"])
        .args(["--target", TARGET, "--profile", PROFILE])
        .arg("--target-dir")
        .arg(&guest_target)
        // Cargo reads build-script stdout as directives: keep the child's output on stderr.
        .stdout(Stdio::from(std::io::stderr()));
    // Flags meant for the host build must not leak into the wasm build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        build.env_remove(var);
    }
    // Link core modules: componentize.rs makes the components, answering std's own imports.
    build.env("CARGO_ENCODED_RUSTFLAGS", "-Clink-arg=--skip-wit-component");
    match build.status() {
        Ok(status) if status.success() => {}
        Ok(status) => {
            println!(
                "cargo::error=building the guest component failed ({status}); the compiler output is above"
            );
            return;
        }
        Err(e) => {
            println!("cargo::error=could not run cargo to build the guest component: {e}");
            return;
        }
    }

    let built_dir = guest_target.join(TARGET).join(PROFILE);
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let wit_dir = root.join("wit");
    let components = [
        (BUILT, PUBLISHED, true),
        (FS_STORE, FS_STORE, true),
        // The hostile component keeps std's imports: it shouts on stdout and stderr on request.
        (HOSTILE, HOSTILE, false),
    ];
    for (core, component, answer_std) in components {
        let core = built_dir.join(core);
        let made = std::fs::read(&core)
            .map_err(|e| e.to_string())
            .and_then(|bytes| componentize::componentize(&bytes, answer_std, &wit_dir))
            .and_then(|bytes| {
                std::fs::write(out_dir.join(component), bytes).map_err(|e| e.to_string())
            });
        if let Err(e) = made {
            println!("cargo::error=making a component of {}: {e}", core.display());
            return;
        }
    }
    let embedded = out_dir.join(PUBLISHED);
    let fs_store = out_dir.join(FS_STORE);
    let hostile_copy = out_dir.join(HOSTILE);
    println!(
        "cargo::rustc-env=CLAUDE_CODE_AUTH_HOSTILE_COMPONENT={}",
        hostile_copy.display()
    );
    // The refresh component with the filesystem store plugged into its credential-store
    // import: a component that imports only standard wasi:* interfaces.
    let composed = out_dir.join(COMPOSED);
    if let Err(e) = compose(&embedded, &fs_store, &composed) {
        println!("cargo::error=composing the refresh component with the store component: {e}");
        return;
    }
    println!(
        "cargo::rustc-env=CLAUDE_CODE_AUTH_FS_COMPOSED={}",
        composed.display()
    );
    let published_dir = target_dir.join("component");
    if std::fs::create_dir_all(&published_dir).is_ok() {
        copy(&embedded, &published_dir.join(PUBLISHED));
        copy(&fs_store, &published_dir.join(FS_STORE));
        copy(&composed, &published_dir.join(COMPOSED));
    }
    println!(
        "cargo::rustc-env=CLAUDE_CODE_AUTH_COMPONENT={}",
        embedded.display()
    );
}

/// `wac plug`: the store's exports fill the refresh component's matching imports.
fn compose(socket: &Path, plug: &Path, out: &Path) -> Result<(), String> {
    use wac_graph::{CompositionGraph, EncodeOptions};
    use wac_types::Package;
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let mut graph = CompositionGraph::new();
    let socket = Package::from_bytes(
        "entelix:claude-code-auth",
        None,
        read(socket)?,
        graph.types_mut(),
    )
    .map_err(|e| format!("{e:#}"))?;
    let socket = graph.register_package(socket).map_err(|e| e.to_string())?;
    let plug = Package::from_bytes("entelix:fs-store", None, read(plug)?, graph.types_mut())
        .map_err(|e| format!("{e:#}"))?;
    let plug = graph.register_package(plug).map_err(|e| e.to_string())?;
    wac_graph::plug(&mut graph, vec![plug], socket).map_err(|e| e.to_string())?;
    let bytes = graph
        .encode(EncodeOptions::default())
        .map_err(|e| e.to_string())?;
    std::fs::write(out, bytes).map_err(|e| format!("{}: {e}", out.display()))
}

fn target_installed() -> bool {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .is_some_and(|libdir| libdir.is_dir())
}

fn target_dir(root: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn copy(from: &Path, to: &Path) {
    if let Err(e) = std::fs::copy(from, to) {
        panic!("copying {} to {}: {e}", from.display(), to.display());
    }
}
