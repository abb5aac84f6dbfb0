//! `signet-agent healthcheck`: healthy when the Workload API answers, even
//! if it answers PermissionDenied (this process has no identity).

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
