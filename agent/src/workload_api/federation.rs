//! Which federated bundles a caller sees (SPIFFE Federation): those of the
//! trust domains its entries federate with, and only those the agent holds a
//! bundle for. Each keeps its own trust domain's key (`spiffe://<td>`); none
//! is ever merged with another or stands in for the own one.

use std::collections::{BTreeSet, HashMap};

use signet_core::bundle::Bundle;
use signet_core::jwt::{parse_unverified, JwtPublicKey};
use signet_core::{RegistrationEntry, SpiffeId, TrustDomain};

use crate::cache::Snapshot;

/// The trust domains any of `entries` federates with.
pub fn trust_domains<'a>(
    entries: impl IntoIterator<Item = &'a RegistrationEntry>,
) -> BTreeSet<&'a TrustDomain> {
    entries
        .into_iter()
        .flat_map(|e| e.federates_with.iter())
        .collect()
}

/// The bundles the agent holds of `trust_domains`.
pub fn held<'a, 'b: 'a>(
    snapshot: &'a Snapshot,
    trust_domains: &'a BTreeSet<&'b TrustDomain>,
) -> impl Iterator<Item = &'a Bundle> + 'a {
    trust_domains
        .iter()
        .filter_map(|td| snapshot.federated_bundles.get(*td).map(|b| &**b))
}

/// `spiffe://<td>` → the trust domain's CA certificates (DER, concatenated),
/// as the X.509 maps carry them. A bundle without X.509 authorities (a peer
/// that only issues JWT-SVIDs) has nothing to put there and is left out.
pub fn x509_bundles(
    snapshot: &Snapshot,
    trust_domains: &BTreeSet<&TrustDomain>,
) -> HashMap<String, Vec<u8>> {
    held(snapshot, trust_domains)
        .filter(|b| !b.x509_authorities.is_empty())
        .map(|b| (b.trust_domain.id_string(), b.x509_authorities.concat()))
        .collect()
}

/// A bundle's JWT keys ordered by kid, so the same keys always encode to the
/// same JWKS and an unchanged state is recognised as such.
pub fn sorted_jwt_keys(bundle: &Bundle) -> Vec<(String, JwtPublicKey)> {
    let mut keys = bundle.jwt_keys();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    keys
}

/// The federated trust domain a JWT-SVID claims to come from (its `sub`,
/// read before the signature is checked), when the agent holds a bundle for
/// it. `None` for a token of the own trust domain, of one the agent holds
/// nothing for, or one that does not parse: validating against the own
/// bundle then refuses it with the precise reason.
pub fn claimed_trust_domain(snapshot: &Snapshot, token: &str) -> Option<TrustDomain> {
    let (_, claims) = parse_unverified(token).ok()?;
    let sub = claims.get("sub")?.as_str()?;
    let td = SpiffeId::parse_with_path(sub).ok()?.trust_domain().clone();
    snapshot.federated_bundles.contains_key(&td).then_some(td)
}
