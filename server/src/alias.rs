//! Node aliases: an entry with `node = true` whose SPIFFE ID names every agent
//! whose node selectors include all of the alias's selectors. Workload
//! entries whose parent is an alias ID are authorized for every member.
//! Aliases have no parent of their own; they are stored with the server's ID
//! (`spiffe://<td>/signet/server`) as parent, a marker no agent can hold.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;

use signet_core::{Selector, SpiffeId, SpiffeIdError, TrustDomain};

use crate::api::tls::SERVER_ID_PATH;
use crate::datastore::{AgentRecord, DataStore, EntryFilter, EntryRecord, Result};

/// The parent every node-alias entry is stored with.
pub fn alias_parent(td: &TrustDomain) -> std::result::Result<SpiffeId, SpiffeIdError> {
    td.id(SERVER_ID_PATH)
}

/// The alias IDs `selectors` (an agent's node selectors) are a member of.
pub fn memberships(aliases: &[EntryRecord], selectors: &[Selector]) -> BTreeSet<SpiffeId> {
    let have: HashSet<Selector> = selectors.iter().cloned().collect();
    aliases
        .iter()
        .filter(|a| a.node && a.entry.matches(&have))
        .map(|a| a.entry.spiffe_id.clone())
        .collect()
}

/// Every node alias stored now.
pub async fn all(ds: &dyn DataStore) -> Result<Vec<EntryRecord>> {
    ds.list_entries(&EntryFilter {
        node: Some(true),
        ..EntryFilter::default()
    })
    .await
}

/// The aliases `agent` belongs to now.
pub async fn aliases_of(ds: &dyn DataStore, agent: &AgentRecord) -> Result<BTreeSet<SpiffeId>> {
    if agent.selectors.is_empty() {
        return Ok(BTreeSet::new());
    }
    Ok(memberships(&all(ds).await?, &agent.selectors))
}

/// Whether a workload entry with `entry` as record may be served to `agent`:
/// its parent is the agent itself or an alias the agent belongs to.
pub async fn authorizes(
    ds: &dyn DataStore,
    agent: &AgentRecord,
    entry: &EntryRecord,
) -> Result<bool> {
    let mut members = Members::new(agent);
    members.authorizes(ds, entry).await
}

/// An agent's alias memberships, read from the datastore at most once however
/// many entries are checked (a signing batch checks hundreds).
pub struct Members<'a> {
    agent: &'a AgentRecord,
    aliases: Option<BTreeSet<SpiffeId>>,
}

impl<'a> Members<'a> {
    pub fn new(agent: &'a AgentRecord) -> Self {
        Self {
            agent,
            aliases: None,
        }
    }

    /// Whether `entry` may be served to the agent: see [`authorizes`]. An
    /// entry stored with a reserved (`/signet`) ID, from before such IDs
    /// were refused, is served to no one.
    pub async fn authorizes(&mut self, ds: &dyn DataStore, entry: &EntryRecord) -> Result<bool> {
        if entry.node || entry.entry.spiffe_id.is_reserved() {
            return Ok(false);
        }
        if entry.entry.parent_id == self.agent.spiffe_id {
            return Ok(true);
        }
        let aliases = match &mut self.aliases {
            Some(a) => a,
            empty => empty.insert(aliases_of(ds, self.agent).await?),
        };
        Ok(aliases.contains(&entry.entry.parent_id))
    }
}

/// The workload entries for `agent_id` and the aliases in `members`, in
/// parts of at most `part` entries, each sent as soon as it is read so the
/// agent can start on the first while the rest are read. A task of its own
/// reads them all at the datastore's pace into an unbounded channel: a slow
/// agent never holds a datastore connection, and the memory is what reading
/// them all at once would take. An error ends the parts.
pub fn entries_for(
    ds: Arc<dyn DataStore>,
    agent_id: SpiffeId,
    members: BTreeSet<SpiffeId>,
    part: usize,
) -> mpsc::UnboundedReceiver<Result<Vec<EntryRecord>>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let part = part.max(1);
        let mut seen = HashSet::new();
        let mut current = Vec::with_capacity(part);
        for parent in std::iter::once(&agent_id).chain(&members) {
            let mut rows = ds.entries_by_parent_streamed(parent);
            while let Some(row) = rows.next().await {
                let entry = match row {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                // An entry under two of the parents is sent once; one with
                // a reserved ID never.
                if entry.node
                    || entry.entry.spiffe_id.is_reserved()
                    || !seen.insert(entry.entry.id.clone())
                {
                    continue;
                }
                current.push(entry);
                if current.len() == part {
                    let full = std::mem::replace(&mut current, Vec::with_capacity(part));
                    if tx.send(Ok(full)).is_err() {
                        return;
                    }
                    // Buffered rows are always ready, so without a yield
                    // this task would run to the end of the read while the
                    // sender it woke waits behind it on this worker.
                    tokio::task::yield_now().await;
                }
            }
        }
        if !current.is_empty() {
            let _ = tx.send(Ok(current));
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use signet_core::RegistrationEntry;

    fn alias(id: &str, selectors: &[&str]) -> EntryRecord {
        EntryRecord {
            entry: RegistrationEntry {
                id: id.into(),
                spiffe_id: SpiffeId::parse(&format!("spiffe://example.org/{id}")).unwrap(),
                parent_id: SpiffeId::parse("spiffe://example.org/signet/server").unwrap(),
                selectors: selectors
                    .iter()
                    .map(|s| Selector::parse(s).unwrap())
                    .collect(),
                x509_svid_ttl: None,
                jwt_svid_ttl: None,
                dns_names: vec![],
                hint: String::new(),
                admin: false,
                downstream: false,
                revision: 1,
                federates_with: vec![],
            },
            created_at: 0,
            node: true,
        }
    }

    #[test]
    fn an_agent_belongs_to_every_alias_whose_selectors_it_all_has() {
        let aliases = [
            alias("edge", &["x509pop:subject:cn:edge-1"]),
            alias("fleet", &["x509pop:ca:fingerprint:ab"]),
            alias(
                "both",
                &["x509pop:ca:fingerprint:ab", "x509pop:san:dns:other"],
            ),
        ];
        let agent: Vec<Selector> = ["x509pop:subject:cn:edge-1", "x509pop:ca:fingerprint:ab"]
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect();
        let m = memberships(&aliases, &agent);
        let names: Vec<String> = m.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            names,
            ["spiffe://example.org/edge", "spiffe://example.org/fleet"]
        );
        assert!(memberships(&aliases, &[]).is_empty());
    }
}
