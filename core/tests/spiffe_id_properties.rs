//! Property tests: SPIFFE IDs survive a print and parse round-trip, and
//! whatever string parses is exactly what the ID prints.

use proptest::prelude::*;
use signet_core::{SpiffeId, TrustDomain};

/// A trust domain name within the standard's 255-byte limit.
fn trust_domain() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,64}"
}

/// A path segment: the standard's characters, never `.` or `..`.
fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,24}".prop_filter("dot segments are not allowed", |s| s != "." && s != "..")
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 0..8)
        .prop_map(|segs| segs.iter().map(|s| format!("/{s}")).collect::<String>())
}

/// Strings close to the grammar, with the characters that break it mixed in.
fn near_miss() -> impl Strategy<Value = String> {
    prop_oneof![
        "spiffe://[a-zA-Z0-9._:@?#%/ -]{0,40}",
        "[sS]piffe:/{0,3}[a-z0-9./]{0,20}",
        any::<String>(),
    ]
}

proptest! {
    #[test]
    fn generated_id_prints_and_parses_back_to_itself(td in trust_domain(), path in path()) {
        let text = format!("spiffe://{td}{path}");
        let id = SpiffeId::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(id.trust_domain().as_str(), td.as_str());
        prop_assert_eq!(id.path(), path.as_str());
        let printed = id.to_string();
        prop_assert_eq!(&printed, &text);
        prop_assert_eq!(SpiffeId::parse(&printed), Ok(id.clone()));
        prop_assert_eq!(printed.parse::<SpiffeId>(), Ok(id.clone()));
        let td = TrustDomain::new(&td).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(id.is_member_of(&td));
        if !path.is_empty() {
            prop_assert_eq!(td.id(&path), Ok(id));
        }
    }

    #[test]
    fn any_string_that_parses_prints_back_to_itself(text in near_miss()) {
        if let Ok(id) = SpiffeId::parse(&text) {
            prop_assert_eq!(id.to_string(), text.clone());
            prop_assert_eq!(SpiffeId::parse(&id.to_string()), Ok(id));
        }
    }

    #[test]
    fn trust_domain_name_and_id_forms_agree(td in trust_domain()) {
        let by_name = TrustDomain::new(&td).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(TrustDomain::new(&by_name.id_string()), Ok(by_name.clone()));
        prop_assert_eq!(by_name.to_string(), td);
    }
}
