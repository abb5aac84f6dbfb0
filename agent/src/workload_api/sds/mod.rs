//! Envoy SDS v3 (`envoy.service.secret.v3.SecretDiscoveryService`) on the
//! Workload API socket, as SPIRE serves it: Envoy is attested by its peer
//! credentials like any workload (no security header: Envoy sends none)
//! and gets its identities as `tls_certificate` secrets and the bundles it
//! trusts as `validation_context` secrets (see `resources`).
//! `StreamSecrets` follows xDS state-of-the-world (see `stream`);
//! `FetchSecrets` answers once; `DeltaSecrets` is not implemented, as in
//! SPIRE.

mod resources;
mod stream;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SecretDiscoveryService;
pub use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SecretDiscoveryServiceServer;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{x509, ResponseStream, WorkloadApi};
pub use resources::{secret_type_url, SPIFFE_VALIDATOR};
use resources::{Ask, SdsState};

/// The calls the audit log names.
const FETCH_SECRETS: &str = "sds_fetch_secrets";
const STREAM_SECRETS: &str = "sds_stream_secrets";

/// The SDS service: the Workload API's admission, cache and audit log.
#[derive(Clone)]
pub struct Sds {
    api: WorkloadApi,
}

impl Sds {
    pub fn new(api: WorkloadApi) -> Self {
        Self { api }
    }
}

/// A request for another resource type is a client mistake worth naming.
fn check_type_url(type_url: &str) -> Result<(), Status> {
    if type_url.is_empty() || type_url == secret_type_url() {
        return Ok(());
    }
    Err(Status::invalid_argument(format!(
        "type_url {type_url:?}: this service serves only {}",
        secret_type_url()
    )))
}

#[tonic::async_trait]
impl SecretDiscoveryService for Sds {
    type DeltaSecretsStream = ResponseStream<DeltaDiscoveryResponse>;
    type StreamSecretsStream = ResponseStream<DiscoveryResponse>;

    async fn delta_secrets(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        Err(Status::unimplemented(
            "DeltaSecrets is not implemented: use StreamSecrets (state of the world)",
        ))
    }

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let admitted = self.api.admit(STREAM_SECRETS, &request).await?;
        let (tx, rx) = mpsc::channel(4);
        let caller = stream::Caller {
            api: self.api.clone(),
            selectors: admitted.selectors,
            peer: admitted.peer,
        };
        self.api
            .spawn_stream(tx.clone(), stream::run(caller, request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let admitted = self.api.admit(FETCH_SECRETS, &request).await?;
        let req = request.into_inner();
        let refuse = |status: Status| {
            self.api.record(
                FETCH_SECRETS,
                Some(&admitted.peer),
                &admitted.selectors,
                vec![],
                Some(&status),
            );
            status
        };
        check_type_url(&req.type_url).map_err(refuse)?;
        let ask = Ask {
            names: &req.resource_names,
            spiffe_validator: resources::supports_spiffe_validator(req.node.as_ref()),
            settings: &self.api.sds,
        };
        let mut cache = self.api.cache.clone();
        let grace = tokio::time::Instant::now() + x509::ISSUE_GRACE;
        // A caller whose SVIDs are being issued waits for them, as
        // FetchX509SVID's stream does.
        let (secrets, served) = loop {
            let snapshot = cache.borrow_and_update().clone();
            match resources::state(&snapshot, &admitted.selectors, self.api.clock.now(), &ask)
                .map_err(refuse)?
            {
                SdsState::Ready { secrets, served } => break (secrets, served),
                SdsState::NoIdentity => return Err(refuse(x509::no_identity())),
                SdsState::Pending => {}
            }
            if !matches!(
                tokio::time::timeout_at(grace, cache.changed()).await,
                Ok(Ok(()))
            ) {
                return Err(refuse(x509::no_identity()));
            }
        };
        self.api.record(
            FETCH_SECRETS,
            Some(&admitted.peer),
            &admitted.selectors,
            served,
            None,
        );
        Ok(Response::new(DiscoveryResponse {
            version_info: String::new(),
            resources: resources::encode(&secrets),
            type_url: secret_type_url(),
            ..DiscoveryResponse::default()
        }))
    }
}
