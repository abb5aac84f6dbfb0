//! The read-only trust dashboard at `/ui` on `[dashboard] bind` (off unless
//! set): HTTPS with the server's SVID; a reader presents an admin
//! X509-SVID (an entry with `admin`) over mTLS, or a session cookie from a
//! one-time link (`signet-server dashboard login`). Server-rendered HTML,
//! charts as SVG, no script and no write action.

pub mod access;
mod activity;
mod chain;
mod html;
mod pages;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use signet_core::SpiffeId;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::api::tls::{AgentCertVerifier, ServerSvidResolver};
use crate::api::ServerState;
use crate::datastore::EntryFilter;
use crate::http_listener::Listener;
use access::Access;
use activity::Activity;
use chain::ChainCheck;

const MAX_CONNECTIONS: usize = 256;
const COOKIE: &str = "signet_session";

/// What the Admin API needs to hand out login links.
pub struct Link {
    /// `https://HOST:PORT`.
    pub base_url: String,
    pub access: Arc<Access>,
}

/// What the pages read from.
pub struct Ui {
    pub state: ServerState,
    pub activity: Arc<Activity>,
    pub chain: ChainCheck,
    access: Arc<Access>,
}

/// Binds `addr`; the link is known before the server state is.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, Arc<Link>)> {
    let listener = TcpListener::bind(addr).await?;
    let mut local = listener.local_addr()?;
    if local.ip().is_unspecified() {
        // Listening everywhere: the link is for a browser on this host.
        local.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let link = Arc::new(Link {
        base_url: format!("https://{local}"),
        access: Arc::new(Access::default()),
    });
    Ok((listener, link))
}

/// Serves until `stop` turns true.
pub fn serve(
    listener: TcpListener,
    link: &Link,
    state: ServerState,
    resolver: Arc<ServerSvidResolver>,
    stop: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, rustls::Error> {
    let mut config =
        rustls::ServerConfig::builder_with_provider(signet_core::crypto::tls_provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(AgentCertVerifier::new(state.ca.clone())))
            .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let activity = Arc::new(Activity::default());
    let sampler = tokio::spawn(activity::run(
        activity.clone(),
        state.metrics.clone(),
        stop.clone(),
    ));
    tracing::info!(url = %format!("{}/ui", link.base_url), "serving the dashboard");
    let ui = Arc::new(Ui {
        state,
        activity,
        chain: ChainCheck::default(),
        access: link.access.clone(),
    });
    let listening = Listener {
        what: "dashboard",
        max_connections: MAX_CONNECTIONS,
        tls: Some(TlsAcceptor::from(Arc::new(config))),
    };
    let server = tokio::spawn(listening.serve(listener, stop, move |req, conn| {
        let ui = ui.clone();
        async move {
            let admin = admin_caller(&ui, &conn.client_certs).await;
            answer(&ui, admin.as_ref(), &req).await
        }
    }));
    Ok(vec![sampler, server])
}

/// The SPIFFE ID of a client SVID (already validated in the handshake)
/// that an admin entry names.
async fn admin_caller(ui: &Ui, chain: &[Vec<u8>]) -> Option<SpiffeId> {
    if chain.is_empty() {
        return None;
    }
    let bundle = ui.state.ca.bundle();
    let id =
        signet_core::x509::validate_x509_svid(chain, &bundle.x509_authorities, ui.state.ca.now())
            .ok()?;
    let filter = EntryFilter {
        spiffe_id: Some(id.clone()),
        ..EntryFilter::default()
    };
    let entries = ui.state.ds.list_entries(&filter).await.ok()?;
    entries.iter().any(|e| e.entry.admin).then_some(id)
}

fn respond(status: StatusCode, body: String) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn message(status: StatusCode, title: &str, text: &str) -> hyper::Response<Full<Bytes>> {
    respond(
        status,
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1><p>{}</p></body></html>",
            html::esc(text),
            t = html::esc(title)
        ),
    )
}

/// A query parameter, percent-decoded.
fn param(req: &hyper::Request<Incoming>, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn session_cookie(req: &hyper::Request<Incoming>) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == COOKIE).then(|| v.to_owned())
        })
}

async fn answer(
    ui: &Ui,
    admin: Option<&SpiffeId>,
    req: &hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    if req.method() != http::Method::GET {
        return message(
            StatusCode::METHOD_NOT_ALLOWED,
            "Read-only",
            "The dashboard only reads.",
        );
    }
    let path = req.uri().path();
    if path == "/ui/login" {
        return login(ui, req);
    }
    let session = session_cookie(req).is_some_and(|t| ui.access.session_valid(&t));
    if admin.is_none() && !session {
        return message(
            StatusCode::UNAUTHORIZED,
            "Log in",
            "Present an admin X509-SVID, or open a link from `signet-server dashboard login` run on the server's host.",
        );
    }
    let page = match path {
        "/" | "/ui" | "/ui/" => pages::overview(ui).await.map(Some),
        "/ui/agents" => pages::agents(ui, &param(req, "q").unwrap_or_default())
            .await
            .map(Some),
        "/ui/agent" => pages::agent(ui, &param(req, "id").unwrap_or_default()).await,
        "/ui/entries" => pages::entries(ui, &param(req, "q").unwrap_or_default())
            .await
            .map(Some),
        "/ui/audit" => pages::audit(ui).await.map(Some),
        "/ui/anomalies" => pages::anomalies(ui).await.map(Some),
        _ => Ok(None),
    };
    match page {
        Ok(Some(html)) => respond(StatusCode::OK, html),
        Ok(None) => message(StatusCode::NOT_FOUND, "Not found", "No such page or agent."),
        Err(e) => {
            tracing::warn!(error = %e, path, "dashboard page failed");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The datastore did not answer; reload in a moment.",
            )
        }
    }
}

/// `/ui/login?code=...`: spends the code, sets the session cookie.
fn login(ui: &Ui, req: &hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let Some(session) = param(req, "code").and_then(|c| ui.access.redeem(&c)) else {
        return message(
            StatusCode::UNAUTHORIZED,
            "Link expired or used",
            "A login link works once, within 10 minutes: run `signet-server dashboard login` again.",
        );
    };
    tracing::info!("dashboard login");
    let mut r = respond(StatusCode::SEE_OTHER, String::new());
    let cookie = format!(
        "{COOKIE}={session}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        access::SESSION_TTL.as_secs()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/ui"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("spiffe%3A%2F%2Fa%2Fb+c"), "spiffe://a/b c");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
