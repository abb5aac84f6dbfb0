//! Node API servers for tests: real tonic servers over TLS on loopback, as
//! an HA group shares them (one test CA, every server presenting
//! `spiffe://example.org/signet/server`). Each runs on a runtime of its own
//! so a test can kill one the way `kill -9` does: its listener and every
//! connection close at once. They answer from a script (a Sync snapshot at
//! a revision, attestation with an SVID from the CA, or a refusal), send
//! down the first Sync stream whatever the test feeds it, and report every
//! call on a channel the test reads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rcgen::{Issuer, KeyPair, PublicKeyData};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use signet_core::{Clock, SpiffeId, SystemClock, TrustDomain};
use signet_proto::node::node_server::NodeServer;
use signet_proto::node::{Bundle, SyncResponse};
use tokio::sync::{mpsc, oneshot, watch};

use crate::attest::AgentSvid;
use crate::cache::{SignError, SignRequest, SignResult, SvidSigner};
use crate::node_client::{BundleRx, NodeConnector, ServerAddresses};
use fake_node::FakeNode;

mod fake_node;

/// What a test server was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Attest { join_token: String },
    Sync { since_revision: u64 },
    Mint,
    Renew,
    Sign,
}

/// A call and the server it reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub server: &'static str,
    pub call: Call,
}

/// How a test server answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Script {
    /// The revision of the snapshot Sync sends when asked from 0.
    pub snapshot_revision: u64,
    /// Attestation is refused with this code instead of answered.
    pub refuse_attest: Option<tonic::Code>,
}

/// The trust domain's CA, shared by every server of the group.
pub struct TestPki {
    pub ca: Vec<u8>,
    ca_key: KeyPair,
}

pub fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

impl TestPki {
    pub fn new() -> Arc<Self> {
        let ca_key = KeyPair::generate().unwrap();
        let now = SystemClock.now();
        let ca = signet_core::x509::ca_params(
            &td(),
            now - Duration::from_secs(60),
            now + Duration::from_secs(3600),
        )
        .unwrap()
        .self_signed(&ca_key)
        .unwrap()
        .der()
        .to_vec();
        Arc::new(Self { ca, ca_key })
    }

    /// A leaf for `id` on `public_key`, valid for an hour.
    pub fn sign(&self, id: &SpiffeId, public_key: &impl PublicKeyData) -> Vec<u8> {
        let issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(self.ca.as_slice()), &self.ca_key)
                .unwrap();
        let now = SystemClock.now();
        let params = signet_core::x509::leaf_params(
            id,
            &[],
            now - Duration::from_secs(30),
            now + Duration::from_secs(3600),
        )
        .unwrap();
        signet_core::x509::sign_leaf(&params, public_key, &issuer).unwrap()
    }

    /// The agent's own SVID, its client certificate to the servers.
    pub fn agent_svid(&self, generation: u64) -> AgentSvid {
        let key = KeyPair::generate().unwrap();
        let id = SpiffeId::parse("spiffe://example.org/signet/agent/join_token/t").unwrap();
        let leaf = self.sign(&id, &key);
        let info = signet_core::x509::cert_info(&leaf).unwrap();
        AgentSvid {
            x509: signet_core::X509Svid {
                spiffe_id: id,
                chain: vec![leaf],
                not_after: info.not_after,
                authority_id: "".into(),
                serial_hex: info.serial_hex,
            },
            key: crate::attest::key::AgentKey::Software(zeroize::Zeroizing::new(
                key.serialize_der(),
            )),
            received_at: SystemClock.now(),
            generation,
        }
    }

    pub fn bundle(&self) -> BundleRx {
        watch::channel(Arc::new(vec![self.ca.clone()])).1
    }

    /// The trust domain's bundle as the servers send it.
    pub fn bundle_proto(&self) -> Bundle {
        Bundle {
            trust_domain: "example.org".into(),
            x509_authorities: vec![self.ca.clone()],
            sequence: 1,
            jwt_authorities: vec![],
        }
    }

    fn server_tls(&self) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let leaf = self.sign(&crate::node_client::server_id(&td()).unwrap(), &key);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config =
            rustls::ServerConfig::builder_with_provider(signet_core::crypto::tls_provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![CertificateDer::from(leaf)], key)
                .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }
}

