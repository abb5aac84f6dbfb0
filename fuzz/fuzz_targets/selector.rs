//! Selector parsing: never panics, and a parsed selector prints back to its
//! input and re-parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_core::Selector;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(sel) = Selector::parse(s) {
        assert_eq!(sel.to_string(), s);
        assert_eq!(Selector::parse(&sel.to_string()).as_ref(), Ok(&sel));
        assert_eq!(Selector::new(sel.kind(), sel.value()).as_ref(), Ok(&sel));
        assert!(!sel.kind().contains(':'));
    }
});
