//! `signet-server entry create | show | delete | count` (`create --data`
//! is in `entry_batch`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use signet_proto::admin::{
    CountEntriesRequest, DeleteEntryRequest, Entry, ListEntriesRequest, UpdateEntryRequest,
};

use super::client::{connect, status_error};
use super::{
    duration_arg, print_json, print_list, rfc3339, ttl_secs, AdminArgs, Output, OutputArgs,
};

#[derive(Debug, Subcommand)]
pub enum EntryCommand {
    /// Registers a workload identity; prints the new entry's id. With
    /// --data, registers every entry of a JSON file, one id (or error) line each.
    Create(CreateArgs),
    /// Lists entries, optionally filtered.
    Show(ShowArgs),
    /// Deletes an entry by id.
    Delete(DeleteArgs),
    /// Changes the trust domains an entry federates with (exactly those
    /// given; none clears them).
    Update(UpdateArgs),
    /// Prints the number of entries.
    Count(CountArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Many entries from a JSON file (`-`: stdin):
    /// {"entries": [{"spiffe_id", "parent_id", "selectors": [...], "x509_svid_ttl": "1h",
    /// "jwt_svid_ttl", "dns_names": [...], "hint", "admin", "downstream", "node"}]}.
    /// Exits 1 if any entry failed.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = [
            "spiffe_id", "parent_id", "node", "selectors", "x509_svid_ttl", "jwt_svid_ttl",
            "dns_names", "hint", "admin_entry", "downstream", "federates_with",
        ]
    )]
    data: Option<PathBuf>,
    #[arg(long, required_unless_present = "data")]
    spiffe_id: Option<String>,
    /// The agent (or node alias) that may serve this identity.
    #[arg(long, required_unless_present_any = ["node", "data"], conflicts_with = "node")]
    parent_id: Option<String>,
    /// A node alias: SPIFFE ID naming every agent whose node selectors
    /// include all of --selector (e.g. x509pop:subject:cn:edge-1); no
    /// --parent-id. Workload entries use the alias ID as their parent.
    #[arg(long)]
    node: bool,
    /// `type:value`, e.g. unix:uid:1000; repeat for several (all must match).
    #[arg(long = "selector", required_unless_present = "data")]
    selectors: Vec<String>,
    #[arg(long, value_parser = duration_arg)]
    x509_svid_ttl: Option<Duration>,
    #[arg(long, value_parser = duration_arg)]
    jwt_svid_ttl: Option<Duration>,
    /// DNS SAN for the SVID; repeat for several.
    #[arg(long = "dns")]
    dns_names: Vec<String>,
    #[arg(long, default_value = "")]
    hint: String,
    /// The workload may use the Admin API.
    #[arg(long = "admin")]
    admin_entry: bool,
    /// The entry's SVIDs may have a downstream Signet server's CA signed
    /// (that server's `[upstream_authority.signet]`).
    #[arg(long)]
    downstream: bool,
    /// A trust domain whose bundle the workloads get and trust (its bundle
    /// held through `bundle set` or `federation create`); repeat for several.
    #[arg(long = "federates-with", value_name = "TRUST_DOMAIN")]
    federates_with: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[arg(long)]
    id: String,
    /// The entry federates with exactly these trust domains afterwards
    /// (none when not given, unless only --downstream is).
    #[arg(long = "federates-with", value_name = "TRUST_DOMAIN")]
    federates_with: Vec<String>,
    /// Whether the entry's SVIDs may have a downstream server's CA signed
    /// (`--downstream true|false`); unchanged when not given.
    #[arg(long, value_name = "BOOL")]
    downstream: Option<bool>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[arg(long)]
    spiffe_id: Option<String>,
    #[arg(long)]
    parent_id: Option<String>,
    #[arg(long = "selector")]
    selectors: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[arg(long)]
    id: String,
}

#[derive(Debug, Args)]
pub struct CountArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn entry_json(e: &Entry) -> Value {
    json!({
        "id": e.id,
        "spiffe_id": e.spiffe_id,
        "parent_id": e.parent_id,
        "selectors": e.selectors,
        "x509_svid_ttl": e.x509_svid_ttl,
        "jwt_svid_ttl": e.jwt_svid_ttl,
        "dns_names": e.dns_names,
        "hint": e.hint,
        "admin": e.admin,
        "downstream": e.downstream,
        "revision": e.revision,
        "created_at": e.created_at,
        "node": e.node,
        "federates_with": e.federates_with,
    })
}

fn ttl_text(secs: u32) -> String {
    if secs == 0 {
        "default".to_owned()
    } else {
        secs.to_string()
    }
}

/// One SPIRE-style block per entry.
pub fn entry_text(e: &Entry) -> String {
    let mut lines = vec![
        ("Entry ID", e.id.clone()),
        ("SPIFFE ID", e.spiffe_id.clone()),
        ("Parent ID", e.parent_id.clone()),
        ("Revision", e.revision.to_string()),
        ("X509-SVID TTL", ttl_text(e.x509_svid_ttl)),
        ("JWT-SVID TTL", ttl_text(e.jwt_svid_ttl)),
    ];
    if e.node {
        lines.push(("Node alias", "true".to_owned()));
    }
    lines.extend(e.selectors.iter().map(|s| ("Selector", s.clone())));
    lines.extend(e.dns_names.iter().map(|d| ("DNS name", d.clone())));
    lines.extend(
        e.federates_with
            .iter()
            .map(|td| ("FederatesWith", td.clone())),
    );
    if !e.hint.is_empty() {
        lines.push(("Hint", e.hint.clone()));
    }
    if e.admin {
        lines.push(("Admin", "true".into()));
    }
    if e.downstream {
        lines.push(("Downstream", "true".into()));
    }
    lines.push(("Created at", rfc3339(e.created_at)));
    lines
        .into_iter()
        .map(|(k, v)| format!("{k:<17}: {v}\n"))
        .collect()
}

