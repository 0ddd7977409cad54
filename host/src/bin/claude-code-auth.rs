//! The `claude-code-auth` command; everything lives in [`entelix_auth_claude_code::cli`].

fn main() -> std::process::ExitCode {
    entelix_auth_claude_code::cli::main()
}
