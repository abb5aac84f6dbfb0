//! The Signet schema every policy is validated against, and the shapes
//! requests are built to.

use std::sync::OnceLock;

use cedar_policy::Schema;

/// The Cedar schema (Cedar schema syntax).
pub const SCHEMA: &str = r#"
namespace Signet {
  // A trust domain: `principal in Signet::TrustDomain::"example.org"`.
  entity TrustDomain;

  // A workload, by its SPIFFE ID. `segments` holds the path's segments;
  // `selectors` and `hints` come from its registration entries (empty for a
  // workload of another trust domain, or one this host has no entry for).
  entity Workload in [TrustDomain] = {
    spiffe_id: String,
    trust_domain: String,
    path: String,
    segments: Set<String>,
    selectors: Set<String>,
    hints: Set<String>,
  };

  // Whatever a service protects, by a service-defined id (for ext_authz:
  // the request path).
  entity Resource;

  type RequestContext = {
    // When the request is decided (UTC); `context.time.toTime()` is the
    // time of day.
    time: datetime,
    // The caller's address, when known.
    source_address?: ipaddr,
    // The caller's SVID is of a federated trust domain.
    federated: Bool,
    // Seconds the caller's SVID has left (0 when unknown).
    svid_remaining_secs: Long,
    // Supplied by the service.
    zone?: String,
    posture?: String,
    labels?: Set<String>,
  };

  action read, write, delete appliesTo {
    principal: [Workload],
    resource: [Resource],
    context: RequestContext,
  };
}
"#;

/// Entity type and action names, as requests spell them.
pub const WORKLOAD: &str = "Signet::Workload";
pub const TRUST_DOMAIN: &str = "Signet::TrustDomain";
pub const RESOURCE: &str = "Signet::Resource";
pub const ACTION: &str = "Signet::Action";
/// The actions the schema declares.
pub const ACTIONS: [&str; 3] = ["read", "write", "delete"];

/// The parsed schema (parsed once; it is a constant).
pub fn schema() -> &'static Schema {
    static SCHEMA_PARSED: OnceLock<Schema> = OnceLock::new();
    SCHEMA_PARSED.get_or_init(|| match Schema::from_cedarschema_str(SCHEMA) {
        Ok((schema, _warnings)) => schema,
        // A constant that does not parse is a build defect: the unit test
        // below fails first.
        Err(e) => panic!("the Signet Cedar schema does not parse: {e}"),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_schema_parses() {
        let _ = super::schema();
    }
}