impl EntryCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            EntryCommand::Create(a) => create(a).await,
            EntryCommand::Show(a) => show(a).await,
            EntryCommand::Delete(a) => {
                let mut client = connect(&a.admin.admin_socket).await?;
                client
                    .delete_entry(DeleteEntryRequest { id: a.id.clone() })
                    .await
                    .map_err(status_error)?;
                println!("Deleted entry {}", a.id);
                Ok(())
            }
            EntryCommand::Update(a) => {
                let mut client = connect(&a.admin.admin_socket).await?;
                let entry = client
                    .update_entry(UpdateEntryRequest {
                        id: a.id,
                        // `--downstream` alone changes nothing else.
                        keep_federates_with: a.downstream.is_some() && a.federates_with.is_empty(),
                        federates_with: a.federates_with,
                        downstream: a.downstream,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                match a.output.output {
                    Output::Text => print!("{}", entry_text(&entry)),
                    Output::Json => print_json(&entry_json(&entry))?,
                }
                Ok(())
            }
            EntryCommand::Count(a) => {
                let mut client = connect(&a.admin.admin_socket).await?;
                let count = client
                    .count_entries(CountEntriesRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner()
                    .count;
                match a.output.output {
                    Output::Text => println!("{count}"),
                    Output::Json => print_json(&json!({ "count": count }))?,
                }
                Ok(())
            }
        }
    }
}

async fn create(a: CreateArgs) -> anyhow::Result<()> {
    if let Some(path) = &a.data {
        let client = connect(&a.admin.admin_socket).await?;
        return super::entry_batch::create(path, client, a.output.output).await;
    }
    let request = Entry {
        spiffe_id: a
            .spiffe_id
            .ok_or_else(|| anyhow::anyhow!("--spiffe-id is required"))?,
        parent_id: a.parent_id.unwrap_or_default(),
        node: a.node,
        selectors: a.selectors,
        x509_svid_ttl: ttl_secs("--x509-svid-ttl", a.x509_svid_ttl)?,
        jwt_svid_ttl: ttl_secs("--jwt-svid-ttl", a.jwt_svid_ttl)?,
        dns_names: a.dns_names,
        hint: a.hint,
        admin: a.admin_entry,
        downstream: a.downstream,
        federates_with: a.federates_with,
        ..Default::default()
    };
    let mut client = connect(&a.admin.admin_socket).await?;
    let warning = binary_only_warning(&request.spiffe_id, &request.selectors);
    let entry = client
        .create_entry(request)
        .await
        .map_err(status_error)?
        .into_inner();
    if let Some(w) = warning {
        eprintln!("{w}");
    }
    match a.output.output {
        Output::Text => println!("{}", entry.id),
        Output::Json => print_json(&entry_json(&entry))?,
    }
    Ok(())
}

/// An entry that names a binary (`unix:path`, `unix:sha256`) but no user
/// or group is given to whoever runs that binary, whichever user they are,
/// and to a same-user process that execs it before the agent accepts its
/// connection: say so (stderr; the entry is still created).
pub(super) fn binary_only_warning(spiffe_id: &str, selectors: &[String]) -> Option<String> {
    let has = |prefixes: &[&str]| {
        selectors
            .iter()
            .any(|s| prefixes.iter().any(|p| s.starts_with(p)))
    };
    let names_binary = has(&["unix:path:", "unix:sha256:"]);
    let names_user = has(&["unix:uid:", "unix:gid:", "unix:user:", "unix:group:"]);
    (names_binary && !names_user).then(|| {
        format!(
            "warning: {spiffe_id} is selected by unix:path/unix:sha256 without unix:uid or unix:gid: any local user who can run that binary gets this identity; add --selector unix:uid:<uid>"
        )
    })
}

async fn show(a: ShowArgs) -> anyhow::Result<()> {
    let mut client = connect(&a.admin.admin_socket).await?;
    let entries = client
        .list_entries(ListEntriesRequest {
            spiffe_id: a.spiffe_id.unwrap_or_default(),
            parent_id: a.parent_id.unwrap_or_default(),
            selectors: a.selectors,
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .entries;
    print_list(
        a.output.output,
        "entries",
        ("entry", "entries"),
        &entries,
        entry_json,
        entry_text,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_without_a_user_is_warned_about() {
        let sel = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let w = binary_only_warning("spiffe://example.org/w", &sel(&["unix:path:/usr/bin/w"]));
        assert!(w.unwrap().starts_with(
            "warning: spiffe://example.org/w is selected by unix:path/unix:sha256 without unix:uid"
        ));
        assert!(binary_only_warning("x", &sel(&["unix:sha256:ab"])).is_some());
        assert!(binary_only_warning("x", &sel(&["unix:path:/b", "unix:uid:0"])).is_none());
        assert!(binary_only_warning("x", &sel(&["unix:sha256:ab", "unix:group:web"])).is_none());
        assert!(binary_only_warning("x", &sel(&["unix:uid:0"])).is_none());
        assert!(binary_only_warning("x", &sel(&["systemd:id:a.service"])).is_none());
    }
}
