//! The token endpoint's answer (`claude_code_auth_guest::fuzz_checks::answer` says what holds).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| claude_code_auth_guest::fuzz_checks::answer(data));
