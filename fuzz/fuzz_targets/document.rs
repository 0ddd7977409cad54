//! The credential document's parser and editor (`claude_code_auth_guest::fuzz_checks::document`
//! says what holds).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| claude_code_auth_guest::fuzz_checks::document(data));
