//! Named policy sources, parsed and validated against the Signet schema.
//! A source (one `policy create --file`) may hold several policies; each
//! gets the id `<name>` (the only one) or `<name>/<n>` (1-based, in file
//! order), or `<name>/<@id>` when annotated `@id("...")`, so a decision
//! names the policies that made it.

use std::collections::BTreeSet;
use std::str::FromStr;

use cedar_policy::{Policy, PolicyId, PolicySet, ValidationMode, Validator};
use miette::Diagnostic;

use crate::location::line_col;
use crate::schema::schema;

/// One stored policy source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy name {0:?}: 1 to 64 letters, digits, '.', '_' or '-'")]
    Name(String),
    #[error("{name}: holds no policy")]
    Empty { name: String },
    /// Cedar refused it: a syntax error, or the schema's validator.
    #[error("{name}:{line}:{column}: {message}")]
    Invalid {
        name: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{name}:{line}:{column}: trust domain {trust_domain:?} is neither this one nor one it federates with")]
    UnknownTrustDomain {
        name: String,
        line: usize,
        column: usize,
        trust_domain: String,
    },
    #[error("two policies are named {0:?}")]
    Duplicate(String),
}

/// Valid policy names: they become parts of policy ids and CLI arguments.
pub fn check_name(name: &str) -> Result<(), PolicyError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(PolicyError::Name(name.to_owned()))
    }
}

/// A diagnostic's message, its help, and where its first label points.
fn located(name: &str, text: &str, d: &dyn Diagnostic, message: String) -> PolicyError {
    let offset = d
        .labels()
        .and_then(|mut l| l.next())
        .map_or(0, |l| l.offset());
    let (line, column) = line_col(text, offset);
    // Cedar names the policy by its parse-order id (`policy0`), which the
    // line and column already point at better.
    let message = match message.strip_prefix("for policy `") {
        Some(rest) => rest
            .split_once("`, ")
            .map_or(message.clone(), |(_, m)| m.to_owned()),
        None => message,
    };
    let message = match d.help() {
        Some(help) => format!("{message} ({help})"),
        None => message,
    };
    PolicyError::Invalid {
        name: name.to_owned(),
        line,
        column,
        message,
    }
}

/// Every trust domain `text` names: in `TrustDomain::"td"` entity
/// references and in `spiffe://td/...` strings, with the offset of each.
fn named_trust_domains(text: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (marker, end) in [
        ("TrustDomain::\"", &['"'][..]),
        ("spiffe://", &['/', '"', '*'][..]),
    ] {
        let mut from = 0;
        while let Some(at) = text.get(from..).and_then(|t| t.find(marker)) {
            let start = from + at + marker.len();
            let rest = text.get(start..).unwrap_or_default();
            let len = rest.find(end).unwrap_or(rest.len());
            let td = rest.get(..len).unwrap_or_default();
            if !td.is_empty() {
                found.push((td.to_owned(), start));
            }
            from = start;
        }
    }
    found
}

/// Parses `text` as the policies of `name`, validated strictly against
/// the schema; `trust_domains`, when given, are the only ones a policy may
/// name (the own and the federated ones).
pub fn parse_source(
    name: &str,
    text: &str,
    trust_domains: Option<&BTreeSet<String>>,
) -> Result<Vec<Policy>, Vec<PolicyError>> {
    check_name(name).map_err(|e| vec![e])?;
    let parsed = PolicySet::from_str(text).map_err(|errors| {
        errors
            .iter()
            .map(|e| located(name, text, e, e.to_string()))
            .collect::<Vec<_>>()
    })?;
    let policies: Vec<&Policy> = parsed.policies().collect();
    if policies.is_empty() {
        return Err(vec![PolicyError::Empty {
            name: name.to_owned(),
        }]);
    }
    let result = Validator::new(schema().clone()).validate(&parsed, ValidationMode::Strict);
    let mut errors: Vec<PolicyError> = result
        .validation_errors()
        .map(|e| located(name, text, e, e.to_string()))
        .collect();
    if let Some(known) = trust_domains {
        for (td, offset) in named_trust_domains(text) {
            if !known.contains(&td) {
                let (line, column) = line_col(text, offset);
                errors.push(PolicyError::UnknownTrustDomain {
                    name: name.to_owned(),
                    line,
                    column,
                    trust_domain: td,
                });
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // File order: Cedar numbers them policy0, policy1, ... as it parses.
    let mut ordered: Vec<&Policy> = policies;
    ordered.sort_by_key(|p| {
        p.id()
            .to_string()
            .trim_start_matches("policy")
            .parse::<usize>()
            .unwrap_or(usize::MAX)
    });
    let single = ordered.len() == 1;
    Ok(ordered
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let id = match (p.annotation("id"), single) {
                (Some(tag), _) => format!("{name}/{tag}"),
                (None, true) => name.to_owned(),
                (None, false) => format!("{name}/{}", i + 1),
            };
            p.new_id(PolicyId::new(id))
        })
        .collect())
}

/// Every stored source, as one policy set.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub(crate) set: PolicySet,
    names: Vec<String>,
}

