//! SPIFFE ID and trust domain parsing: never panics, and whatever parses
//! prints back to a string that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_core::{SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = SpiffeId::parse(s) {
        let printed = id.to_string();
        assert_eq!(printed, s, "a parsed ID prints back to its input");
        assert_eq!(SpiffeId::parse(&printed).as_ref(), Ok(&id));
        assert_eq!(SpiffeId::parse_with_path(s).is_ok(), !id.path().is_empty());
        assert!(id.is_member_of(id.trust_domain()));
    }
    if let Ok(td) = TrustDomain::new(s) {
        assert_eq!(TrustDomain::new(&td.id_string()).as_ref(), Ok(&td));
        assert_eq!(
            SpiffeId::parse(&td.id_string()).map(|id| id.path().is_empty()),
            Ok(true)
        );
    }
});
