//! `[oidc]`: the OIDC discovery provider clouds federate with (AWS, GCP,
//! Azure accept a JWT-SVID as a web-identity token from a provider they
//! trust). `issuer` alone puts `iss` in every JWT-SVID; `bind` also serves
//! `/.well-known/openid-configuration` (under the issuer's path) and the
//! JWKS at `jwks_path`; `tls_cert_path` and `tls_key_path` make it HTTPS
//! (a Web PKI certificate, reloaded when the files change).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// SPIRE's OIDC provider serves its keys there.
pub const DEFAULT_JWKS_PATH: &str = "/keys";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Where discovery is served, e.g. "0.0.0.0:8443"; not served when unset.
    pub bind: Option<String>,
    /// The `iss` of JWT-SVIDs and of the discovery document, e.g.
    /// "https://oidc.example.org".
    pub issuer: Option<String>,
    pub jwks_path: Option<String>,
    pub tls_cert_path: Option<PathBuf>,
    pub tls_key_path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    pub bind: Option<SocketAddr>,
    /// Exactly as configured (it must equal the tokens' `iss`).
    pub issuer: String,
    /// `scheme://host[:port]` of the issuer.
    pub origin: String,
    /// Where discovery is answered: the issuer's path + DISCOVERY_PATH.
    pub discovery_path: String,
    pub jwks_path: String,
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl OidcSettings {
    /// The JWKS's URL, as the discovery document names it.
    pub fn jwks_uri(&self) -> String {
        format!("{}{}", self.origin, self.jwks_path)
    }
}

fn invalid(key: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::Oidc(key, why.into())
}

impl OidcConfig {
    pub fn decide(self) -> Result<Option<OidcSettings>, ConfigError> {
        let Some(issuer) = self.issuer else {
            if self.bind.is_some() || self.jwks_path.is_some() || self.tls_cert_path.is_some() {
                return Err(invalid("issuer", "is required in [oidc]"));
            }
            return Ok(None);
        };
        let uri: http::Uri = issuer
            .parse()
            .map_err(|e| invalid("issuer", format!("{issuer:?} is not a URL: {e}")))?;
        let scheme = uri.scheme_str().unwrap_or_default();
        if scheme != "https" && scheme != "http" {
            return Err(invalid(
                "issuer",
                format!("{issuer:?} must be an https:// (or http://) URL"),
            ));
        }
        let Some(authority) = uri.authority() else {
            return Err(invalid("issuer", format!("{issuer:?} has no host")));
        };
        if uri.query().is_some() || issuer.contains('#') || authority.as_str().contains('@') {
            return Err(invalid(
                "issuer",
                format!("{issuer:?} must not carry a query, fragment or user info (OpenID Connect Discovery 1.0)"),
            ));
        }
        let base_path = uri.path().trim_end_matches('/');
        let jwks_path = self
            .jwks_path
            .unwrap_or_else(|| DEFAULT_JWKS_PATH.to_owned());
        if !jwks_path.starts_with('/')
            || jwks_path.contains(['?', '#'])
            || jwks_path.ends_with(DISCOVERY_PATH)
        {
            return Err(invalid(
                "jwks_path",
                format!("{jwks_path:?} must be a path of its own, starting with /"),
            ));
        }
        let bind = self
            .bind
            .map(|text| {
                text.parse::<SocketAddr>()
                    .map_err(|e| invalid("bind", format!("{text:?}: {e}")))
            })
            .transpose()?;
        let tls = match (self.tls_cert_path, self.tls_key_path) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "tls_cert_path",
                    "tls_cert_path and tls_key_path go together",
                ))
            }
        };
        Ok(Some(OidcSettings {
            origin: format!("{scheme}://{authority}"),
            discovery_path: format!("{base_path}{DISCOVERY_PATH}"),
            issuer,
            bind,
            jwks_path,
            tls,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(issuer: &str, jwks_path: Option<&str>) -> Result<Option<OidcSettings>, ConfigError> {
        OidcConfig {
            issuer: Some(issuer.into()),
            jwks_path: jwks_path.map(Into::into),
            ..OidcConfig::default()
        }
        .decide()
    }

    #[test]
    fn the_issuer_decides_where_discovery_and_keys_are() {
        let s = decide("https://oidc.example.org", None).unwrap().unwrap();
        assert_eq!(s.discovery_path, "/.well-known/openid-configuration");
        assert_eq!(s.jwks_uri(), "https://oidc.example.org/keys");
        let s = decide("https://example.org:8443/tenant/", Some("/jwks.json"))
            .unwrap()
            .unwrap();
        assert_eq!(s.issuer, "https://example.org:8443/tenant/");
        assert_eq!(s.discovery_path, "/tenant/.well-known/openid-configuration");
        assert_eq!(s.jwks_uri(), "https://example.org:8443/jwks.json");
        assert!(OidcConfig::default().decide().unwrap().is_none());
    }

    #[test]
    fn a_bad_issuer_or_path_is_refused_naming_the_key() {
        for (issuer, path, key) in [
            ("oidc.example.org", None, "issuer"),
            ("ftp://example.org", None, "issuer"),
            ("https://example.org/?a=b", None, "issuer"),
            ("https://example.org", Some("keys"), "jwks_path"),
        ] {
            let e = decide(issuer, path).unwrap_err();
            assert_eq!(e.key(), Some(key), "{issuer} {path:?}: {e}");
        }
        let e = OidcConfig {
            bind: Some("127.0.0.1:0".into()),
            ..OidcConfig::default()
        }
        .decide()
        .unwrap_err();
        assert_eq!(e.to_string(), "oidc.issuer: is required in [oidc]");
    }
}