impl Policies {
    /// Builds the set from `sources` (each already accepted once; a source
    /// that no longer validates is refused here with its reason, and the
    /// caller keeps its previous set).
    pub fn build(sources: &[PolicySource]) -> Result<Self, Vec<PolicyError>> {
        let mut set = PolicySet::new();
        let mut names = Vec::new();
        let mut errors = Vec::new();
        for s in sources {
            if names.contains(&s.name) {
                errors.push(PolicyError::Duplicate(s.name.clone()));
                continue;
            }
            names.push(s.name.clone());
            match parse_source(&s.name, &s.text, None) {
                Ok(policies) => {
                    for p in policies {
                        if let Err(e) = set.add(p) {
                            errors.push(PolicyError::Invalid {
                                name: s.name.clone(),
                                line: 1,
                                column: 1,
                                message: e.to_string(),
                            });
                        }
                    }
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(Self { set, names })
        } else {
            Err(errors)
        }
    }

    /// The names of the sources, in the order given.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// How many policies (not sources) the set holds.
    pub fn len(&self) -> usize {
        self.set.policies().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tds() -> BTreeSet<String> {
        ["example.org", "partner.test"].map(String::from).into()
    }

    #[test]
    fn policies_get_ids_from_the_name_and_file_order() {
        let text = r#"
permit(principal, action == Signet::Action::"read", resource);
@id("writers")
permit(principal, action == Signet::Action::"write", resource)
  when { principal.spiffe_id like "spiffe://example.org/writer/*" };
forbid(principal, action == Signet::Action::"delete", resource);
"#;
        let ids: Vec<String> = parse_source("orders", text, Some(&tds()))
            .unwrap()
            .iter()
            .map(|p| p.id().to_string())
            .collect();
        assert_eq!(ids, ["orders/1", "orders/writers", "orders/3"]);
        let one = parse_source("solo", "permit(principal, action, resource);", None).unwrap();
        assert_eq!(one[0].id().to_string(), "solo");
    }

    #[test]
    fn a_syntax_error_is_named_with_line_and_column() {
        let text = "permit(principal, action, resource)\n  when { principal.spiffe_id == };\n";
        let errors = parse_source("bad", text, None).unwrap_err();
        let PolicyError::Invalid { line, column, .. } = &errors[0] else {
            panic!("{errors:?}")
        };
        assert_eq!(*line, 2, "{}", errors[0]);
        assert!(*column > 1, "{}", errors[0]);
    }

    #[test]
    fn the_schema_refuses_unknown_attributes_and_actions_where_they_are() {
        let text = "permit(principal, action, resource)\n  when { principal.team == \"x\" };";
        let errors = parse_source("attr", text, None).unwrap_err();
        let message = errors[0].to_string();
        assert!(message.starts_with("attr:2:"), "{message}");
        assert!(message.contains("team"), "{message}");
        let errors = parse_source(
            "act",
            "permit(principal, action == Signet::Action::\"fly\", resource);",
            None,
        )
        .unwrap_err();
        assert!(errors[0].to_string().starts_with("act:1:"), "{}", errors[0]);
        // Optional context attributes must be tested with `has`.
        let errors = parse_source(
            "zone",
            "permit(principal, action, resource) when { context.zone == \"dmz\" };",
            None,
        )
        .unwrap_err();
        assert!(errors[0].to_string().contains("zone"), "{}", errors[0]);
    }

    #[test]
    fn a_trust_domain_we_do_not_federate_with_is_refused() {
        let text = "permit(principal in Signet::TrustDomain::\"stranger.test\", action, resource);\n\
                    permit(principal, action, resource) when { principal.spiffe_id like \"spiffe://partner.test/*\" };";
        let errors = parse_source("peers", text, Some(&tds())).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "peers:1:43: trust domain \"stranger.test\" is neither this one nor one it federates with"
        );
    }

    #[test]
    fn names_are_checked_and_empty_sources_refused() {
        assert!(check_name("orders-v2.1_x").is_ok());
        for bad in ["", "a/b", "with space", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_source("none", "// nothing\n", None).unwrap_err(),
            vec![PolicyError::Empty {
                name: "none".into()
            }]
        );
    }
}
