//! Selectors: `type:value` facts about a node or a workload, such as
//! `unix:uid:1000`. The type is everything before the first colon; the value
//! may itself contain colons.

use std::fmt;
use std::str::FromStr;

const MAX_SELECTOR_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("selector {0:?} must have the form type:value (e.g. unix:uid:1000)")]
    MissingColon(String),
    #[error("selector type must not be empty")]
    EmptyType,
    #[error("selector value must not be empty")]
    EmptyValue,
    #[error("selector type may only hold lowercase letters, digits, '_' and '-' (found {0:?})")]
    BadTypeChar(char),
    #[error("selector value must not contain control characters")]
    ControlChar,
    #[error("selector is longer than 1024 bytes")]
    TooLong,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    kind: String,
    value: String,
}

impl Selector {
    /// Builds a selector from its two parts, validating both.
    pub fn new(kind: &str, value: &str) -> Result<Self, SelectorError> {
        if kind.is_empty() {
            return Err(SelectorError::EmptyType);
        }
        if value.is_empty() {
            return Err(SelectorError::EmptyValue);
        }
        if kind.len() + value.len() + 1 > MAX_SELECTOR_LEN {
            return Err(SelectorError::TooLong);
        }
        if let Some(c) = kind
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
        {
            return Err(SelectorError::BadTypeChar(c));
        }
        if value.chars().any(char::is_control) {
            return Err(SelectorError::ControlChar);
        }
        Ok(Self {
            kind: kind.to_owned(),
            value: value.to_owned(),
        })
    }

    /// Parses `type:value`.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let (kind, value) = s
            .split_once(':')
            .ok_or_else(|| SelectorError::MissingColon(s.to_owned()))?;
        Self::new(kind, value)
    }

    /// The part before the first colon, e.g. `unix`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The rest, e.g. `uid:1000`.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_type_and_value_with_colons() {
        let s = Selector::parse("unix:uid:1000").unwrap();
        assert_eq!(s.kind(), "unix");
        assert_eq!(s.value(), "uid:1000");
        assert_eq!(s.to_string(), "unix:uid:1000");
        let d = Selector::parse("docker:label:app:web").unwrap();
        assert_eq!(d.value(), "label:app:web");
    }

    #[test]
    fn rejects_malformed_selectors() {
        assert!(matches!(
            Selector::parse("unix"),
            Err(SelectorError::MissingColon(_))
        ));
        assert_eq!(Selector::parse(":uid:1"), Err(SelectorError::EmptyType));
        assert_eq!(Selector::parse("unix:"), Err(SelectorError::EmptyValue));
        assert_eq!(
            Selector::parse("Unix:uid:1"),
            Err(SelectorError::BadTypeChar('U'))
        );
        assert_eq!(
            Selector::parse("unix:uid:\n1"),
            Err(SelectorError::ControlChar)
        );
        let long = format!("unix:{}", "a".repeat(1100));
        assert_eq!(Selector::parse(&long), Err(SelectorError::TooLong));
    }
}
