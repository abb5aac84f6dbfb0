//! Every gRPC status the Workload API answers with, decided in one place:
//! real clients branch on the code (go-spiffe and py-spiffe retry on
//! `Unavailable` and take `PermissionDenied` as "no identity for you"), so
//! each condition maps to one code here and nowhere else.

use tonic::Status;

pub const MISSING_HEADER: &str = "security header missing from request";
pub const NO_IDENTITY: &str = "no identity issued";
pub const AUDIENCE_REQUIRED: &str = "audience must be specified";
pub const SVID_REQUIRED: &str = "svid must be specified";
pub const REVOKED: &str = "token has been revoked";
pub const SHUTTING_DOWN: &str = "agent is shutting down";

/// The request lacks `workload.spiffe.io: true` (SPIFFE Workload API §5).
pub fn missing_header() -> Status {
    Status::invalid_argument(MISSING_HEADER)
}

/// A malformed or out-of-bounds argument; `why` says which and how.
pub fn invalid_argument(why: impl std::fmt::Display) -> Status {
    Status::invalid_argument(why.to_string())
}

/// A JWT-SVID of a trust domain none of the caller's entries federates
/// with: refused like any token that fails validation, with the reason.
pub fn not_federated(trust_domain: &str) -> Status {
    Status::invalid_argument(format!(
        "trust domain {trust_domain:?} is not one the caller's entries federate with"
    ))
}

/// The agent has no trust bundle yet: worth a retry.
pub fn not_ready() -> Status {
    Status::unavailable("agent is not ready yet: no trust bundle from the server")
}

/// The caller's uid is over its call rate: `ResourceExhausted` with the
/// delay after which a call passes (go-spiffe backs off on it and retries).
pub fn rate_limited(
    uid: u32,
    rate: signet_runtime::ratelimit::Rate,
    retry_after: std::time::Duration,
) -> Status {
    signet_runtime::ratelimit::status::exhausted(
        &format!("Workload API calls from uid {uid}"),
        rate,
        retry_after,
    )
}

/// The connection's peer credentials are unknown: nothing can be attested.
pub fn unknown_caller() -> Status {
    Status::unavailable("caller credentials are unknown")
}

/// Reading the caller's selectors failed (it may have exited, or a
/// container runtime did not answer): worth a retry.
pub fn attestation_failed(why: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("workload attestation failed: {why}"))
}

/// No entry matches the caller.
pub fn no_identity() -> Status {
    Status::permission_denied(NO_IDENTITY)
}

/// The caller asked for a SPIFFE ID none of its entries has.
pub fn no_identity_for(id: impl std::fmt::Display) -> Status {
    Status::permission_denied(format!("{NO_IDENTITY} for {id}"))
}

/// A JWT-SVID could not be had from the server: worth a retry.
pub fn jwt_unavailable(spiffe_id: impl std::fmt::Display, why: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("could not fetch JWT-SVID for {spiffe_id}: {why}"))
}

/// The agent is draining: open streams end with this.
pub fn shutting_down() -> Status {
    Status::unavailable(SHUTTING_DOWN)
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn each_condition_has_the_code_clients_branch_on() {
        for (status, code) in [
            (missing_header(), Code::InvalidArgument),
            (invalid_argument("x"), Code::InvalidArgument),
            (not_federated("b.test"), Code::InvalidArgument),
            (not_ready(), Code::Unavailable),
            (unknown_caller(), Code::Unavailable),
            (attestation_failed("gone"), Code::Unavailable),
            (no_identity(), Code::PermissionDenied),
            (no_identity_for("spiffe://td/x"), Code::PermissionDenied),
            (jwt_unavailable("spiffe://td/x", "down"), Code::Unavailable),
            (shutting_down(), Code::Unavailable),
        ] {
            assert_eq!(status.code(), code, "{}", status.message());
        }
        assert_eq!(
            no_identity_for("spiffe://td/x").message(),
            "no identity issued for spiffe://td/x"
        );
    }
}
