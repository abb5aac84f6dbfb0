//! SPIFFE IDs and trust domain names, parsed once at the edge with every rule
//! of the SPIFFE-ID standard; inner code only ever sees these types.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

const SCHEME: &str = "spiffe://";
const MAX_ID_LEN: usize = 2048;
const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// Why a string is not a SPIFFE ID or trust domain; each variant names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("SPIFFE ID is empty")]
    Empty,
    #[error("SPIFFE ID must start with the scheme \"spiffe://\"")]
    WrongScheme,
    #[error("trust domain is missing")]
    MissingTrustDomain,
    #[error("trust domain is longer than 255 bytes")]
    TrustDomainTooLong,
    #[error("trust domain characters are limited to lowercase letters, digits, dots, dashes and underscores (found {0:?})")]
    BadTrustDomainChar(char),
    #[error("SPIFFE ID is longer than 2048 bytes")]
    TooLong,
    #[error("path segments must not be empty")]
    EmptySegment,
    #[error("path segments must not be dot segments (\".\" or \"..\")")]
    DotSegment,
    #[error("path must not end with a trailing slash")]
    TrailingSlash,
    #[error("path segment characters are limited to letters, digits, dots, dashes and underscores (found {0:?})")]
    BadPathChar(char),
    #[error("SPIFFE ID must not carry a port, userinfo, query or fragment (found {0:?})")]
    ForbiddenComponent(char),
    #[error("this SPIFFE ID needs a non-empty path")]
    MissingPath,
}

/// A trust domain name such as `example.org` (not the `spiffe://` form).
/// Shared, not copied, by clones: an agent holds thousands of IDs of one
/// trust domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(Arc<str>);

