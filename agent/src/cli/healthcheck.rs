//! `signet-agent healthcheck`: healthy when the Workload API answers (even
//! PermissionDenied: this process may have no identity) and the agent's
//! health file next to the socket reports no problem (banned, evicted, agent
//! SVID expired, server clock skew beyond `max_clock_skew`).

use std::time::Duration;

use signet_proto::workload::X509BundlesRequest;

use super::client;
use super::SocketArgs;

const TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(args: SocketArgs) -> anyhow::Result<()> {
    let socket = client::resolve_socket(args.socket_path.as_deref())?;
    let check = async {
        let mut api = client::connect(&socket).await?;
        match api
            .fetch_x509_bundles(client::request(X509BundlesRequest {}))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::PermissionDenied => Ok(()),
            Err(s) => Err(anyhow::anyhow!(
                "agent is unhealthy: {:?}: {}",
                s.code(),
                s.message()
            )),
        }
    };
    match tokio::time::timeout(TIMEOUT, check).await {
        Ok(Ok(())) => {
            let path = crate::health::health_path(&socket);
            match crate::health::read(&path) {
                Ok(Some(report)) => {
                    if let Some(problem) = report.problem() {
                        anyhow::bail!("agent is unhealthy: {problem}");
                    }
                }
                Ok(None) => {}
                Err(e) => anyhow::bail!("agent is unhealthy: cannot read its health file {e}"),
            }
            println!("Agent is healthy.");
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => anyhow::bail!(
            "agent is unhealthy: no answer within {}s",
            TIMEOUT.as_secs()
        ),
    }
}
