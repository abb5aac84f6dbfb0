//! Fixtures for federation: a whole trust domain (server with a bundle
//! endpoint, and an agent), relationships between them, a Web PKI CA made
//! on the spot, and an HTTPS peer that serves whatever a test sets (garbage,
//! an older bundle) to see it refused.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spiffe::{TrustDomain, WorkloadApiClient, X509Context};

use tempfile::TempDir;

use crate::agent::TestAgent;
use crate::server::TestServer;

/// One trust domain: its server (bundle endpoint on, `https_spiffe` unless
/// the config says otherwise, telemetry on) and an agent.
pub struct Domain {
    pub server: TestServer,
    pub agent: TestAgent,
    pub dir: TempDir,
}

impl Domain {
    /// `td` with its bundle endpoint serving `refresh_hint`, fetching peers
    /// at least every second; `extra_toml` goes into the server's config.
    pub async fn start(td: &str, refresh_hint: &str, extra_toml: &str) -> Domain {
        let dir = tempfile::Builder::new()
            .prefix("sgf")
            .tempdir()
            .expect("tempdir");
        let config = dir.path().join("server.toml");
        let endpoint = if extra_toml.contains("[federation.bundle_endpoint]") {
            String::new()
        } else {
            format!(
                "[federation.bundle_endpoint]\nbind = \"127.0.0.1:0\"\nrefresh_hint = \"{refresh_hint}\"\n"
            )
        };
        std::fs::write(
            &config,
            format!("[federation]\nmin_refresh_interval = \"1s\"\n\n{endpoint}{extra_toml}"),
        )
        .expect("server config");
        let server = TestServer::start_in(
            td,
            &[
                "--config",
                config.to_str().expect("utf-8 path"),
                "--telemetry-bind",
                "127.0.0.1:0",
            ],
        )
        .await;
        let agent = TestAgent::start(&server).await;
        Domain { server, agent, dir }
    }

    /// `https://127.0.0.1:PORT` of the bundle endpoint.
    pub fn endpoint_url(&self) -> String {
        format!("https://{}", self.server.bundle_endpoint_addr())
    }

    /// `spiffe://<td>/signet/server`: the ID the https_spiffe endpoint presents.
    pub fn endpoint_id(&self) -> String {
        self.server.id("/signet/server")
    }

    /// The server's SPIFFE bundle, written to a file in this domain's dir.
    pub fn bundle_file(&self) -> PathBuf {
        let path = self.dir.path().join("bundle.json");
        std::fs::write(
            &path,
            self.server
                .cli_ok(&["bundle", "show", "--format", "spiffe"]),
        )
        .expect("bundle file");
        path
    }

    /// This domain's workload (this process) as `/workload`, federating
    /// with `peers`: a Workload API client on the agent.
    pub async fn workload(&self, peers: &[&str]) -> WorkloadApiClient {
        let mut extra = Vec::new();
        for p in peers {
            extra.extend(["--federates-with", p]);
        }
        self.server.create_entry(
            &self.server.id("/workload"),
            &self.agent.spiffe_id,
            &[&crate::my_uid_selector()],
            &extra,
        );
        WorkloadApiClient::connect_to(self.agent.endpoint())
            .await
            .expect("connect to the Workload API")
    }

    /// This server federates with `peer` over https_spiffe, first contact
    /// checked with `peer`'s bundle as it is now.
    pub fn federate_with(&self, peer: &Domain) {
        let bundle = peer.bundle_file();
        self.server.cli_ok(&[
            "federation",
            "create",
            "--trust-domain",
            &peer.server.trust_domain,
            "--bundle-endpoint-url",
            &peer.endpoint_url(),
            "--profile",
            "https_spiffe",
            "--endpoint-spiffe-id",
            &peer.endpoint_id(),
            "--trust-domain-bundle",
            bundle.to_str().expect("utf-8 path"),
        ]);
    }
}

/// The workload's X.509 context once it holds `td`'s bundle.
pub async fn context_with(client: &WorkloadApiClient, td: &str) -> X509Context {
    let td = TrustDomain::new(td).expect("trust domain");
    crate::wait::until(
        &format!("an X.509 context with {td}'s bundle"),
        Duration::from_secs(60),
        || async {
            let ctx = client.fetch_x509_context().await.ok()?;
            ctx.bundle_set().get(&td).is_some().then_some(ctx)
        },
    )
    .await
}

/// The CA certificates (DER) of `td` in the context; none when absent.
pub fn authorities(ctx: &X509Context, td: &str) -> Vec<Vec<u8>> {
    ctx.bundle_set()
        .get(&TrustDomain::new(td).expect("trust domain"))
        .map(|b| {
            b.authorities()
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect()
        })
        .unwrap_or_default()
}

/// The default SVID's chain (DER, leaf first).
pub fn chain(ctx: &X509Context) -> Vec<Vec<u8>> {
    ctx.default_svid()
        .expect("an SVID")
        .cert_chain()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect()
}

