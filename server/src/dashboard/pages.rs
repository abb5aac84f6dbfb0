//! The pages: each reads what it shows from the CA, the datastore and
//! this server's metrics, and renders it whole. Read-only: nothing here
//! changes anything, and no page shows a key, a join token or a secret.

use std::fmt::Write;

use signet_core::clock::unix_seconds;
use signet_core::SpiffeId;

use super::html::{duration_left, esc, life_bar, minute_chart, page, table, url_component};
use super::Ui;
use crate::audit::{AuditRecord, Decision};
use crate::ca::{AuthorityInfo, AuthorityKind};
use crate::datastore::{EntryFilter, Result};

/// Anomalies shown as open: those of the last day.
const OPEN_FOR_S: i64 = 24 * 3600;
/// Rows a list page shows at most.
const MAX_ROWS: usize = 500;

fn now(ui: &Ui) -> i64 {
    unix_seconds(ui.state.ca.now())
}

fn time(secs: i64) -> String {
    if secs <= 0 {
        return "never".into();
    }
    signet_runtime::time::rfc3339(secs)
}

fn authority_rows(list: &[AuthorityInfo], now: i64) -> Vec<String> {
    list.iter()
        .map(|a| {
            format!(
                "<tr data-authority-id=\"{id}\" data-kind=\"{kind}\" data-state=\"{state}\" data-not-after=\"{na}\">\
                 <td><code>{id}</code></td><td>{state}{tainted}</td><td>{server}</td><td>{until}</td>\
                 <td class=\"time-left\">{left}</td><td>{bar}</td></tr>",
                id = esc(&a.id),
                kind = a.kind.as_str(),
                state = esc(a.state.as_str()),
                tainted = if a.tainted { " <span class=\"bad\">(tainted)</span>" } else { "" },
                server = esc(&a.server_id),
                until = time(a.not_after),
                na = a.not_after,
                left = duration_left(a.not_after - now),
                bar = life_bar(a.not_before, a.not_after, now),
            )
        })
        .collect()
}

fn authorities(title: &str, list: &[AuthorityInfo], now: i64) -> String {
    format!(
        "<h2>{title}</h2><table><thead><tr><th>id</th><th>state</th><th>server</th><th>not after</th><th>time left</th><th></th></tr></thead><tbody>{}</tbody></table>",
        authority_rows(list, now).join("")
    )
}

/// The latest anomaly records, newest first.
async fn latest_anomalies(ui: &Ui) -> Result<Vec<AuditRecord>> {
    Ok(ui
        .state
        .ds
        .audit_latest("anomaly", MAX_ROWS)
        .await?
        .iter()
        .filter_map(|r| AuditRecord::parse(&r.record).ok())
        .collect())
}

/// The anomaly records of the last day, newest first.
async fn open_anomalies(ui: &Ui, now: i64) -> Result<Vec<AuditRecord>> {
    let mut records = latest_anomalies(ui).await?;
    records.retain(|r| r.time_ms / 1000 >= now - OPEN_FOR_S);
    Ok(records)
}

fn anomaly_rows(records: &[AuditRecord]) -> Vec<Vec<String>> {
    records
        .iter()
        .filter_map(|r| match &r.decision {
            Decision::Anomaly {
                anomaly,
                subject,
                detail,
                action,
            } => Some(vec![
                time(r.time_ms / 1000),
                format!("<span class=\"bad\">{}</span>", esc(anomaly)),
                format!("<code>{}</code>", esc(subject)),
                esc(detail),
                esc(action),
                esc(&r.server_id),
            ]),
            _ => None,
        })
        .collect()
}

