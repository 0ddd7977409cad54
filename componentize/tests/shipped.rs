//! The component the host crate ships is what `guest/` builds: a reproducible build, run again.

#[test]
fn the_shipped_component_is_what_guest_builds() {
    let root = claude_code_auth_componentize::workspace_root();
    if let Err(message) = claude_code_auth_componentize::check(&root) {
        panic!("{message}");
    }
}
