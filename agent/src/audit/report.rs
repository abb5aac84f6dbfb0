//! Reports the log's head to the server every `[audit] checkpoint_interval`
//! (when it moved), which records it in its own chain.

use std::sync::Arc;
use std::time::Duration;

use signet_core::audit_chain::to_hex;
use signet_proto::node::AuditCheckpoint;

use super::{AuditLog, Head};
use crate::node_client::NodeConnector;

pub async fn run(
    log: AuditLog,
    connector: Arc<NodeConnector>,
    every: Duration,
    clock: Arc<dyn signet_core::Clock>,
) {
    let mut reported: Option<Head> = None;
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let head = log.head();
        if head.seq == 0 || reported == Some(head) {
            continue;
        }
        let request = AuditCheckpoint {
            seq: head.seq,
            hash: to_hex(&head.hash),
            time_ms: clock
                .now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        };
        let sent = connector
            .call(|mut client| {
                let request = request.clone();
                async move { client.report_audit_checkpoint(request).await }
            })
            .await;
        match sent {
            Ok(_) => reported = Some(head),
            Err(e) => {
                tracing::warn!(error = %e, seq = head.seq, "workload audit checkpoint not reported; retrying")
            }
        }
    }
}
