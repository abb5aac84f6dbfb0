//! The Admin API's federation calls: federated bundles set by hand or held
//! from a bundle endpoint, federation relationships, and the trust domains
//! an entry federates with. Each checks what it is given and maps errors
//! in one place (`status.rs`).

use signet_core::bundle::{bundle_from_pem, parse_spiffe_bundle, Bundle};
use signet_core::clock::unix_seconds;
use signet_core::TrustDomain;
use signet_proto::admin::{
    Entry, FederatedBundle, FederationRelationship, SetFederatedBundleRequest, TrustDomainRequest,
    UpdateEntryRequest,
};

use crate::api::convert::admin_entry;
use crate::api::status::ApiError;
use crate::api::validate::federates_with;
use crate::api::ServerState;
use crate::datastore::{EntryUpdate, FederatedBundleRecord, RelationshipRecord};
use crate::federation::{self, BundleSource, EndpointProfile, HTTPS_SPIFFE, HTTPS_WEB};

/// A bundle file is a few KB; this bounds what a caller can make us parse.
pub const MAX_BUNDLE_BYTES: usize = 1024 * 1024;

/// A peer trust domain: valid, and not ours.
pub fn peer_trust_domain(state: &ServerState, value: &str) -> Result<TrustDomain, ApiError> {
    let td = federation::trust_domain(value)
        .map_err(|e| ApiError::InvalidArgument(format!("invalid trust_domain {value:?}: {e}")))?;
    if &td == state.ca.trust_domain() {
        return Err(ApiError::InvalidArgument(format!(
            "{td} is this server's own trust domain: only other trust domains are federated"
        )));
    }
    Ok(td)
}

/// `content` in `format` ("spiffe", the default, or "pem") as `td`'s bundle.
pub fn parse_bundle(td: &TrustDomain, content: &[u8], format: &str) -> Result<Bundle, ApiError> {
    if content.len() > MAX_BUNDLE_BYTES {
        return Err(ApiError::InvalidArgument(format!(
            "the bundle is {} bytes; at most {MAX_BUNDLE_BYTES}",
            content.len()
        )));
    }
    let parsed = match format {
        "" | "spiffe" => parse_spiffe_bundle(td, content).map(|p| p.bundle),
        "pem" => bundle_from_pem(td, content),
        other => {
            return Err(ApiError::InvalidArgument(format!(
                "bundle format {other:?}: expected spiffe or pem"
            )))
        }
    };
    parsed.map_err(|e| ApiError::InvalidArgument(format!("the bundle of {td}: {e}")))
}

pub fn admin_federated_bundle(rec: &FederatedBundleRecord) -> FederatedBundle {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    FederatedBundle {
        trust_domain: rec.bundle.trust_domain.to_string(),
        // Parsed from a document or PEM: it always serializes again.
        document: rec.bundle.to_spiffe_document(0).unwrap_or_default(),
        sequence: rec.bundle.sequence,
        updated_at: rec.updated_at,
        source: rec.source.as_str().to_owned(),
        x509_authorities: count(rec.bundle.x509_authorities.len()),
        jwt_authorities: count(rec.bundle.jwt_authorities.len()),
    }
}

pub async fn update_entry(
    state: &ServerState,
    req: &UpdateEntryRequest,
) -> Result<Entry, ApiError> {
    if req.id.is_empty() {
        return Err(ApiError::InvalidArgument("entry id is required".into()));
    }
    let tds = federates_with(&req.federates_with, state.ca.trust_domain())?;
    if req.downstream == Some(true) {
        let found = state.ds.get_entry(&req.id).await?;
        if found.is_some_and(|r| r.node) {
            return Err(ApiError::InvalidArgument(
                "a node alias entry cannot be downstream (it gets no SVID)".into(),
            ));
        }
    }
    let update = EntryUpdate {
        federates_with: (!req.keep_federates_with).then_some(tds),
        downstream: req.downstream,
    };
    let rec = state.ds.update_entry(&req.id, update).await?;
    tracing::info!(entry_id = %rec.entry.id, federates_with = ?rec.entry.federates_with, downstream = rec.entry.downstream, "entry updated");
    Ok(admin_entry(&rec))
}

pub async fn set_bundle(
    state: &ServerState,
    req: &SetFederatedBundleRequest,
) -> Result<FederatedBundle, ApiError> {
    let td = peer_trust_domain(state, &req.trust_domain)?;
    let bundle = parse_bundle(&td, &req.content, &req.format)?;
    let record = FederatedBundleRecord {
        bundle,
        source: BundleSource::Static,
        updated_at: unix_seconds(state.ca.now()),
    };
    let stored = state.ds.set_federated_bundle(record, false).await?;
    tracing::info!(trust_domain = %td, sequence = stored.bundle.sequence, "federated bundle set");
    Ok(admin_federated_bundle(&stored))
}

pub async fn get_bundle(
    state: &ServerState,
    req: &TrustDomainRequest,
) -> Result<FederatedBundle, ApiError> {
    let td = peer_trust_domain(state, &req.trust_domain)?;
    let found =
        state.ds.federated_bundle(&td).await?.ok_or_else(|| {
            ApiError::NotFound(format!("no federated bundle of trust domain {td}"))
        })?;
    Ok(admin_federated_bundle(&found))
}

pub async fn delete_bundle(
    state: &ServerState,
    req: &TrustDomainRequest,
) -> Result<FederatedBundle, ApiError> {
    let td = peer_trust_domain(state, &req.trust_domain)?;
    let gone = state.ds.delete_federated_bundle(&td).await?;
    tracing::info!(trust_domain = %td, "federated bundle deleted");
    Ok(admin_federated_bundle(&gone))
}

