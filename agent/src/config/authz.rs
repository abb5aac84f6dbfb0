//! `[authz]`: how the agent's Envoy `ext_authz` service finds a caller
//! that presents a JWT-SVID instead of a client certificate.

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthzSection {
    /// The request header holding the JWT-SVID (`authorization`, with or
    /// without `Bearer `).
    pub jwt_header: Option<String>,
    /// The audience the JWT-SVID must carry; unset: JWT-SVIDs are not
    /// taken as principals (a token for another service must not be
    /// replayable here).
    pub jwt_audience: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzSettings {
    /// Lowercase, as Envoy forwards header names.
    pub jwt_header: String,
    pub jwt_audience: Option<String>,
}

impl Default for AuthzSettings {
    fn default() -> Self {
        Self {
            jwt_header: "authorization".into(),
            jwt_audience: None,
        }
    }
}

impl AuthzSection {
    pub fn settings(self) -> Result<AuthzSettings, ConfigError> {
        let d = AuthzSettings::default();
        let jwt_header = match self.jwt_header {
            None => d.jwt_header,
            Some(h) if http::HeaderName::from_bytes(h.as_bytes()).is_ok() => h.to_ascii_lowercase(),
            Some(h) => {
                return Err(ConfigError::Authz(format!(
                    "jwt_header {h:?} is not an HTTP header name"
                )))
            }
        };
        let jwt_audience = match self.jwt_audience {
            Some(a) if a.trim().is_empty() => return Err(ConfigError::Empty("authz.jwt_audience")),
            other => other,
        };
        Ok(AuthzSettings {
            jwt_header,
            jwt_audience,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_checked_and_lowercased() {
        let s = AuthzSection {
            jwt_header: Some("X-JWT-SVID".into()),
            jwt_audience: Some("orders".into()),
        }
        .settings()
        .unwrap();
        assert_eq!(s.jwt_header, "x-jwt-svid");
        assert_eq!(s.jwt_audience.as_deref(), Some("orders"));
        assert_eq!(
            AuthzSection::default().settings().unwrap(),
            AuthzSettings::default()
        );
        assert!(AuthzSection {
            jwt_header: Some("bad header".into()),
            ..Default::default()
        }
        .settings()
        .is_err());
    }
}
