//! The Workload API's security header: every request must carry
//! `workload.spiffe.io: true`, which a browser-driven SSRF cannot add.

use signet_proto::{WORKLOAD_SECURITY_HEADER, WORKLOAD_SECURITY_HEADER_VALUE};
use tonic::{Request, Status};

use super::status;

/// The interceptor in front of every RPC: a request without the header is
/// refused before anything else is read.
pub fn check_security_header<T>(request: &Request<T>) -> Result<(), Status> {
    match request.metadata().get(WORKLOAD_SECURITY_HEADER) {
        Some(v) if v.as_bytes() == WORKLOAD_SECURITY_HEADER_VALUE.as_bytes() => Ok(()),
        _ => Err(status::missing_header()),
    }
}

/// [`check_security_header`] as a tonic interceptor.
pub fn interceptor(request: Request<()>) -> Result<Request<()>, Status> {
    check_security_header(&request).map(|()| request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_value_true_passes() {
        let mut ok = Request::new(());
        ok.metadata_mut()
            .insert(WORKLOAD_SECURITY_HEADER, "true".parse().unwrap());
        assert!(check_security_header(&ok).is_ok());

        let mut wrong = Request::new(());
        wrong
            .metadata_mut()
            .insert(WORKLOAD_SECURITY_HEADER, "TRUE".parse().unwrap());
        let err = check_security_header(&wrong).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(err.message(), status::MISSING_HEADER);
        assert!(check_security_header(&Request::new(())).is_err());
    }
}
