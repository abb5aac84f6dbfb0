//! The system under test: a real server and agent started in this process
//! through their `app` modules, on a temp dir, a free port and private Unix
//! sockets, plus the raw clients the figures drive them with.
//!
//! In-process keeps the raw baselines honest (same runtime, same allocator,
//! same cores) and needs no built binaries; only the memory figures run the
//! agent or server binary as a child, since RSS must be that process's alone.

use signet_core::Clock;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use anyhow::Context;
use signet_agent::attest::AgentSvid;
use signet_agent::node_client::{self, ServerTrust};
use signet_core::{SpiffeId, SystemClock, TrustDomain};
use signet_proto::admin::admin_client::AdminClient;
use signet_proto::admin::{
    BatchCreateEntryRequest, CreateJoinTokenRequest, DeleteEntryRequest, Entry,
};
use signet_proto::node::node_client::NodeClient;
use signet_proto::node::{attest_params, attest_request, attest_response};
use signet_proto::node::{AttestParams, AttestRequest};
use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use signet_proto::workload::X509svidRequest;
use signet_runtime::ratelimit::Rate;
use signet_server::api::entry_create::MAX_BATCH;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub type Admin = AdminClient<Channel>;
pub type Workload = SpiffeWorkloadApiClient<Channel>;

pub struct Server {
    pub running: signet_server::app::RunningServer,
    pub admin: Admin,
    pub td: TrustDomain,
}

pub async fn start_server(dir: &Path) -> anyhow::Result<Server> {
    start_server_on(dir, None).await
}

/// A server on `datastore` (a `postgres://` URL several servers share), or
/// on SQLite in `dir`.
pub async fn start_server_on(dir: &Path, datastore: Option<&str>) -> anyhow::Result<Server> {
    start_server_configured(dir, |config| {
        if let Some(url) = datastore {
            config.datastore = Some(url.parse()?);
        }
        Ok(())
    })
    .await
}

/// A server in this process on `dir`, its defaults changed by `configure`.
pub async fn start_server_configured(
    dir: &Path,
    configure: impl FnOnce(&mut signet_server::RuntimeConfig) -> anyhow::Result<()>,
) -> anyhow::Result<Server> {
    let mut config = signet_server::RuntimeConfig::defaults()?;
    config.data_dir = dir.join("server");
    config.admin_socket = dir.join("admin.sock");
    config.bind = "127.0.0.1:0".parse()?;
    // The figures measure capacity: one host plays a fleet, so the limits
    // per address and per agent would measure themselves. The detectors
    // are armed from the first sighting, to show they stay quiet.
    config.rate_limits = signet_server::config::RateLimits {
        attestation: Rate::OFF,
        x509_signing: Rate::OFF,
        jwt_minting: Rate::OFF,
    };
    config.anomaly.learning_period = Duration::ZERO;
    configure(&mut config)?;
    let td = config.trust_domain.clone();
    let running = signet_server::app::start(config, Arc::new(SystemClock)).await?;
    let admin = signet_server::cli::client::connect(&running.admin_socket).await?;
    Ok(Server { running, admin, td })
}

impl Server {
    pub fn node_addr(&self) -> String {
        self.running.node_addr.to_string()
    }

    /// A fresh join token and the agent ID it attests as.
    pub async fn join_token(&self) -> anyhow::Result<(String, SpiffeId)> {
        join_token(&self.admin, &self.td).await
    }

    pub fn node_api(&self) -> NodeApi {
        NodeApi {
            admin: self.admin.clone(),
            td: self.td.clone(),
            addr: self.node_addr(),
        }
    }

    pub async fn create_entry(
        &self,
        spiffe_id: &str,
        parent: &SpiffeId,
        selector: &str,
    ) -> anyhow::Result<String> {
        let entry = Entry {
            spiffe_id: spiffe_id.to_string(),
            parent_id: parent.to_string(),
            selectors: vec![selector.to_string()],
            ..Default::default()
        };
        Ok(self
            .admin
            .clone()
            .create_entry(entry)
            .await?
            .into_inner()
            .id)
    }

    pub async fn delete_entry(&self, id: &str) -> anyhow::Result<()> {
        self.admin
            .clone()
            .delete_entry(DeleteEntryRequest { id: id.to_string() })
            .await?;
        Ok(())
    }

    pub fn id(&self, path: &str) -> anyhow::Result<String> {
        Ok(self.td.id(path)?.to_string())
    }
}

/// A fresh join token from `admin` and the agent ID it attests as.
pub async fn join_token(admin: &Admin, td: &TrustDomain) -> anyhow::Result<(String, SpiffeId)> {
    let token = admin
        .clone()
        .create_join_token(CreateJoinTokenRequest { ttl: 0 })
        .await?
        .into_inner()
        .token;
    let id = td.id(&format!("/signet/agent/join_token/{token}"))?;
    Ok((token, id))
}

/// Creates `entries` with BatchCreateEntry, as many per call as the server
/// takes; fails on the first refused entry. Returns the ids, in order.
pub async fn create_entries(admin: &Admin, entries: Vec<Entry>) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(entries.len());
    let mut admin = admin.clone();
    let mut rest = entries.into_iter().peekable();
    while rest.peek().is_some() {
        let chunk: Vec<Entry> = rest.by_ref().take(MAX_BATCH).collect();
        let results = admin
            .batch_create_entry(BatchCreateEntryRequest { entries: chunk })
            .await?
            .into_inner()
            .results;
        for r in results {
            match r.entry {
                Some(e) if r.error_code == 0 => ids.push(e.id),
                _ => anyhow::bail!("entry refused: {}", r.error_message),
            }
        }
    }
    Ok(ids)
}

