//! Signet as the other side sees it: `signet-server` and `signet-agent` as
//! child processes (as SPIRE's run), on SQLite and loopback, defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use signet_core::{SpiffeId, TrustDomain};
use signet_proto::admin::Entry;
use tokio::time::Instant;

use super::system::{
    until_all_hold, ColdStart, HoldsSvids, System, COLD_START_PATIENCE, UNSERVED_SELECTOR,
};
use crate::child::rss;
use crate::child_agent::ChildAgent;
use crate::child_server::ChildServer;
use crate::env::{create_entries, join_token, wait_for_svid, Admin};

pub struct Signet {
    server: ChildServer,
    agent: ChildAgent,
    agent_id: SpiffeId,
    workload_id: String,
    selector: String,
}

impl Signet {
    /// A server and an agent on `dir`, and an entry for this process's
    /// workloads (`selector`), served before this returns.
    pub async fn start(dir: &Path, selector: &str) -> anyhow::Result<Self> {
        let server = ChildServer::start(&dir.join("server"), None).await?;
        let (token, agent_id) = join_token(&server.api.admin, &server.api.td).await?;
        let agent = ChildAgent::spawn(
            &dir.join("agent"),
            &server.api.addr,
            &server.api.td.to_string(),
            &token,
        )?;
        let workload_id = server.api.td.id("/bench/workload")?.to_string();
        let signet = Self {
            server,
            agent,
            agent_id,
            workload_id,
            selector: selector.to_owned(),
        };
        signet.create_entry(&signet.workload_id).await?;
        wait_for_svid(
            &signet.agent.socket,
            &signet.workload_id,
            Duration::from_secs(60),
        )
        .await?;
        Ok(signet)
    }

    fn admin(&self) -> Admin {
        self.server.api.admin.clone()
    }

    fn td(&self) -> &TrustDomain {
        &self.server.api.td
    }
}

impl System for Signet {
    fn name(&self) -> &'static str {
        "signet"
    }

    fn socket(&self) -> &Path {
        &self.agent.socket
    }

    fn workload_id(&self) -> &str {
        &self.workload_id
    }

    fn spiffe_id(&self, path: &str) -> String {
        format!("spiffe://{}{path}", self.td())
    }

    async fn create_entry(&self, spiffe_id: &str) -> anyhow::Result<String> {
        let entry = Entry {
            spiffe_id: spiffe_id.to_owned(),
            parent_id: self.agent_id.to_string(),
            selectors: vec![self.selector.clone()],
            ..Default::default()
        };
        Ok(self.admin().create_entry(entry).await?.into_inner().id)
    }

    async fn delete_entry(&self, id: &str) -> anyhow::Result<()> {
        self.admin()
            .delete_entry(signet_proto::admin::DeleteEntryRequest { id: id.to_owned() })
            .await?;
        Ok(())
    }

    async fn cold_start(
        &self,
        dir: &Path,
        agents: usize,
        per_agent: usize,
    ) -> anyhow::Result<ColdStart> {
        let mut tokens = Vec::with_capacity(agents);
        for a in 0..agents {
            let (token, agent_id) = join_token(&self.server.api.admin, self.td()).await?;
            let entries = (0..per_agent)
                .map(|i| {
                    Ok(Entry {
                        spiffe_id: self.td().id(&format!("/cold/{a}/{i}"))?.to_string(),
                        parent_id: agent_id.to_string(),
                        selectors: vec![format!("{}:{}", UNSERVED_SELECTOR.0, UNSERVED_SELECTOR.1)],
                        ..Default::default()
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            create_entries(&self.server.api.admin, entries).await?;
            tokens.push(token);
        }
        let started = Instant::now();
        let mut children = Vec::with_capacity(agents);
        for (a, token) in tokens.iter().enumerate() {
            let agent_dir: PathBuf = dir.join(format!("agent{a}"));
            children.push(ChildAgent::spawn(
                &agent_dir,
                &self.server.api.addr,
                &self.td().to_string(),
                token,
            )?);
        }
        if let Err(short) = until_all_hold(&children, per_agent, started).await {
            anyhow::bail!(
                "{} of {agents} agents did not hold {per_agent} SVIDs within {COLD_START_PATIENCE:?}",
                short.len()
            );
        }
        let took = started.elapsed();
        // Let the post-sync work (persisting the cache) settle first.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_mb = children
            .iter()
            .map(|c| Ok(rss(c.pid()?)?.now_mb))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for mut c in children {
            let _ = c.child.kill().await;
        }
        Ok(ColdStart { took, rss_mb })
    }
}

impl HoldsSvids for ChildAgent {
    async fn svids_held(&self) -> anyhow::Result<f64> {
        ChildAgent::svids_held(self).await
    }
}