/// A Web PKI CA made on the spot, for `https_web` endpoints.
pub struct WebCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub pem: String,
}

impl WebCa {
    pub fn new() -> WebCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Test Web PKI CA");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        WebCa {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// A server certificate for 127.0.0.1 and localhost: (chain PEM, key PEM).
    pub fn issue(&self) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("server key");
        let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server params");
        let cert = params.signed_by(&key, &self.issuer).expect("server cert");
        (cert.pem(), key.serialize_pem())
    }

    /// The certificate and key as files in `dir` (the key 0600).
    pub fn issue_files(&self, dir: &Path) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let (cert, key) = self.issue();
        let (cert_path, key_path) = (dir.join("web.pem"), dir.join("web.key"));
        std::fs::write(&cert_path, cert).expect("cert file");
        std::fs::write(&key_path, key).expect("key file");
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod key");
        (cert_path, key_path)
    }
}

impl Default for WebCa {
    fn default() -> Self {
        Self::new()
    }
}

/// An HTTPS server (a certificate from a [`WebCa`]) answering every GET
/// with the body a test sets.
pub struct HttpsPeer {
    pub url: String,
    body: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpsPeer {
    pub async fn start(ca: &WebCa, body: &[u8]) -> HttpsPeer {
        let (cert, key) = ca.issue();
        let chain = signet_core::pem::decode_certs(cert.as_bytes())
            .expect("cert")
            .into_iter()
            .map(rustls_pki_types::CertificateDer::from)
            .collect();
        let key = signet_core::pem::decode_private_key(key.as_bytes()).expect("key");
        let config =
            rustls::ServerConfig::builder_with_provider(signet_core::crypto::tls_provider())
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(chain, rustls_pki_types::PrivateKeyDer::Pkcs8(key.into()))
                .expect("server cert");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let body = Arc::new(Mutex::new(body.to_vec()));
        let served = body.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let served = served.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |_req| {
                        let body = served.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        async move {
                            Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(body),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        HttpsPeer { url, body, task }
    }

    /// What the next GETs get.
    pub fn serve(&self, body: &[u8]) {
        *self.body.lock().unwrap_or_else(|e| e.into_inner()) = body.to_vec();
    }
}

impl Drop for HttpsPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A keep-alive HTTPS/1.1 connection to a bundle endpoint (`https://HOST:PORT`),
/// its certificate judged by `verifier`.
pub struct EndpointConn {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    authority: String,
    task: tokio::task::JoinHandle<()>,
}

impl EndpointConn {
    pub async fn open(
        url: &str,
        verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
    ) -> anyhow::Result<EndpointConn> {
        let authority = url
            .strip_prefix("https://")
            .ok_or_else(|| anyhow::anyhow!("{url}: not https://"))?
            .trim_end_matches('/')
            .to_owned();
        let host = authority
            .rsplit_once(':')
            .map_or(authority.as_str(), |(h, _)| h)
            .to_owned();
        let config =
            rustls::ClientConfig::builder_with_provider(signet_core::crypto::tls_provider())
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(&authority).await?;
        tcp.set_nodelay(true)?;
        let name = rustls_pki_types::ServerName::try_from(host)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(EndpointConn {
            sender,
            authority,
            task,
        })
    }

    /// One GET `/`: the status and the body.
    pub async fn get(&mut self) -> anyhow::Result<(u16, bytes::Bytes)> {
        use http_body_util::BodyExt;
        self.sender.ready().await?;
        let req = hyper::Request::get("/")
            .header(hyper::header::HOST, &self.authority)
            .body(http_body_util::Empty::new())?;
        let res = self.sender.send_request(req).await?;
        let status = res.status().as_u16();
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

impl Drop for EndpointConn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The document `server`'s https_spiffe bundle endpoint serves, the
/// endpoint checked against `server`'s own bundle.
pub async fn served_document(server: &TestServer) -> serde_json::Value {
    let bundles = [(server.trust_domain.clone(), server.bundle_der())]
        .into_iter()
        .collect();
    let url = format!("https://{}", server.bundle_endpoint_addr());
    let mut conn = EndpointConn::open(&url, crate::spiffe_tls::spiffe_server_verifier(&bundles))
        .await
        .expect("a TLS connection to the bundle endpoint");
    let (status, body) = conn.get().await.expect("GET /");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("a JSON document")
}

/// The value of `signet_server_federation_refreshes_total` for a trust
/// domain and result on `server`'s `/metrics`.
pub async fn refreshes(server: &TestServer, trust_domain: &str, result: &str) -> f64 {
    let (_, body) = crate::http::get(&server.telemetry_addr(), "/metrics")
        .await
        .expect("/metrics");
    let want = format!(
        "signet_server_federation_refreshes_total{{trust_domain=\"{trust_domain}\",result=\"{result}\"}} "
    );
    body.lines()
        .find_map(|l| l.strip_prefix(&want))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}
