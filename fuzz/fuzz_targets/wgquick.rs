//! The wg-quick parser on arbitrary text: it must never panic, and whatever it accepts must
//! survive export and re-import unchanged (the round trip the importer promises).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = underpass_profile::parse("fuzz.conf", text) {
        let again = underpass_profile::parse("fuzz.conf", &parsed.config.to_wg_quick())
            .expect("an exported config parses");
        assert_eq!(again.config, parsed.config, "round trip changed the config");
    }
});