/// A relationship as given, checked; `bootstrap` is the bundle to check an
/// https_spiffe endpoint with at first contact.
pub fn relationship_from(
    state: &ServerState,
    req: &FederationRelationship,
) -> Result<(RelationshipRecord, Option<FederatedBundleRecord>), ApiError> {
    let td = peer_trust_domain(state, &req.trust_domain)?;
    let url =
        federation::endpoint_url(&req.bundle_endpoint_url).map_err(ApiError::InvalidArgument)?;
    let now = unix_seconds(state.ca.now());
    let (profile, bootstrap) = match req.profile.as_str() {
        HTTPS_SPIFFE => {
            let endpoint_id = signet_core::SpiffeId::parse(&req.endpoint_spiffe_id).map_err(|e| {
                ApiError::InvalidArgument(format!(
                    "endpoint_spiffe_id {:?}: {e} (https_spiffe needs the SPIFFE ID the endpoint presents)",
                    req.endpoint_spiffe_id
                ))
            })?;
            let bootstrap = if req.trust_domain_bundle.is_empty() {
                None
            } else {
                Some(FederatedBundleRecord {
                    bundle: parse_bundle(
                        &td,
                        &req.trust_domain_bundle,
                        &req.trust_domain_bundle_format,
                    )?,
                    source: BundleSource::Endpoint,
                    updated_at: now,
                })
            };
            (EndpointProfile::HttpsSpiffe { endpoint_id }, bootstrap)
        }
        HTTPS_WEB => {
            let ca_bundle = if req.ca_bundle.is_empty() {
                None
            } else {
                signet_core::pem::decode_certs(&req.ca_bundle)
                    .map_err(|e| ApiError::InvalidArgument(format!("ca_bundle: {e}")))?;
                Some(String::from_utf8_lossy(&req.ca_bundle).into_owned())
            };
            (EndpointProfile::HttpsWeb { ca_bundle }, None)
        }
        other => {
            return Err(ApiError::InvalidArgument(format!(
                "profile {other:?}: expected {HTTPS_SPIFFE} or {HTTPS_WEB}"
            )))
        }
    };
    Ok((
        RelationshipRecord {
            trust_domain: td,
            bundle_endpoint_url: url,
            profile,
            created_at: now,
            last_fetch_at: 0,
            last_error: String::new(),
        },
        bootstrap,
    ))
}

/// A relationship as the Admin API shows it, with the bundle held.
pub async fn admin_relationship(
    state: &ServerState,
    rel: &RelationshipRecord,
) -> Result<FederationRelationship, ApiError> {
    let held = state.ds.federated_bundle(&rel.trust_domain).await?;
    let (endpoint_spiffe_id, ca_bundle) = match &rel.profile {
        EndpointProfile::HttpsSpiffe { endpoint_id } => (endpoint_id.to_string(), Vec::new()),
        EndpointProfile::HttpsWeb { ca_bundle } => (
            String::new(),
            ca_bundle.clone().unwrap_or_default().into_bytes(),
        ),
    };
    Ok(FederationRelationship {
        trust_domain: rel.trust_domain.to_string(),
        bundle_endpoint_url: rel.bundle_endpoint_url.clone(),
        profile: rel.profile.name().to_owned(),
        endpoint_spiffe_id,
        trust_domain_bundle: Vec::new(),
        trust_domain_bundle_format: String::new(),
        ca_bundle,
        bundle: held.as_ref().map(admin_federated_bundle),
        created_at: rel.created_at,
        last_fetch_at: rel.last_fetch_at,
        last_error: rel.last_error.clone(),
    })
}

/// Relationships of `[[federation.federates_with]]`, stored (or updated to
/// match) at start, as `federation create` would.
pub async fn apply_configured(
    state: &ServerState,
    configured: &[crate::config::FederatesWithConfig],
) -> anyhow::Result<()> {
    use anyhow::Context;
    for c in configured {
        let read = |path: &std::path::PathBuf| {
            let path = path.clone();
            async move {
                tokio::fs::read(&path)
                    .await
                    .with_context(|| format!("federation.federates_with: {}", path.display()))
            }
        };
        let trust_domain_bundle = match &c.trust_domain_bundle_path {
            Some(path) => read(path).await?,
            None => Vec::new(),
        };
        let ca_bundle = match &c.ca_bundle_path {
            Some(path) => read(path).await?,
            None => Vec::new(),
        };
        let req = FederationRelationship {
            trust_domain: c.trust_domain.clone(),
            bundle_endpoint_url: c.bundle_endpoint_url.clone(),
            profile: c.profile.clone(),
            endpoint_spiffe_id: c.endpoint_spiffe_id.clone().unwrap_or_default(),
            trust_domain_bundle,
            trust_domain_bundle_format: c.trust_domain_bundle_format.clone().unwrap_or_default(),
            ca_bundle,
            ..FederationRelationship::default()
        };
        let (rel, bootstrap) = relationship_from(state, &req)
            .map_err(|e| anyhow::anyhow!("federation.federates_with {}: {e}", c.trust_domain))?;
        match state.ds.relationship(&rel.trust_domain).await? {
            None => {
                state.ds.create_relationship(rel, bootstrap).await?;
            }
            Some(stored)
                if stored.bundle_endpoint_url == rel.bundle_endpoint_url
                    && stored.profile == rel.profile => {}
            Some(_) => {
                state.ds.update_relationship(rel).await?;
            }
        }
    }
    Ok(())
}