pub async fn overview(ui: &Ui) -> Result<String> {
    let now = now(ui);
    let ca = &ui.state.ca;
    let bundle = ca.bundle();
    let agents = ui.state.ds.list_agents().await?;
    let connected = ui.state.metrics.connected_agents();
    let servers = ui.state.ds.list_servers().await?;
    let peers = ui.state.ds.relationships().await?;
    let anomalies = open_anomalies(ui, now).await?;
    let minutes = ui
        .activity
        .per_minute(ui.state.metrics.svids_issued_total());
    let last_hour: u64 = minutes.iter().sum();
    let mut body = format!(
        "<div class=\"tiles\">\
         <div class=\"tile\">Agents <b><span id=\"agents-connected\">{connected}</span> / <span id=\"agents-total\" data-count=\"{total}\">{total}</span></b>connected here / attested</div>\
         <div class=\"tile\">Bundle sequence <b id=\"bundle-sequence\">{seq}</b>{x} X.509, {j} JWT authorities</div>\
         <div class=\"tile\">SVIDs issued <b id=\"svids-last-hour\">{last_hour}</b>last hour, this server</div>\
         <div class=\"tile\">Open anomalies <b id=\"open-anomalies\" class=\"{acls}\">{open}</b>last 24 h</div></div>",
        total = agents.len(),
        seq = bundle.sequence,
        x = bundle.x509_authorities.len(),
        j = bundle.jwt_authorities.len(),
        open = anomalies.len(),
        acls = if anomalies.is_empty() { "ok" } else { "bad" },
    );
    body.push_str(&authorities(
        "X.509 authorities",
        &ca.list(AuthorityKind::X509),
        now,
    ));
    body.push_str(&authorities(
        "JWT authorities",
        &ca.list(AuthorityKind::Jwt),
        now,
    ));
    let _ = write!(
        body,
        "<h2>SVIDs issued per minute (this server)</h2>{}",
        minute_chart(&minutes)
    );
    let server_rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            vec![
                format!(
                    "<code>{}</code>{}",
                    esc(&s.id),
                    if s.id == ui.state.server_id {
                        " (this one)"
                    } else {
                        ""
                    }
                ),
                esc(&s.hostname),
                esc(&s.address),
                time(s.started_at),
                format!("{} ago", duration_left(now - s.last_seen + 1)),
            ]
        })
        .collect();
    let _ = write!(
        body,
        "<h2>Servers of the group</h2>{}",
        table(
            &["id", "host", "Node API", "started", "last alive"],
            &server_rows
        )
    );
    let peer_rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            vec![
                esc(p.trust_domain.as_str()),
                format!("<code>{}</code>", esc(&p.bundle_endpoint_url)),
                time(p.last_fetch_at),
                if p.last_fetch_at > 0 {
                    format!("{} ago", duration_left(now - p.last_fetch_at + 1))
                } else {
                    "-".into()
                },
                if p.last_error.is_empty() {
                    "<span class=\"ok\">ok</span>".into()
                } else {
                    format!("<span class=\"bad\">{}</span>", esc(&p.last_error))
                },
            ]
        })
        .collect();
    let _ = write!(
        body,
        "<h2>Federation peers</h2>{}",
        table(
            &[
                "trust domain",
                "bundle endpoint",
                "last refresh",
                "age",
                "status"
            ],
            &peer_rows
        )
    );
    let _ = write!(
        body,
        "<h2>Open anomalies</h2>{}",
        table(
            &["time", "kind", "subject", "detail", "action", "server"],
            &anomaly_rows(&anomalies)
        )
    );
    Ok(page("Overview", ca.trust_domain().as_str(), &body))
}

fn matches(q: &str, fields: &[String]) -> bool {
    q.is_empty() || fields.iter().any(|f| f.contains(q))
}

fn search_form(action: &str, q: &str, what: &str) -> String {
    format!(
        "<form method=\"get\" action=\"{action}\"><input name=\"q\" value=\"{}\" placeholder=\"{what}\" size=\"50\"> <button>Search</button></form>",
        esc(q)
    )
}

fn agent_link(id: &str) -> String {
    format!(
        "<a class=\"agent\" href=\"/ui/agent?id={}\"><code>{}</code></a>",
        url_component(id),
        esc(id)
    )
}

