//! Federation: this trust domain's bundle published on a SPIFFE bundle
//! endpoint, and other trust domains' bundles held beside ours (never merged
//! with it) — set by hand, or fetched from their endpoints by every server
//! of the group — for the agents to hand to workloads whose entries
//! federate with them.

pub mod client;
pub mod endpoint;
pub mod refresher;
pub mod verify;

use std::fmt;

use signet_core::{SpiffeId, TrustDomain};

pub use refresher::{Federation, RefreshBounds, RefreshError};

/// How a peer's bundle endpoint is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointProfile {
    /// The endpoint presents an X509-SVID with this SPIFFE ID, checked
    /// against the bundle held for the endpoint's trust domain.
    HttpsSpiffe { endpoint_id: SpiffeId },
    /// A Web PKI certificate for the URL's host, checked against these CA
    /// certificates (PEM), or the system's roots when `None`.
    HttpsWeb { ca_bundle: Option<String> },
}

impl EndpointProfile {
    pub fn name(&self) -> &'static str {
        match self {
            EndpointProfile::HttpsSpiffe { .. } => HTTPS_SPIFFE,
            EndpointProfile::HttpsWeb { .. } => HTTPS_WEB,
        }
    }
}

pub const HTTPS_SPIFFE: &str = "https_spiffe";
pub const HTTPS_WEB: &str = "https_web";

/// Where a federated bundle came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleSource {
    /// `bundle set` by an admin.
    Static,
    /// Fetched from the trust domain's bundle endpoint.
    Endpoint,
}

impl BundleSource {
    pub fn as_str(self) -> &'static str {
        match self {
            BundleSource::Static => "static",
            BundleSource::Endpoint => "endpoint",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "static" => Some(BundleSource::Static),
            "endpoint" => Some(BundleSource::Endpoint),
            _ => None,
        }
    }
}

impl fmt::Display for BundleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A trust domain as an admin or a config file names it: `b.test` or
/// `spiffe://b.test`.
pub fn trust_domain(value: &str) -> Result<TrustDomain, signet_core::SpiffeIdError> {
    let bare = value.trim();
    TrustDomain::new(bare.strip_prefix("spiffe://").unwrap_or(bare))
}

/// A bundle endpoint URL as given: `https://HOST[:PORT][/PATH]`, no
/// userinfo. Returned as given (trimmed).
pub fn endpoint_url(value: &str) -> Result<String, String> {
    let value = value.trim();
    let uri: http::Uri = value
        .parse()
        .map_err(|e| format!("bundle endpoint URL {value:?}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "bundle endpoint URL {value:?}: must be https:// (both profiles are TLS)"
        ));
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("bundle endpoint URL {value:?}: no host"));
    };
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return Err(format!(
            "bundle endpoint URL {value:?}: a host (and port), no user"
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_are_https_with_a_host() {
        assert!(endpoint_url("https://b.test:8443").is_ok());
        assert!(endpoint_url(" https://127.0.0.1:8443/bundle ").is_ok());
        for bad in [
            "http://b.test",
            "https://",
            "b.test:8443",
            "https://u:p@b.test/",
        ] {
            assert!(endpoint_url(bad).is_err(), "{bad}");
        }
        assert_eq!(trust_domain("spiffe://b.test").unwrap().as_str(), "b.test");
        assert!(trust_domain("B.test").is_err());
    }
}