/// One server of the group, on a thread and runtime of its own.
pub struct TestNodeServer {
    pub name: &'static str,
    pub address: String,
    /// Messages for the first Sync stream, after its first.
    pub feed: mpsc::UnboundedSender<SyncResponse>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestNodeServer {
    pub fn start(
        name: &'static str,
        pki: Arc<TestPki>,
        script: Script,
        calls: mpsc::UnboundedSender<Seen>,
    ) -> Self {
        // Bound before the thread starts: connecting works from now on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let tls = tokio_rustls::TlsAcceptor::from(pki.server_tls());
        let (feed, fed) = mpsc::unbounded_channel();
        let node = FakeNode {
            name,
            pki,
            script,
            calls,
            feed: Mutex::new(Some(fed)),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let (accepted, incoming) = mpsc::channel(16);
                tokio::spawn(async move {
                    while let Ok((tcp, _)) = listener.accept().await {
                        let (tls, accepted) = (tls.clone(), accepted.clone());
                        tokio::spawn(async move {
                            if let Ok(stream) = tls.accept(tcp).await {
                                let _ = accepted.send(Ok::<_, std::io::Error>(stream)).await;
                            }
                        });
                    }
                });
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(NodeServer::new(node))
                        .serve_with_incoming(tokio_stream::wrappers::ReceiverStream::new(incoming)),
                );
                let _ = stopped.await;
            });
            // Dropping the runtime drops every task and so closes every
            // socket at once, as the kernel does for a killed process.
            drop(runtime);
        });
        Self {
            name,
            address,
            feed,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Like `kill -9`: returns once the listener and every connection of
    /// this server are closed.
    pub fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for TestNodeServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Several servers sharing one CA, and the calls they saw.
pub struct Group {
    pub pki: Arc<TestPki>,
    pub servers: Vec<TestNodeServer>,
    pub calls: mpsc::UnboundedReceiver<Seen>,
}

impl Group {
    pub fn start(servers: &[(&'static str, Script)]) -> Self {
        let pki = TestPki::new();
        let (tx, calls) = mpsc::unbounded_channel();
        let servers = servers
            .iter()
            .map(|(name, script)| TestNodeServer::start(name, pki.clone(), *script, tx.clone()))
            .collect();
        Self {
            pki,
            servers,
            calls,
        }
    }

    pub fn address(&self, name: &str) -> &str {
        &self.server(name).address
    }

    /// Every server's address, in the order started.
    pub fn addresses(&self) -> ServerAddresses {
        let list: Vec<&str> = self.servers.iter().map(|s| s.address.as_str()).collect();
        ServerAddresses::parse(&list.join(",")).unwrap()
    }

    /// Pushes messages down `name`'s first Sync stream.
    pub fn feed(&self, name: &str) -> mpsc::UnboundedSender<SyncResponse> {
        self.server(name).feed.clone()
    }

    pub fn kill(&mut self, name: &str) {
        self.servers
            .iter_mut()
            .find(|s| s.name == name)
            .unwrap()
            .kill();
    }

    fn server(&self, name: &str) -> &TestNodeServer {
        self.servers.iter().find(|s| s.name == name).unwrap()
    }

    /// A connector to `servers` holding an agent SVID from the group's CA;
    /// the sender renews that SVID.
    pub fn connector(
        &self,
        servers: ServerAddresses,
    ) -> (NodeConnector, watch::Sender<Arc<AgentSvid>>) {
        let (svid_tx, svid_rx) = watch::channel(Arc::new(self.pki.agent_svid(0)));
        let connector = NodeConnector::new(
            servers,
            crate::node_client::server_id(&td()).unwrap(),
            self.pki.bundle(),
            svid_rx,
        );
        (connector, svid_tx)
    }

    /// The next call any server saw (a test fails after 10 s without one).
    pub async fn next_call(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.calls.recv())
            .await
            .expect("a call within 10 s")
            .unwrap()
    }
}

/// An address nothing listens on: connecting is refused at once.
pub fn closed_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Signs workload CSRs with the group's CA, as the servers would: for a
/// cache manager that issues without a `BatchSignX509Svid` round trip.
pub struct PkiSigner(pub Arc<TestPki>);

#[async_trait]
impl SvidSigner for PkiSigner {
    async fn batch_sign(&self, requests: Vec<SignRequest>) -> Result<Vec<SignResult>, SignError> {
        Ok(requests
            .into_iter()
            .map(|r| {
                let csr = signet_core::x509::parse_csr(&r.csr).unwrap();
                SignResult {
                    entry_id: r.entry_id,
                    chain: Ok(vec![self.0.sign(&csr.spiffe_id, &csr.public_key)]),
                    authority_id: crate::cache::authority_id(&self.0.ca),
                }
            })
            .collect())
    }
}
