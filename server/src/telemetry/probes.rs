//! What the server's `/ready` and `/metrics` answer. Ready: the datastore
//! answers and the CA can sign (an active, unexpired X.509 authority).

use signet_runtime::probes::Probes;

use crate::api::ServerState;

/// The server's answers on the probes endpoint.
pub struct ServerProbes {
    pub state: ServerState,
}

impl Probes for ServerProbes {
    async fn ready(&self) -> Result<(), String> {
        if let Err(e) = self.state.ds.ping().await {
            return Err(format!("datastore: {e}"));
        }
        if self.state.ca.now() >= self.state.ca.not_after() {
            return Err("CA: no active X.509 authority can sign (expired)".into());
        }
        Ok(())
    }

    fn metrics(&self) -> String {
        self.state.metrics.encode()
    }
}