pub async fn agents(ui: &Ui, q: &str) -> Result<String> {
    let now = now(ui);
    let agents = ui.state.ds.list_agents().await?;
    let rows: Vec<Vec<String>> = agents
        .iter()
        .filter(|a| {
            let mut fields: Vec<String> = a.selectors.iter().map(ToString::to_string).collect();
            fields.push(a.spiffe_id.to_string());
            matches(q, &fields)
        })
        .take(MAX_ROWS)
        .map(|a| {
            vec![
                agent_link(&a.spiffe_id.to_string()),
                esc(&a.attestation_type),
                esc(&a
                    .selectors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")),
                ui.state
                    .last_seen
                    .get(&a.spiffe_id)
                    .map_or_else(|| "not since this server started".into(), time),
                format!(
                    "{} ({})",
                    time(a.expires_at),
                    duration_left(a.expires_at - now)
                ),
                if a.banned {
                    "<span class=\"bad\">banned</span>".into()
                } else {
                    "no".into()
                },
            ]
        })
        .collect();
    let body = format!(
        "{}<p>{} of {} agents</p>{}",
        search_form("/ui/agents", q, "SPIFFE ID or node selector"),
        rows.len(),
        agents.len(),
        table(
            &[
                "agent",
                "attested by",
                "node selectors",
                "last seen (this server)",
                "SVID expires",
                "banned"
            ],
            &rows
        )
    );
    Ok(page("Agents", ui.state.ca.trust_domain().as_str(), &body))
}

fn entry_rows(entries: &[crate::datastore::EntryRecord]) -> Vec<Vec<String>> {
    entries
        .iter()
        .take(MAX_ROWS)
        .map(|e| {
            let en = &e.entry;
            vec![
                format!("<code>{}</code>", esc(&en.spiffe_id.to_string())),
                format!("<code>{}</code>", esc(&en.parent_id.to_string())),
                esc(&en
                    .selectors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")),
                esc(&en
                    .federates_with
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")),
                if en.admin {
                    "admin".into()
                } else {
                    String::new()
                },
                format!("<code>{}</code>", esc(&en.id)),
            ]
        })
        .collect()
}

const ENTRY_HEAD: [&str; 6] = [
    "SPIFFE ID",
    "parent",
    "selectors",
    "federates with",
    "",
    "entry id",
];

pub async fn agent(ui: &Ui, id: &str) -> Result<Option<String>> {
    let Ok(id) = SpiffeId::parse(id) else {
        return Ok(None);
    };
    let Some(a) = ui.state.ds.get_agent(&id).await? else {
        return Ok(None);
    };
    let now = now(ui);
    let entries = ui.state.ds.entries_by_parent(&id).await?;
    let facts: Vec<Vec<String>> = vec![
        vec![
            "SPIFFE ID".into(),
            format!(
                "<code id=\"agent-id\">{}</code>",
                esc(&a.spiffe_id.to_string())
            ),
        ],
        vec!["attested by".into(), esc(&a.attestation_type)],
        vec!["attested at".into(), time(a.attested_at)],
        vec![
            "last seen (this server)".into(),
            ui.state
                .last_seen
                .get(&a.spiffe_id)
                .map_or_else(|| "not since this server started".into(), time),
        ],
        vec![
            "SVID serial".into(),
            format!("<code>{}</code>", esc(&a.serial)),
        ],
        vec![
            "SVID expires".into(),
            format!(
                "{} ({})",
                time(a.expires_at),
                duration_left(a.expires_at - now)
            ),
        ],
        vec![
            "banned".into(),
            if a.banned {
                "<span class=\"bad\">yes</span>".into()
            } else {
                "no".into()
            },
        ],
        vec![
            "node selectors".into(),
            esc(&a
                .selectors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")),
        ],
    ];
    let body = format!(
        "{}<h2>Entries it is the parent of ({})</h2>{}",
        table(&["", ""], &facts),
        entries.len(),
        table(&ENTRY_HEAD, &entry_rows(&entries))
    );
    Ok(Some(page(
        "Agent",
        ui.state.ca.trust_domain().as_str(),
        &body,
    )))
}

pub async fn entries(ui: &Ui, q: &str) -> Result<String> {
    let all = ui.state.ds.list_entries(&EntryFilter::default()).await?;
    let found: Vec<_> = all
        .into_iter()
        .filter(|e| {
            let mut fields: Vec<String> =
                e.entry.selectors.iter().map(ToString::to_string).collect();
            fields.push(e.entry.spiffe_id.to_string());
            fields.push(e.entry.parent_id.to_string());
            matches(q, &fields)
        })
        .collect();
    let body = format!(
        "{}<p>{} entries{}</p>{}",
        search_form("/ui/entries", q, "SPIFFE ID, parent or selector"),
        found.len(),
        if found.len() > MAX_ROWS {
            format!(", the first {MAX_ROWS} shown")
        } else {
            String::new()
        },
        table(&ENTRY_HEAD, &entry_rows(&found))
    );
    Ok(page("Entries", ui.state.ca.trust_domain().as_str(), &body))
}

pub async fn audit(ui: &Ui) -> Result<String> {
    let status = ui.chain.check(ui.state.ds.as_ref()).await;
    let head = ui.state.ds.audit_head().await?;
    let checkpoint = ui.state.ds.audit_checkpoints().await?.pop();
    let latest = match &head {
        Some(h) => {
            let from = h.seq.saturating_sub(49).max(1);
            let mut rows = ui.state.ds.audit_records(from, 50).await?;
            rows.reverse();
            rows
        }
        None => vec![],
    };
    let mut body = format!(
        "<p id=\"chain-status\" class=\"{}\">{}</p>",
        if status.broken.is_some() { "bad" } else { "ok" },
        esc(&status.summary())
    );
    match &checkpoint {
        Some(c) => {
            let _ = write!(
                body,
                "<p>Last checkpoint: record {} at {}, signed by server <code>{}</code> (key <code>{}</code>).</p>",
                c.seq,
                time(c.time_ms / 1000),
                esc(&c.server_id),
                esc(c.key_id.get(..16).unwrap_or(&c.key_id))
            );
        }
        None => body.push_str("<p>No checkpoint yet.</p>"),
    }
    let rows: Vec<Vec<String>> = latest
        .iter()
        .map(|r| {
            let parsed = AuditRecord::parse(&r.record).ok();
            vec![
                r.seq.to_string(),
                parsed
                    .as_ref()
                    .map_or_else(String::new, |p| time(p.time_ms / 1000)),
                parsed
                    .as_ref()
                    .map_or_else(|| "?".into(), |p| esc(p.decision.kind())),
                format!("<code>{}</code>", esc(&r.record)),
            ]
        })
        .collect();
    let _ = write!(
        body,
        "<h2>Latest records</h2>{}",
        table(&["seq", "time", "kind", "record"], &rows)
    );
    Ok(page("Audit", ui.state.ca.trust_domain().as_str(), &body))
}

pub async fn anomalies(ui: &Ui) -> Result<String> {
    let records = latest_anomalies(ui).await?;
    let body = format!(
        "<p>{} findings (newest first). Rules and actions: <code>[anomaly]</code> in the server's config.</p>{}",
        records.len(),
        table(
            &["time", "kind", "subject", "detail", "action", "server"],
            &anomaly_rows(&records)
        )
    );
    Ok(page(
        "Anomalies",
        ui.state.ca.trust_domain().as_str(),
        &body,
    ))
}
