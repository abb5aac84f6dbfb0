//! Follows the upstream's roots through its agent on this host (the
//! Workload API's bundle stream), so that a root the upstream adds reaches
//! this site's bundle as the upstream publishes it, not at the next CA.

use std::sync::Arc;

use signet_core::x509::split_der_certs;
use signet_proto::uds;
use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use signet_proto::workload::X509BundlesRequest;
use tokio::sync::{mpsc, oneshot};

use super::signet_client::{chain, ClientError};
use super::SignetUpstream;
use crate::ca::authorities::Command;
use crate::ca::manager::{retry_after, Request};

/// Hands each new set of upstream roots to the manager behind `requests`,
/// reconnecting with backoff; ends when the manager does (a weak sender:
/// this task must not keep the manager alive).
pub fn follow(upstream: Arc<SignetUpstream>, requests: mpsc::WeakSender<Request>) {
    tokio::spawn(async move {
        let mut failures = 0_u32;
        while requests.strong_count() > 0 {
            match stream_roots(&upstream, &requests, &mut failures).await {
                Ok(()) => return,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let retry = retry_after(failures);
                    tracing::warn!(error = %chain(&e), retry_in_s = retry.as_secs(), "following the upstream's roots");
                    tokio::time::sleep(retry).await;
                }
            }
        }
    });
}

/// One bundle stream; `Ok` when the manager has stopped.
async fn stream_roots(
    upstream: &SignetUpstream,
    requests: &mpsc::WeakSender<Request>,
    failures: &mut u32,
) -> Result<(), ClientError> {
    let socket = &upstream.settings().workload_api_socket;
    let channel = uds::channel(socket)
        .await
        .map_err(|e| ClientError::AgentSocket(socket.clone(), e))?;
    let refused = |s: tonic::Status| ClientError::Bundles(s.code(), s.message().to_owned());
    let mut stream = SpiffeWorkloadApiClient::new(channel)
        .fetch_x509_bundles(uds::workload_request(X509BundlesRequest {}))
        .await
        .map_err(refused)?
        .into_inner();
    let key = upstream.trust_domain().id_string();
    while let Some(message) = stream.message().await.map_err(refused)? {
        *failures = 0;
        let Some(der) = message.bundles.get(&key) else {
            continue;
        };
        let roots = split_der_certs(der).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        if roots.is_empty() {
            continue;
        }
        let (reply, outcome) = oneshot::channel();
        let request = Request {
            command: Command::UpstreamRoots(roots),
            reply,
        };
        let Some(manager) = requests.upgrade() else {
            return Ok(());
        };
        if manager.send(request).await.is_err() {
            return Ok(());
        }
        drop(manager);
        match outcome.await {
            Ok(Ok(o)) if o.changed => {
                tracing::info!("the upstream's roots changed: the bundle follows them");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "storing the upstream's new roots"),
            _ => {}
        }
    }
    Err(ClientError::BadAnswer("the bundle stream ended".into()))
}
