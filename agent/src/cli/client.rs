//! A Workload API client on the agent's Unix socket: socket resolution
//! (flag, then SPIFFE_ENDPOINT_SOCKET, then the default) and the security
//! header on every request.

use std::path::{Path, PathBuf};

use anyhow::Context;
use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tonic::transport::Channel;
use tonic::Request;

use crate::config::{default_socket_path, PACKAGED_SOCKET_PATH};

pub const SOCKET_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

/// Flag, then `$SPIFFE_ENDPOINT_SOCKET` (`unix:///path` or a plain path),
/// then the packaged agent's socket if there is one, then this user's
/// default (where an agent run by this user listens).
pub fn resolve_socket(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_owned());
    }
    match std::env::var(SOCKET_ENV) {
        Ok(v) if !v.is_empty() => parse_endpoint(&v),
        _ if Path::new(PACKAGED_SOCKET_PATH).exists() => Ok(PathBuf::from(PACKAGED_SOCKET_PATH)),
        _ => {
            let path = default_socket_path();
            // Under /tmp anyone could have made the directory first: only
            // one of our own is trusted (the agent refuses any other too).
            if let Some(dir) = path.parent().filter(|_| path.starts_with("/tmp")) {
                if dir.exists() {
                    signet_runtime::dirs::check_own_dir(dir)?;
                }
            }
            Ok(path)
        }
    }
}

fn parse_endpoint(v: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = v.strip_prefix("unix://") {
        anyhow::ensure!(
            path.starts_with('/'),
            "{SOCKET_ENV}={v:?}: a unix URL needs an absolute path (unix:///path)"
        );
        return Ok(PathBuf::from(path));
    }
    anyhow::ensure!(
        !v.contains("://"),
        "{SOCKET_ENV}={v:?}: only unix:// endpoints are supported"
    );
    Ok(PathBuf::from(v))
}

pub async fn connect(socket: &Path) -> anyhow::Result<SpiffeWorkloadApiClient<Channel>> {
    Ok(SpiffeWorkloadApiClient::new(channel(socket).await?))
}

/// A gRPC channel to the agent's socket (the Workload API and Envoy SDS).
pub async fn channel(socket: &Path) -> anyhow::Result<Channel> {
    let channel = signet_proto::uds::channel(socket)
        .await
        .with_context(|| format!("cannot connect to the Workload API at {}", socket.display()))?;
    Ok(channel)
}

/// A request carrying `workload.spiffe.io: true`.
pub fn request<T>(message: T) -> Request<T> {
    signet_proto::uds::workload_request(message)
}

/// `2024-05-01 12:00:00 +0000 UTC`, as SPIRE's CLI prints times.
pub fn format_time(t: std::time::SystemTime) -> String {
    signet_runtime::time::spire_cli(signet_core::clock::unix_seconds(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn endpoint_env_accepts_unix_urls_and_plain_paths() {
        assert_eq!(
            parse_endpoint("unix:///tmp/a.sock").unwrap(),
            PathBuf::from("/tmp/a.sock")
        );
        assert_eq!(
            parse_endpoint("/tmp/b.sock").unwrap(),
            PathBuf::from("/tmp/b.sock")
        );
        assert!(parse_endpoint("tcp://127.0.0.1:1").is_err());
        assert!(parse_endpoint("unix://relative").is_err());
        assert_eq!(
            resolve_socket(Some(Path::new("/flag.sock"))).unwrap(),
            PathBuf::from("/flag.sock")
        );
    }

    #[test]
    fn times_print_like_spire() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_564_800 + 3661);
        assert_eq!(format_time(t), "2024-05-01 13:01:01 +0000 UTC");
        assert_eq!(
            format_time(SystemTime::UNIX_EPOCH),
            "1970-01-01 00:00:00 +0000 UTC"
        );
    }
}
