//! The trust bundle as consumers fetch it. Its sequence is the CA
//! manager's: kept in the datastore with a fingerprint of the authorities,
//! increased whenever they change, never reset by a restart.

/// Seconds a bundle consumer should wait before fetching the bundle again
/// (`spiffe_refresh_hint`).
pub const REFRESH_HINT_SECS: u64 = 300;
