//! Editing JSON text in place: the members of an object found as byte ranges of the text, so a
//! write-back replaces the values it changes and leaves every other byte as it was written —
//! numbers as written (`1.50e3`, not `1.50e+3`), escapes, spacing. The text must already have
//! been parsed (and its duplicate keys refused): the scanner trusts it to be JSON.

use std::ops::Range;

/// One member of an object: its key, decoded, and where its value is in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The key, unescaped.
    pub key: String,
    /// The value's bytes.
    pub value: Range<usize>,
}

/// The members of the object that starts at `start` (its `{`), in order, and the position of
/// its closing `}`. `None` when the text there is not an object (it was parsed first, so only
/// for a wrong `start`).
pub fn members(text: &str, start: usize) -> Option<(Vec<Member>, usize)> {
    let bytes = text.as_bytes();
    let mut at = skip_space(bytes, start);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    let mut found = Vec::new();
    loop {
        at = skip_space(bytes, at);
        match bytes.get(at)? {
            b'}' => return Some((found, at)),
            b',' => {
                at += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_end = string_end(bytes, at)?;
        let key: String = serde_json::from_str(&text[at..key_end]).ok()?;
        at = skip_space(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        let value_start = skip_space(bytes, at + 1);
        let value_end = value_end(bytes, value_start)?;
        found.push(Member {
            key,
            value: value_start..value_end,
        });
        at = value_end;
    }
}

/// `text` with the values of the object at `start` set: each `(key, JSON text)` replaces that
/// member's value where it is, or is added at the end of the object. Everything else stays.
pub fn set_members(text: &str, start: usize, set: &[(&str, String)]) -> Option<String> {
    let (members, close) = members(text, start)?;
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    let mut added = String::new();
    let mut count = members.len();
    for (key, value) in set {
        match members.iter().find(|m| m.key == *key) {
            Some(member) => edits.push((member.value.clone(), value.clone())),
            None => {
                if count > 0 {
                    added.push(',');
                }
                added.push_str(&serde_json::to_string(key).ok()?);
                added.push(':');
                added.push_str(value);
                count += 1;
            }
        }
    }
    edits.push((close..close, added));
    edits.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut out = text.to_owned();
    for (range, value) in edits {
        out.replace_range(range, &value);
    }
    Some(out)
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Just past the string that starts at `at` (its opening quote).
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        match bytes.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Just past the value that starts at `at`.
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_end(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match bytes.get(i)? {
                    b'"' => {
                        i = string_end(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = at;
            while let Some(b) = bytes.get(i) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                i += 1;
            }
            Some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_found_in_any_spacing_with_any_escapes() {
        let text = " {\n \"a\" : 1.50e3 ,\"b\\\"c\":{\"x\":[1,{\"}\":\"]\"}]},\"caf\\u00e9\":\"v\\\\\",\"d\":-0}";
        let (found, close) = members(text, 0).unwrap();
        let keys: Vec<&str> = found.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["a", "b\"c", "caf\u{e9}", "d"]);
        let values: Vec<&str> = found.iter().map(|m| &text[m.value.clone()]).collect();
        assert_eq!(
            values,
            ["1.50e3", "{\"x\":[1,{\"}\":\"]\"}]}", "\"v\\\\\"", "-0"]
        );
        assert_eq!(&text[close..], "}");
        assert_eq!(members("[1]", 0), None);
    }

    #[test]
    fn set_members_replaces_in_place_and_adds_at_the_end() {
        let text = "{\"a\": 1.50e3, \"t\" : \"old\" }";
        let out = set_members(text, 0, &[("t", "\"new\"".into()), ("n", "7".into())]).unwrap();
        assert_eq!(out, "{\"a\": 1.50e3, \"t\" : \"new\" ,\"n\":7}");
        assert_eq!(
            set_members("{ }", 0, &[("n", "7".into())]).unwrap(),
            "{ \"n\":7}"
        );
    }
}