impl TrustDomain {
    /// Parses a bare name (`example.org`) or a trust domain ID
    /// (`spiffe://example.org`).
    pub fn new(s: &str) -> Result<Self, SpiffeIdError> {
        if s.starts_with(SCHEME) {
            let id = SpiffeId::parse(s)?;
            if !id.path().is_empty() {
                return Err(SpiffeIdError::BadTrustDomainChar('/'));
            }
            return Ok(id.trust_domain);
        }
        validate_trust_domain(s)?;
        Ok(Self(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `spiffe://<name>`, the key used in Workload API bundle maps.
    pub fn id_string(&self) -> String {
        format!("{SCHEME}{}", self.0)
    }

    /// The SPIFFE ID `spiffe://<td><path>`; `path` must start with `/`.
    pub fn id(&self, path: &str) -> Result<SpiffeId, SpiffeIdError> {
        SpiffeId::parse(&format!("{SCHEME}{}{path}", self.0))
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A valid SPIFFE ID: `spiffe://<trust-domain>[/<path>]`. Clones share
/// the text (an SVID and its entry hold one copy of their ID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    /// Empty, or `/seg[/seg...]`.
    path: Arc<str>,
}

impl SpiffeId {
    /// Parses any SPIFFE ID, including a trust domain ID with no path.
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(SpiffeIdError::WrongScheme)?;
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if td.is_empty() {
            return Err(SpiffeIdError::MissingTrustDomain);
        }
        validate_trust_domain(td)?;
        validate_path(path)?;
        Ok(Self {
            trust_domain: TrustDomain(td.into()),
            path: path.into(),
        })
    }

    /// Parses a SPIFFE ID that must name a workload or agent (non-empty path).
    pub fn parse_with_path(s: &str) -> Result<Self, SpiffeIdError> {
        let id = Self::parse(s)?;
        if id.path.is_empty() {
            return Err(SpiffeIdError::MissingPath);
        }
        Ok(id)
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Empty or starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn is_member_of(&self, td: &TrustDomain) -> bool {
        &self.trust_domain == td
    }

    /// The same ID holding `td`'s text instead of its own copy, when it is
    /// a member of `td` (IDs parsed one by one share their trust domain).
    pub fn sharing(mut self, td: &TrustDomain) -> Self {
        if self.trust_domain == *td {
            self.trust_domain = td.clone();
        }
        self
    }

    /// Whether the path is Signet's own (`/signet` and below: agents, the
    /// server). No registration entry or minted SVID may carry one, or a
    /// workload could act as an agent or the server.
    pub fn is_reserved(&self) -> bool {
        &*self.path == RESERVED_PATH
            || self
                .path
                .strip_prefix(RESERVED_PATH)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// The path under which Signet names its own agents and servers.
pub const RESERVED_PATH: &str = "/signet";

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}{}", self.trust_domain.0, self.path)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SpiffeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    for c in td.chars() {
        match c {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
            ':' | '@' | '?' | '#' => return Err(SpiffeIdError::ForbiddenComponent(c)),
            _ => return Err(SpiffeIdError::BadTrustDomainChar(c)),
        }
    }
    Ok(())
}

fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    // `path` starts with '/', so the first split part is the empty prefix.
    for segment in path.split('/').skip(1) {
        match segment {
            "" => {
                return Err(if path.ends_with('/') {
                    SpiffeIdError::TrailingSlash
                } else {
                    SpiffeIdError::EmptySegment
                })
            }
            "." | ".." => return Err(SpiffeIdError::DotSegment),
            _ => {}
        }
        for c in segment.chars() {
            match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => {}
                '?' | '#' => return Err(SpiffeIdError::ForbiddenComponent(c)),
                _ => return Err(SpiffeIdError::BadPathChar(c)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for s in [
            "spiffe://example.org",
            "spiffe://example.org/workload",
            "spiffe://example.org/ns/prod/sa/web-1_a.B",
            "spiffe://a-b_c.d9",
            "spiffe://example.org/...a",
        ] {
            let id = SpiffeId::parse(s).unwrap();
            assert_eq!(id.to_string(), s);
        }
        let id = SpiffeId::parse("spiffe://example.org/a/b").unwrap();
        assert_eq!(id.trust_domain().as_str(), "example.org");
        assert_eq!(id.path(), "/a/b");
    }

    #[test]
    fn rejects_each_rule_with_its_own_error() {
        use SpiffeIdError::*;
        let long_td = format!("spiffe://{}", "a".repeat(256));
        let long_id = format!("spiffe://example.org/{}", "a".repeat(2048));
        let cases: Vec<(&str, SpiffeIdError)> = vec![
            ("", Empty),
            ("http://example.org/a", WrongScheme),
            ("SPIFFE://example.org/a", WrongScheme),
            ("spiffe:/example.org", WrongScheme),
            ("spiffe://", MissingTrustDomain),
            ("spiffe:///path", MissingTrustDomain),
            (&long_td, TrustDomainTooLong),
            (&long_id, TooLong),
            ("spiffe://Example.org/a", BadTrustDomainChar('E')),
            ("spiffe://exa%6dple.org", BadTrustDomainChar('%')),
            ("spiffe://example.org:8080/a", ForbiddenComponent(':')),
            ("spiffe://user@example.org/a", ForbiddenComponent('@')),
            ("spiffe://example.org/a?x=1", ForbiddenComponent('?')),
            ("spiffe://example.org/a#frag", ForbiddenComponent('#')),
            ("spiffe://example.org?x", ForbiddenComponent('?')),
            ("spiffe://example.org//a", EmptySegment),
            ("spiffe://example.org/a//b", EmptySegment),
            ("spiffe://example.org/", TrailingSlash),
            ("spiffe://example.org/a/", TrailingSlash),
            ("spiffe://example.org/./a", DotSegment),
            ("spiffe://example.org/a/..", DotSegment),
            ("spiffe://example.org/a%20b", BadPathChar('%')),
            ("spiffe://example.org/a b", BadPathChar(' ')),
            ("spiffe://example.org/caf\u{e9}", BadPathChar('\u{e9}')),
        ];
        for (input, want) in cases {
            assert_eq!(SpiffeId::parse(input), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn workload_ids_need_a_path() {
        assert_eq!(
            SpiffeId::parse_with_path("spiffe://example.org"),
            Err(SpiffeIdError::MissingPath)
        );
        assert!(SpiffeId::parse_with_path("spiffe://example.org/w").is_ok());
    }

    #[test]
    fn trust_domain_accepts_name_or_id() {
        let a = TrustDomain::new("example.org").unwrap();
        let b = TrustDomain::new("spiffe://example.org").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.id_string(), "spiffe://example.org");
        assert!(TrustDomain::new("spiffe://example.org/x").is_err());
        assert!(TrustDomain::new("Example.org").is_err());
        assert!(TrustDomain::new("").is_err());
        assert_eq!(
            a.id("/w").unwrap(),
            SpiffeId::parse("spiffe://example.org/w").unwrap()
        );
    }

    #[test]
    fn signet_paths_are_reserved_and_only_they() {
        let reserved = |s: &str| SpiffeId::parse(s).unwrap().is_reserved();
        assert!(reserved("spiffe://example.org/signet"));
        assert!(reserved("spiffe://example.org/signet/server"));
        assert!(reserved("spiffe://example.org/signet/agent/join_token/x"));
        assert!(!reserved("spiffe://example.org/signets"));
        assert!(!reserved("spiffe://example.org/app/signet/x"));
        assert!(!reserved("spiffe://example.org/Signet/server"));
        assert!(!reserved("spiffe://example.org"));
    }
}
