//! The gRPC answer to a caller over its limit: `RESOURCE_EXHAUSTED`, the
//! message saying what was limited and when to retry, and the standard
//! `google.rpc.RetryInfo` detail (in `grpc-status-details-bin`) that gRPC
//! clients read the delay from.

use std::time::Duration;

use prost::Message;
use tonic::{Code, Status};

use super::retry_millis;

const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

#[derive(Clone, PartialEq, Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<prost_types::Duration>,
}

/// `RESOURCE_EXHAUSTED`: "{what} is over its limit ({rate}); retry in N ms".
pub fn exhausted(what: &str, rate: super::Rate, retry_after: Duration) -> Status {
    let ms = retry_millis(retry_after);
    let message = format!("rate limit: {what} is over its limit ({rate}); retry in {ms} ms");
    let delay = Duration::from_millis(ms);
    let info = RetryInfo {
        retry_delay: Some(prost_types::Duration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
        }),
    };
    let details = RpcStatus {
        code: Code::ResourceExhausted as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: RETRY_INFO_TYPE.to_owned(),
            value: info.encode_to_vec(),
        }],
    };
    Status::with_details(
        Code::ResourceExhausted,
        message,
        details.encode_to_vec().into(),
    )
}

/// The delay a `RESOURCE_EXHAUSTED` status asks for, from its RetryInfo.
pub fn retry_after(status: &Status) -> Option<Duration> {
    if status.code() != Code::ResourceExhausted {
        return None;
    }
    let details = RpcStatus::decode(status.details()).ok()?;
    details
        .details
        .iter()
        .find(|a| a.type_url == RETRY_INFO_TYPE)
        .and_then(|a| RetryInfo::decode(a.value.as_slice()).ok())
        .and_then(|r| r.retry_delay)
        .and_then(|d| {
            Some(Duration::new(
                u64::try_from(d.seconds).ok()?,
                u32::try_from(d.nanos).ok()?,
            ))
        })
}
