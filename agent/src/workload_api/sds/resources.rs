//! What one SDS request names, built from the cache as SPIRE builds it:
//! a SPIFFE ID of one of the caller's identities -> its `tls_certificate`
//! (chain and PKCS#8 key, PEM); `default` -> the first identity under that
//! name; a trust domain ID -> a `validation_context` with that bundle's
//! CAs; `ROOTCA` -> the own trust domain's; `ALL` -> one context with the
//! SPIFFE certificate validator holding every bundle the caller trusts;
//! no name at all -> every identity and every bundle. A name the caller
//! has nothing for is refused, naming it.

use std::collections::{BTreeSet, HashSet};
use std::time::SystemTime;

use envoy_types::pb::envoy::config::core::v3::{
    data_source::Specifier, node::UserAgentVersionType, DataSource, Node, TypedExtensionConfig,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, spiffe_cert_validator_config::TrustDomain as ValidatorTrustDomain,
    CertificateValidationContext, Secret, SpiffeCertValidatorConfig, TlsCertificate,
};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use signet_core::pem::{encode_certs, encode_private_key};
use signet_core::Selector;
use tonic::Status;

use super::super::{federation, x509};
use crate::cache::Snapshot;
use crate::config::SdsSettings;

/// The only resource type this service serves.
pub fn secret_type_url() -> String {
    Secret::type_url()
}

/// The extension name Envoy knows the SPIFFE validator by.
pub const SPIFFE_VALIDATOR: &str = "envoy.tls.cert_validator.spiffe";

/// What the caller may be served right now.
#[derive(Debug, PartialEq)]
pub enum SdsState {
    /// No entry matches the caller.
    NoIdentity,
    /// Entries match, but none has a valid SVID yet, or not one that was
    /// asked for by name.
    Pending,
    /// The requested secrets, in a stable order (bundles, then
    /// identities), and the SPIFFE IDs whose keys they carry.
    Ready {
        secrets: Vec<Secret>,
        served: Vec<String>,
    },
}

/// How a request asks: its names, and whether per-trust-domain contexts
/// use the SPIFFE validator.
pub struct Ask<'a> {
    pub names: &'a [String],
    pub spiffe_validator: bool,
    pub settings: &'a SdsSettings,
}

/// Whether `node` is an Envoy that has the SPIFFE certificate validator
/// (1.18 on, as SPIRE decides it): older or unnamed clients get plain
/// `trusted_ca` contexts for single trust domains.
pub fn supports_spiffe_validator(node: Option<&Node>) -> bool {
    let Some(UserAgentVersionType::UserAgentBuildVersion(build)) =
        node.and_then(|n| n.user_agent_version_type.as_ref())
    else {
        return false;
    };
    build
        .version
        .as_ref()
        .is_some_and(|v| v.major_number > 1 || (v.major_number == 1 && v.minor_number >= 18))
}

fn inline(bytes: Vec<u8>) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(Specifier::InlineBytes(bytes)),
        ..DataSource::default()
    })
}

fn validator(trust_domains: Vec<ValidatorTrustDomain>) -> CertificateValidationContext {
    let config = SpiffeCertValidatorConfig {
        trust_domains,
        ..SpiffeCertValidatorConfig::default()
    };
    CertificateValidationContext {
        custom_validator_config: Some(TypedExtensionConfig {
            name: SPIFFE_VALIDATOR.into(),
            typed_config: Some(Any {
                type_url: SpiffeCertValidatorConfig::type_url(),
                value: config.encode_to_vec(),
            }),
        }),
        ..CertificateValidationContext::default()
    }
}

fn validation_secret(name: String, context: CertificateValidationContext) -> Secret {
    Secret {
        name,
        r#type: Some(secret::Type::ValidationContext(context)),
    }
}

