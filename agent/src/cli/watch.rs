//! `signet-agent api watch`: prints every update of the FetchX509SVID
//! stream, one line per SVID, until killed or the stream ends.

use std::time::Duration;

use signet_core::x509::cert_info;
use signet_proto::workload::X509svidRequest;

use super::client::{self, format_time};
use super::fetch::{split_der, status_error};
use super::SocketArgs;

pub async fn run(args: SocketArgs) -> anyhow::Result<()> {
    let socket = client::resolve_socket(args.socket_path.as_deref())?;
    let mut api = client::connect(&socket).await?;
    let mut stream = api
        .fetch_x509svid(client::request(X509svidRequest {}))
        .await
        .map_err(status_error)?
        .into_inner();
    let mut update = 0u64;
    while let Some(response) = stream.message().await.map_err(status_error)? {
        update += 1;
        println!("Update #{update}: {} svid", response.svids.len());
        for svid in &response.svids {
            let not_after = split_der(&svid.x509_svid)
                .ok()
                .and_then(|c| c.first().and_then(|l| cert_info(l).ok()))
                .map(|i| i.not_after);
            match not_after {
                Some(t) => println!(
                    "SPIFFE ID: {}\tValid Until: {} ({})",
                    svid.spiffe_id,
                    format_time(t),
                    signet_core::clock::unix_seconds(t)
                ),
                None => println!("SPIFFE ID: {}\tValid Until: unknown", svid.spiffe_id),
            }
        }
    }
    // Give stdout a chance to flush before exiting on a server-side close.
    tokio::time::sleep(Duration::from_millis(10)).await;
    anyhow::bail!("the Workload API closed the stream")
}
