//! The `security` command lines of the keychain store, exactly as the `claude` CLI (2.1.332)
//! makes them: the read (`find-generic-password -a <account> -w -s <service>`), the write
//! (`add-generic-password -U -a "<account>" -s "<service>" -X "<hex>"` on `security -i`'s stdin,
//! or on its command line when that line is longer than `security -i` takes), the delete, and
//! the encoding of the document (non-ASCII escaped as `\uXXXX` before it is hex-encoded, so that
//! `security -w` prints it back as text).

use std::fmt::Write as _;

use zeroize::Zeroizing;

/// `security` by its absolute path: a `PATH` that leads elsewhere gets no credential.
pub(crate) const SECURITY: &str = "/usr/bin/security";
/// `id`, for the user name when `USER` is not set.
pub(crate) const ID: &str = "/usr/bin/id";
/// `security`'s exit status when the item does not exist (errSecItemNotFound).
pub(crate) const ITEM_NOT_FOUND: i32 = 44;
/// `security`'s exit status for a keychain that is locked and cannot ask to be unlocked.
pub(crate) const KEYCHAIN_LOCKED: i32 = 36;
/// The longest line the CLI hands `security -i` (it reads lines into a 4096-byte buffer and
/// cuts what is longer, which has corrupted items); a longer write goes on the command line.
pub(crate) const STDIN_LIMIT: usize = 4032;
/// The account the CLI uses when the user name is not one `security -i` can take as it is.
pub(crate) const FALLBACK_ACCOUNT: &str = "claude-code-user";

/// How a document is written: a line for `security -i`, or the arguments of `security`.
pub(crate) enum WriteCommand {
    /// `security -i`, this line on stdin.
    Stdin(Zeroizing<String>),
    /// `security` with these arguments (the document, hex-encoded, among them).
    Argv(Zeroizing<Vec<String>>),
}

/// The read: `find-generic-password -a <account> -w -s <service>`.
pub(crate) fn read_args<'a>(account: &'a str, service: &'a str) -> [&'a str; 6] {
    ["find-generic-password", "-a", account, "-w", "-s", service]
}

/// The delete: `delete-generic-password -a <account> -s <service>`.
pub(crate) fn delete_args<'a>(account: &'a str, service: &'a str) -> [&'a str; 5] {
    ["delete-generic-password", "-a", account, "-s", service]
}

/// The write of `document`, or `None` when the account or service holds a control character
/// (a newline would end the `security -i` command and start another).
pub(crate) fn write_command(account: &str, service: &str, document: &str) -> Option<WriteCommand> {
    let hex = hex_of(&ascii_json(document));
    let mut line = Zeroizing::new(String::with_capacity(hex.len() + 128));
    let _ = writeln!(
        line,
        "add-generic-password -U -a {} -s {} -X \"{}\"",
        quoted(account)?,
        quoted(service)?,
        hex.as_str()
    );
    if line.len() <= STDIN_LIMIT {
        return Some(WriteCommand::Stdin(line));
    }
    Some(WriteCommand::Argv(Zeroizing::new(vec![
        "add-generic-password".into(),
        "-U".into(),
        "-a".into(),
        account.into(),
        "-s".into(),
        service.into(),
        "-X".into(),
        hex.as_str().into(),
    ])))
}

/// The account for a user name (from `USER`, else the system's): the name when it is only
/// `[a-zA-Z0-9._-]`, else `claude-code-user`, as the CLI decides.
pub(crate) fn account_for(user: Option<&str>) -> String {
    match user {
        Some(name)
            if !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) =>
        {
            name.to_owned()
        }
        _ => FALLBACK_ACCOUNT.to_owned(),
    }
}

/// `document` as the CLI puts it in the item: every character outside printable ASCII written
/// as `\uXXXX` (UTF-16 code units, lower-case hex), which in JSON text only strings hold; JSON
/// whitespace between tokens dropped (the CLI writes compact JSON), so no newline reaches the
/// item and `security -w` prints it back as text rather than as hex.
pub(crate) fn ascii_json(document: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(document.len()));
    let (mut in_string, mut escaped) = (false, false);
    for c in document.chars() {
        if !in_string && matches!(c, ' ' | '\t' | '\n' | '\r') {
            continue;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
        if (' '..='~').contains(&c) {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

fn hex_of(text: &str) -> Zeroizing<String> {
    let mut hex = Zeroizing::new(String::with_capacity(text.len() * 2));
    for byte in text.as_bytes() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// An argument for `security -i`, which splits its input lines like a shell; `None` for a value
/// with a control character. Names the CLI makes come out as the CLI quotes them (`"name"`).
pub(crate) fn quoted(value: &str) -> Option<String> {
    if value.chars().any(char::is_control) {
        return None;
    }
    Some(format!(
        "\"{}\"",
        value.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}