/// The selector every workload of this process matches.
pub fn my_uid_selector() -> anyhow::Result<String> {
    let uid = std::fs::metadata("/proc/self")
        .context("reading /proc/self")?
        .uid();
    Ok(format!("unix:uid:{uid}"))
}

pub struct Agent {
    pub socket: PathBuf,
    pub id: SpiffeId,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Starts an agent in this process, attested with a fresh join token.
pub async fn start_agent(server: &Server, dir: &Path) -> anyhow::Result<Agent> {
    start_agent_at(server, &server.node_addr(), dir).await
}

/// An agent with a join token of `server`, knowing the servers `addresses`
/// (`A,B`: an HA group, the first tried first).
pub async fn start_agent_at(server: &Server, addresses: &str, dir: &Path) -> anyhow::Result<Agent> {
    let (token, id) = server.join_token().await?;
    start_agent_with_token(token, id, addresses, &server.td, dir).await
}

/// An agent in this process attesting with `token` (as `id`) to the
/// servers `addresses`.
pub async fn start_agent_with_token(
    token: String,
    id: SpiffeId,
    addresses: &str,
    td: &TrustDomain,
    dir: &Path,
) -> anyhow::Result<Agent> {
    let socket = dir.join("agent.sock");
    let args = signet_agent::config::RunArgs {
        data_dir: Some(dir.join("agent")),
        server_address: Some(addresses.to_owned()),
        trust_domain: Some(td.to_string()),
        socket_path: Some(socket.clone()),
        join_token: Some(token),
        insecure_bootstrap: true,
        ..Default::default()
    };
    let mut config =
        signet_agent::RuntimeConfig::merge(signet_agent::FileConfig::default(), &args)?;
    // The figures measure what the agent can serve one uid, not its limit.
    config.workload_api.rate_limit = signet_runtime::ratelimit::Rate::OFF;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(signet_agent::app::run(config, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    Ok(Agent {
        socket,
        id,
        stop,
        task,
    })
}

impl Agent {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// A Workload API client on a fresh connection to `socket`.
pub async fn workload_client(socket: &Path) -> anyhow::Result<Workload> {
    Ok(SpiffeWorkloadApiClient::new(unix_channel(socket).await?))
}

pub async fn unix_channel(socket: &Path) -> anyhow::Result<Channel> {
    Ok(signet_proto::uds::channel(socket).await?)
}

/// `msg` with the Workload API security header.
pub fn with_header<T>(msg: T) -> tonic::Request<T> {
    signet_proto::uds::workload_request(msg)
}

/// Waits until a workload of this process receives an SVID for `spiffe_id`.
pub async fn wait_for_svid(socket: &Path, spiffe_id: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(mut client) = workload_client(socket).await {
            if let Ok(stream) = client.fetch_x509svid(with_header(X509svidRequest {})).await {
                let mut stream = stream.into_inner();
                if let Ok(Ok(Some(msg))) =
                    tokio::time::timeout(Duration::from_secs(2), stream.message()).await
                {
                    if msg.svids.iter().any(|s| s.spiffe_id == spiffe_id) {
                        return Ok(());
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("no SVID for {spiffe_id} within {within:?}")
}

/// A simulated agent: attested with a join token over the Node API, then an
/// mTLS Node API client presenting the SVID it got.
pub struct NodeAgent {
    pub id: SpiffeId,
    pub client: NodeClient<Channel>,
}

/// What a simulated agent needs of a server: the Admin API for its join
/// token and the Node API's address.
#[derive(Clone)]
pub struct NodeApi {
    pub admin: Admin,
    pub td: TrustDomain,
    pub addr: String,
}

pub async fn attest_node_agent(server: &Server) -> anyhow::Result<NodeAgent> {
    attest_node_agent_at(&server.node_api()).await
}

pub async fn attest_node_agent_at(server: &NodeApi) -> anyhow::Result<NodeAgent> {
    let (token, id) = join_token(&server.admin, &server.td).await?;
    let server_id = node_client::server_id(&server.td)?;
    let tls =
        node_client::tls::client_config(ServerTrust::InsecureBootstrap, server_id.clone(), None)?;
    let mut client = node_client::connect(&server.addr, tls).await?;
    let key = rcgen::KeyPair::generate()?;
    let csr = signet_core::x509::build_csr(&key, &id)?;
    let request = AttestRequest {
        step: Some(attest_request::Step::Params(AttestParams {
            method: Some(attest_params::Method::JoinToken(token)),
            csr,
        })),
    };
    let mut responses = client
        .attest(tokio_stream::iter(vec![request]))
        .await?
        .into_inner();
    let result = match responses.message().await?.and_then(|r| r.step) {
        Some(attest_response::Step::Result(r)) => r,
        _ => anyhow::bail!("attestation gave no result"),
    };
    let now = SystemClock.now();
    let svid = AgentSvid {
        x509: signet_core::X509Svid {
            spiffe_id: id.clone(),
            chain: result.svid_chain,
            not_after: now,
            serial_hex: String::new(),
            authority_id: result.authority_id.into(),
        },
        key: signet_agent::attest::key::AgentKey::Software(zeroize::Zeroizing::new(
            key.serialize_der(),
        )),
        received_at: now,
        generation: 0,
    };
    let tls =
        node_client::tls::client_config(ServerTrust::InsecureBootstrap, server_id, Some(&svid))?;
    let client = node_client::connect(&server.addr, tls).await?;
    Ok(NodeAgent { id, client })
}
