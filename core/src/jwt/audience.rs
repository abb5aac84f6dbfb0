//! What a JWT-SVID request may ask for as audience. Every distinct set is
//! minted, cached and logged on its own, so it is bounded where it enters:
//! the Workload API, the Node API and the Admin API refuse the same way.

/// Audiences one JWT-SVID may carry.
pub const MAX_AUDIENCES: usize = 32;
/// Their UTF-8 bytes together.
pub const MAX_AUDIENCE_BYTES: usize = 4096;
/// A JWT-SVID handed to ValidateJWTSVID (ours are well under 2 KiB).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudienceError {
    #[error("audience must be specified")]
    Missing,
    #[error("audience must not contain an empty value")]
    EmptyValue,
    #[error("{0} audiences requested; at most {MAX_AUDIENCES} are allowed")]
    TooMany(usize),
    #[error("audiences of {0} bytes in all requested; at most {MAX_AUDIENCE_BYTES} are allowed")]
    TooLong(usize),
}

/// At least one audience, none empty (or blank), within both bounds.
pub fn check_audience(audience: &[String]) -> Result<(), AudienceError> {
    if audience.is_empty() {
        return Err(AudienceError::Missing);
    }
    if audience.len() > MAX_AUDIENCES {
        return Err(AudienceError::TooMany(audience.len()));
    }
    let bytes: usize = audience.iter().map(String::len).sum();
    if bytes > MAX_AUDIENCE_BYTES {
        return Err(AudienceError::TooLong(bytes));
    }
    if audience.iter().any(|a| a.trim().is_empty()) {
        return Err(AudienceError::EmptyValue);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aud(n: usize, each: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i:0each$}")).collect()
    }

    #[test]
    fn bounds_are_inclusive_and_say_what_was_asked() {
        assert_eq!(check_audience(&[]), Err(AudienceError::Missing));
        assert_eq!(
            check_audience(&["a".into(), " ".into()]),
            Err(AudienceError::EmptyValue)
        );
        assert_eq!(check_audience(&aud(MAX_AUDIENCES, 8)), Ok(()));
        assert_eq!(
            check_audience(&aud(MAX_AUDIENCES + 1, 8)),
            Err(AudienceError::TooMany(33))
        );
        assert_eq!(check_audience(&aud(4, MAX_AUDIENCE_BYTES / 4)), Ok(()));
        assert_eq!(
            check_audience(&aud(4, MAX_AUDIENCE_BYTES / 4 + 1)),
            Err(AudienceError::TooLong(MAX_AUDIENCE_BYTES + 4))
        );
        let err = check_audience(&aud(10_000, 5)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "10000 audiences requested; at most 32 are allowed"
        );
    }
}
