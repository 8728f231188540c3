//! The bundle reader on arbitrary bytes: envelope, base64, JSON and signature checks must
//! refuse garbage without panicking. Also exercises the location inference on the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = underpass_profile::bundle::open("fuzz.underpass", data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = underpass_profile::location::infer(text, text);
        let _ = underpass_profile::bundle::parse_utc(text);
    }
});
