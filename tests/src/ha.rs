//! An HA group: several real `signet-server`s on one fresh PostgreSQL
//! database, and agents that know all of their addresses.

use crate::agent::{AgentOptions, TestAgent};
use crate::server::TestServer;

pub struct HaGroup {
    /// The shared database (on the run's cluster, or the one given).
    pub url: String,
    pub servers: Vec<TestServer>,
}

impl HaGroup {
    /// `n` servers on a fresh database of the run's cluster.
    pub async fn start(n: usize, extra: &[&str]) -> HaGroup {
        let url = tokio::task::spawn_blocking(crate::postgres::fresh_database)
            .await
            .expect("a fresh database");
        Self::start_on(url, n, extra).await
    }

    /// `n` servers on the database `url`, started one after another (each
    /// sees the others' authorities at once).
    pub async fn start_on(url: String, n: usize, extra: &[&str]) -> HaGroup {
        let mut servers = Vec::with_capacity(n);
        for _ in 0..n {
            servers.push(TestServer::start_on(&url, extra).await);
        }
        HaGroup { url, servers }
    }

    /// `A,B,...`: every server's Node API address, `first` first.
    pub fn addresses_from(&self, first: usize) -> String {
        let n = self.servers.len();
        (0..n)
            .map(|i| self.servers[(first + i) % n].addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// An agent attested with a token of server `first`, knowing every
    /// server's address (its own server first).
    pub async fn agent(&self, first: usize) -> TestAgent {
        self.agent_with(first, &self.addresses_from(first)).await
    }

    /// An agent attested through server `first` with `--server-address addresses`.
    pub async fn agent_with(&self, first: usize, addresses: &str) -> TestAgent {
        let server = &self.servers[first];
        let token = server.join_token();
        let mut agent = TestAgent::spawn_opts(
            server,
            Some(&token),
            AgentOptions {
                server_address: Some(addresses.to_owned()),
                ..AgentOptions::default()
            },
        );
        agent.wait_healthy().await;
        agent
    }

    /// Each server's id, from `server list` on the first one, in server order.
    pub fn server_ids(&self) -> Vec<String> {
        let listed: serde_json::Value =
            serde_json::from_str(&self.servers[0].cli_ok(&["server", "list", "--output", "json"]))
                .expect("server list JSON");
        let all = listed["servers"].as_array().cloned().unwrap_or_default();
        self.servers
            .iter()
            .map(|s| {
                all.iter()
                    .find(|v| v["address"] == s.addr.as_str())
                    .and_then(|v| v["id"].as_str())
                    .expect("every server is listed with its address")
                    .to_owned()
            })
            .collect()
    }
}
