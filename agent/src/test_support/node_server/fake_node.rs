//! The Node API a test server answers with: attestation and Sync from its
//! script (then whatever the test feeds the first Sync stream), everything
//! else refused or canned, each call reported to the test.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use signet_core::{Clock, SystemClock};
use signet_proto::node::node_server::Node;
use signet_proto::node::{
    attest_params, attest_request, attest_response, AttestRequest, AttestResponse, AttestResult,
    BatchSignX509SvidRequest, BatchSignX509SvidResponse, MintJwtSvidRequest, MintJwtSvidResponse,
    RenewAgentRequest, RenewAgentResponse, SyncRequest, SyncResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{td, Call, Script, Seen, TestPki};

type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub(super) struct FakeNode {
    pub name: &'static str,
    pub pki: Arc<TestPki>,
    pub script: Script,
    pub calls: mpsc::UnboundedSender<Seen>,
    /// What the test pushes down the first Sync stream after its first
    /// message; later streams get nothing more.
    pub feed: Mutex<Option<mpsc::UnboundedReceiver<SyncResponse>>>,
}

impl FakeNode {
    fn saw(&self, call: Call) {
        let _ = self.calls.send(Seen {
            server: self.name,
            call,
        });
    }
}

#[tonic::async_trait]
impl Node for FakeNode {
    type AttestStream = Answers<AttestResponse>;
    type SyncStream = Answers<SyncResponse>;

    async fn attest(
        &self,
        request: Request<Streaming<AttestRequest>>,
    ) -> Result<Response<Self::AttestStream>, Status> {
        let first = request.into_inner().message().await?;
        let Some(AttestRequest {
            step: Some(attest_request::Step::Params(params)),
        }) = first
        else {
            return Err(Status::invalid_argument("no params"));
        };
        let join_token = match params.method {
            Some(attest_params::Method::JoinToken(t)) => t,
            _ => String::new(),
        };
        self.saw(Call::Attest {
            join_token: join_token.clone(),
        });
        if let Some(code) = self.script.refuse_attest {
            return Err(Status::new(code, "join token already used"));
        }
        let csr = signet_core::x509::parse_csr(&params.csr).unwrap();
        let id = td()
            .id(&format!("/signet/agent/join_token/{join_token}"))
            .unwrap();
        let result = AttestResult {
            spiffe_id: id.to_string(),
            svid_chain: vec![self.pki.sign(&id, &csr.public_key)],
            bundle: Some(self.pki.bundle_proto()),
            authority_id: String::new(),
        };
        let answer = AttestResponse {
            step: Some(attest_response::Step::Result(result)),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(answer)]))))
    }

    async fn renew_agent(
        &self,
        _request: Request<RenewAgentRequest>,
    ) -> Result<Response<RenewAgentResponse>, Status> {
        self.saw(Call::Renew);
        Err(Status::unimplemented("not in this test"))
    }

    /// A snapshot when asked from 0, else a delta at the revision asked
    /// from; then the stream stays open, as a server's does.
    async fn sync(
        &self,
        request: Request<SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let since_revision = request.into_inner().since_revision;
        self.saw(Call::Sync { since_revision });
        let first = if since_revision == 0 {
            SyncResponse {
                revision: self.script.snapshot_revision,
                snapshot: true,
                bundle: Some(self.pki.bundle_proto()),
                ..Default::default()
            }
        } else {
            SyncResponse {
                revision: since_revision,
                ..Default::default()
            }
        };
        let fed: Answers<SyncResponse> = match self.feed.lock().unwrap().take() {
            Some(feed) => Box::pin(UnboundedReceiverStream::new(feed).map(Ok)),
            None => Box::pin(futures::stream::empty()),
        };
        let answers = futures::stream::iter([Ok(first)])
            .chain(fed)
            .chain(futures::stream::pending());
        Ok(Response::new(Box::pin(answers)))
    }

    async fn batch_sign_x509_svid(
        &self,
        _request: Request<BatchSignX509SvidRequest>,
    ) -> Result<Response<BatchSignX509SvidResponse>, Status> {
        self.saw(Call::Sign);
        Err(Status::unimplemented("not in this test"))
    }

    async fn mint_jwt_svid(
        &self,
        _request: Request<MintJwtSvidRequest>,
    ) -> Result<Response<MintJwtSvidResponse>, Status> {
        self.saw(Call::Mint);
        let now = signet_core::clock::unix_seconds(SystemClock.now());
        Ok(Response::new(MintJwtSvidResponse {
            token: format!("token-from-{}", self.name),
            issued_at: now,
            expires_at: now + 300,
        }))
    }

    async fn report_audit_checkpoint(
        &self,
        _request: Request<signet_proto::node::AuditCheckpoint>,
    ) -> Result<Response<signet_proto::node::AuditCheckpointAck>, Status> {
        Ok(Response::new(signet_proto::node::AuditCheckpointAck {}))
    }

    async fn new_downstream_x509ca(
        &self,
        _request: Request<signet_proto::node::NewDownstreamX509caRequest>,
    ) -> Result<Response<signet_proto::node::NewDownstreamX509caResponse>, Status> {
        // Agents never call it: a downstream server does.
        Err(Status::unimplemented("not a downstream test"))
    }
}
