//! `cargo run -p claude-code-auth-componentize -- write | check`: regenerate the component the
//! host crate ships from `guest/`, or check that the shipped one is what `guest/` builds.

use std::process::ExitCode;

use claude_code_auth_componentize::{SHIPPED, check, workspace_root, write};

fn main() -> ExitCode {
    let root = workspace_root();
    let command = std::env::args().nth(1);
    let done = match command.as_deref() {
        Some("write") => write(&root).map(|path| format!("wrote {}", path.display())),
        Some("check") => check(&root).map(|()| format!("{SHIPPED} is what guest/ builds")),
        _ => {
            eprintln!("usage: claude-code-auth-componentize write | check");
            return ExitCode::from(2);
        }
    };
    match done {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
