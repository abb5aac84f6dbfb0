//! The one place where server errors become gRPC statuses.

use tonic::{Code, Status};

use crate::api::validate::EntryError;
use crate::attest::{AttestError, TpmError, X509PopError};
use crate::ca::CaError;
use crate::datastore::DataStoreError;
use crate::revocation::RevocationError;
use signet_core::jwt::JwtError;

/// An API failure with the status code it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> Code {
        match self {
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::AlreadyExists(_) => Code::AlreadyExists,
            ApiError::PermissionDenied(_) => Code::PermissionDenied,
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::FailedPrecondition(_) => Code::FailedPrecondition,
            ApiError::Internal(_) => Code::Internal,
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        if matches!(e, ApiError::Internal(_)) {
            tracing::error!(error = %e, "internal error");
        }
        Status::new(e.code(), e.to_string())
    }
}

impl From<DataStoreError> for ApiError {
    fn from(e: DataStoreError) -> Self {
        match e {
            DataStoreError::JoinTokenNotFound
            | DataStoreError::JoinTokenExpired
            | DataStoreError::AgentBanned => ApiError::PermissionDenied(e.to_string()),
            DataStoreError::NotFound(_) => ApiError::NotFound(e.to_string()),
            DataStoreError::AlreadyExists(_) => ApiError::AlreadyExists(e.to_string()),
            DataStoreError::InvalidArgument(_) => ApiError::InvalidArgument(e.to_string()),
            DataStoreError::FailedPrecondition(m) => ApiError::FailedPrecondition(m),
            _ if e.is_unavailable() => ApiError::Unavailable(e.to_string()),
            DataStoreError::Corrupt(_)
            | DataStoreError::Database(_)
            | DataStoreError::Migrate(_)
            | DataStoreError::Io { .. }
            | DataStoreError::RecorderStopped => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<CaError> for ApiError {
    fn from(e: CaError) -> Self {
        match e {
            CaError::Expired => ApiError::Unavailable(e.to_string()),
            CaError::NotFound(_) => ApiError::NotFound(e.to_string()),
            CaError::FailedPrecondition(m) => ApiError::FailedPrecondition(m),
            CaError::Jwt(JwtError::MissingAud) => {
                ApiError::InvalidArgument("audience must not be empty".into())
            }
            CaError::Store(d) => d.into(),
            CaError::Stopped | CaError::Upstream(_) => ApiError::Unavailable(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<AttestError> for ApiError {
    fn from(e: AttestError) -> Self {
        match e {
            AttestError::MissingMethod | AttestError::BadCsr(_) | AttestError::MissingResponse => {
                ApiError::InvalidArgument(e.to_string())
            }
            AttestError::DataStore(d) => d.into(),
            AttestError::Ca(c) => c.into(),
            AttestError::WrongMethod(_) => ApiError::Internal(e.to_string()),
            AttestError::StaleChallenge => ApiError::PermissionDenied(e.to_string()),
            AttestError::X509Pop(p) => match p {
                X509PopError::EmptyChain | X509PopError::Parse(_) => {
                    ApiError::InvalidArgument(p.to_string())
                }
                X509PopError::Bundle(_, _) => ApiError::Internal(p.to_string()),
                X509PopError::Untrusted(_)
                | X509PopError::UnsupportedKey(_)
                | X509PopError::BadSignature => ApiError::PermissionDenied(p.to_string()),
            },
            AttestError::Tpm(t) => match t {
                TpmError::Wire(_)
                | TpmError::Credential(_)
                | TpmError::EkNotRsa
                | TpmError::KeyNotEcc
                | TpmError::BadResponse(_) => ApiError::InvalidArgument(t.to_string()),
                TpmError::Untrusted(_)
                | TpmError::CertificateKeyMismatch
                | TpmError::NotResident(_)
                | TpmError::WrongCredential
                | TpmError::BadSignature
                | TpmError::BadQuote(_) => ApiError::PermissionDenied(t.to_string()),
            },
        }
    }
}

impl From<RevocationError> for ApiError {
    fn from(e: RevocationError) -> Self {
        match e {
            RevocationError::DataStore(d) => d.into(),
            RevocationError::Ca(c) => c.into(),
            RevocationError::Stopped => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl From<RevocationError> for Status {
    fn from(e: RevocationError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<crate::federation::RefreshError> for ApiError {
    fn from(e: crate::federation::RefreshError) -> Self {
        use crate::federation::RefreshError;
        match e {
            RefreshError::NoRelationship(_) => ApiError::NotFound(e.to_string()),
            // The peer may answer later: the caller can retry.
            RefreshError::Fetch(_) | RefreshError::Stopped => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl From<crate::federation::RefreshError> for Status {
    fn from(e: crate::federation::RefreshError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<EntryError> for ApiError {
    fn from(e: EntryError) -> Self {
        ApiError::InvalidArgument(e.to_string())
    }
}

impl From<DataStoreError> for Status {
    fn from(e: DataStoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<CaError> for Status {
    fn from(e: CaError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<AttestError> for Status {
    fn from(e: AttestError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<EntryError> for Status {
    fn from(e: EntryError) -> Self {
        ApiError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_token_refusals_are_permission_denied_with_the_contract_text() {
        let s: Status = DataStoreError::JoinTokenNotFound.into();
        assert_eq!(s.code(), Code::PermissionDenied);
        assert_eq!(
            s.message(),
            "join token does not exist or has already been used"
        );
        let s: Status = DataStoreError::JoinTokenExpired.into();
        assert_eq!(s.message(), "join token expired");
        let s: Status = DataStoreError::AgentBanned.into();
        assert_eq!(s.message(), "agent is banned");
        let s: Status = DataStoreError::NotFound("entry x".into()).into();
        assert_eq!(s.code(), Code::NotFound);
    }
}