/// The state of `ask` for a caller with `selectors`.
pub fn state(
    snapshot: &Snapshot,
    selectors: &HashSet<Selector>,
    now: SystemTime,
    ask: &Ask<'_>,
) -> Result<SdsState, Status> {
    let Some(identities) = x509::identities(snapshot, selectors, now) else {
        return Ok(SdsState::NoIdentity);
    };
    if identities.is_empty() {
        return Ok(SdsState::Pending);
    }
    let mut wanted: BTreeSet<&str> = ask
        .names
        .iter()
        .map(String::as_str)
        .filter(|n| !n.is_empty())
        .collect();
    let all = wanted.is_empty();
    let settings = ask.settings;

    // Every bundle the caller trusts, keyed by trust domain ID: its own,
    // then those its served identities federate with (never merged).
    let own_id = snapshot.trust_domain.id_string();
    let mut bundles: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    if let Some(own) = snapshot.bundle.as_deref() {
        bundles.push((own_id.clone(), own.clone()));
    }
    let federated = federation::trust_domains(identities.iter().map(|(e, _)| *e));
    for b in federation::held(snapshot, &federated) {
        if !b.x509_authorities.is_empty() {
            bundles.push((b.trust_domain.id_string(), b.x509_authorities.clone()));
        }
    }
    let one = |name: String, td_id: &str, cas: &[Vec<u8>]| {
        let pem = encode_certs(cas.iter().map(Vec::as_slice)).into_bytes();
        let context = if ask.spiffe_validator && !settings.disable_spiffe_cert_validation {
            validator(vec![ValidatorTrustDomain {
                name: td_id.trim_start_matches("spiffe://").to_owned(),
                trust_bundle: inline(pem),
                ..ValidatorTrustDomain::default()
            }])
        } else {
            CertificateValidationContext {
                trusted_ca: inline(pem),
                ..CertificateValidationContext::default()
            }
        };
        validation_secret(name, context)
    };

    let mut secrets = Vec::new();
    for (td_id, cas) in &bundles {
        if all || wanted.remove(td_id.as_str()) {
            secrets.push(one(td_id.clone(), td_id, cas));
        }
    }
    if wanted.remove(settings.default_bundle_name.as_str()) {
        if let Some((td_id, cas)) = bundles.iter().find(|(id, _)| *id == own_id) {
            secrets.push(one(settings.default_bundle_name.clone(), td_id, cas));
        }
    }
    if wanted.remove(settings.default_all_bundles_name.as_str()) {
        let mut every: Vec<ValidatorTrustDomain> = bundles
            .iter()
            .map(|(td_id, cas)| ValidatorTrustDomain {
                name: td_id.trim_start_matches("spiffe://").to_owned(),
                trust_bundle: inline(encode_certs(cas.iter().map(Vec::as_slice)).into_bytes()),
                ..ValidatorTrustDomain::default()
            })
            .collect();
        every.sort_by(|a, b| a.name.cmp(&b.name));
        secrets.push(validation_secret(
            settings.default_all_bundles_name.clone(),
            validator(every),
        ));
    }
    let mut served = Vec::new();
    for (i, (entry, svid)) in identities.iter().enumerate() {
        let id = entry.spiffe_id.to_string();
        let name = if all || wanted.remove(id.as_str()) {
            id.clone()
        } else if i == 0 && wanted.remove(settings.default_svid_name.as_str()) {
            settings.default_svid_name.clone()
        } else {
            continue;
        };
        served.push(id);
        secrets.push(Secret {
            name,
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: inline(
                    encode_certs(svid.x509.chain.iter().map(Vec::as_slice)).into_bytes(),
                ),
                private_key: inline(encode_private_key(&svid.key_pkcs8).into_bytes()),
                ..TlsCertificate::default()
            })),
        });
    }
    if !wanted.is_empty() {
        // An identity of the caller's whose SVID is still being issued
        // (or renewed after expiring) is waited for, not refused.
        let issuing = |name: &&str| {
            snapshot
                .matching(selectors)
                .any(|c| c.entry.spiffe_id.to_string() == *name)
        };
        if wanted.iter().all(issuing) {
            return Ok(SdsState::Pending);
        }
        return Err(Status::permission_denied(format!(
            "workload is not authorized for the requested identities {:?}",
            wanted.into_iter().collect::<Vec<_>>()
        )));
    }
    Ok(SdsState::Ready { secrets, served })
}

/// `secrets` as the `Any`s of a DiscoveryResponse.
pub fn encode(secrets: &[Secret]) -> Vec<Any> {
    secrets
        .iter()
        .map(|s| Any {
            type_url: secret_type_url(),
            value: s.encode_to_vec(),
        })
        .collect()
}
