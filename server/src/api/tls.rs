//! TLS for the Node API: the server's own SVID (renewed at half-life, or
//! at once when its CA is tainted or revoked, and swapped in without a
//! restart), a client verifier that accepts only chains valid against the
//! current bundle, and the stream of accepted connections:
//! each counted against its source address's cap and the total before its
//! handshake, the handshake bounded in time, and the connection closed once
//! idle (see `signet_runtime::conn`).

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use rcgen::KeyPair;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use signet_core::rotation::{random_jitter, refresh_at, wait_until};
use signet_core::x509::{validate_x509_svid, X509Error};
use signet_runtime::conn::{accepted, ConnectionTracker, Guarded, Refusal, Timeouts};
use signet_runtime::throttle::LogThrottle;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use crate::ca::{AuthorityKind, CaError, CertificateAuthority};
use crate::config::NodeApiLimits;
use crate::telemetry::Metrics;

/// The path of the server's SPIFFE ID within its trust domain.
pub const SERVER_ID_PATH: &str = "/signet/server";
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    signet_core::crypto::tls_provider()
}

/// The server certificate handed to every handshake; replaced on renewal.
#[derive(Debug)]
pub struct ServerSvidResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerSvidResolver {
    fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
    }
}

impl ResolvesServerCert for ServerSvidResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

struct ServerSvid {
    key: Arc<CertifiedKey>,
    issued_at: SystemTime,
    not_after: SystemTime,
    /// The CA that signed it.
    issuer: String,
}

fn issue_server_svid(ca: &CertificateAuthority) -> Result<ServerSvid, CaError> {
    let id = ca
        .trust_domain()
        .id(SERVER_ID_PATH)
        .map_err(|e| CaError::Key(e.to_string()))?;
    let key = KeyPair::generate().map_err(|e| CaError::Key(e.to_string()))?;
    let issued_at = ca.now();
    let svid = ca.issue_x509_svid(&id, &key, &[], None)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = rustls::crypto::ring::sign::any_ecdsa_type(&der)
        .map_err(|e| CaError::Key(e.to_string()))?;
    let chain = svid.chain.into_iter().map(CertificateDer::from).collect();
    Ok(ServerSvid {
        key: Arc::new(CertifiedKey::new(chain, signer)),
        issued_at,
        not_after: svid.not_after,
        issuer: svid.authority_id.to_string(),
    })
}

/// Key generation and signing, off the runtime's threads.
async fn issue_off_runtime(ca: &Arc<CertificateAuthority>) -> Result<ServerSvid, CaError> {
    let ca = ca.clone();
    tokio::task::spawn_blocking(move || issue_server_svid(&ca))
        .await
        .map_err(|e| CaError::Key(format!("the signing task failed: {e}")))?
}

/// Whether the CA that signed the server SVID was tainted or revoked since:
/// then the SVID goes at once, not at half-life, or peers that dropped that
/// CA (federated trust domains, agents) stop trusting the server.
fn issuer_retired(ca: &CertificateAuthority, issuer: &str) -> bool {
    !ca.list(AuthorityKind::X509)
        .iter()
        .any(|a| a.id == issuer && !a.tainted)
}

/// Issues the first server SVID and returns the resolver serving it, plus
/// the task that renews it at half-life, or at once when its CA is tainted
/// or revoked, until dropped (abort it on shutdown).
pub fn start_server_svid(
    ca: Arc<CertificateAuthority>,
) -> Result<
    (
        Arc<ServerSvidResolver>,
        impl std::future::Future<Output = ()>,
    ),
    CaError,
> {
    let first = issue_server_svid(&ca)?;
    let resolver = Arc::new(ServerSvidResolver {
        current: RwLock::new(first.key.clone()),
    });
    let task = {
        let resolver = resolver.clone();
        async move {
            let mut authorities = ca.subscribe();
            let mut watching = true;
            let mut issuer = first.issuer;
            let mut renew_at = refresh_at(first.issued_at, first.not_after, random_jitter());
            loop {
                tokio::select! {
                    () = tokio::time::sleep(wait_until(ca.now(), renew_at)) => {}
                    changed = authorities.changed(), if watching => {
                        watching = changed.is_ok();
                        if !issuer_retired(&ca, &issuer) {
                            continue;
                        }
                        tracing::info!(authority = %issuer, "the server SVID's CA was tainted or revoked; renewing the SVID now");
                    }
                }
                match issue_off_runtime(&ca).await {
                    Ok(next) => {
                        tracing::info!(not_after = ?next.not_after, "renewed the server SVID");
                        renew_at = refresh_at(next.issued_at, next.not_after, random_jitter());
                        issuer = next.issuer;
                        resolver.set(next.key);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "renewing the server SVID failed; retrying");
                        renew_at = ca.now() + RETRY_AFTER_FAILURE;
                    }
                }
            }
        }
    };
    Ok((resolver, task))
}

/// Accepts a client certificate only if it is an X.509-SVID that validates
/// against the bundle as it is now; a client may also present none (Attest).
#[derive(Debug)]
pub struct AgentCertVerifier {
    ca: Arc<CertificateAuthority>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl AgentCertVerifier {
    pub fn new(ca: Arc<CertificateAuthority>) -> Self {
        Self {
            ca,
            algorithms: signet_core::crypto::tls_provider().signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for AgentCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let chain: Vec<Vec<u8>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref().to_vec())
            .collect();
        let bundle = self.ca.bundle();
        validate_x509_svid(&chain, &bundle.x509_authorities, self.ca.now())
            .map(|_| ClientCertVerified::assertion())
            .map_err(|e| {
                tracing::debug!(error = %e, "refused a client certificate");
                // The alert tells the client why: unknown_ca, certificate_expired, ...
                rustls::Error::InvalidCertificate(match e {
                    X509Error::UnknownIssuer => CertificateError::UnknownIssuer,
                    X509Error::Expired => CertificateError::Expired,
                    X509Error::NotYetValid => CertificateError::NotValidYet,
                    other => CertificateError::Other(OtherError(Arc::new(other))),
                })
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

pub fn server_config(
    ca: Arc<CertificateAuthority>,
    resolver: Arc<ServerSvidResolver>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(AgentCertVerifier::new(ca)))
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A Node API connection as served: TLS over TCP, counted under its
/// source address.
pub type NodeConnection = Guarded<TlsStream<TcpStream>, std::net::IpAddr>;

/// Completed TLS connections from `listener`. Handshakes run concurrently, so
/// a slow or hostile client cannot hold up the others; a source address over
/// its cap (or a full server) is closed before any TLS work, and refusals
/// and failed handshakes are counted and logged at most once per interval.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    limits: NodeApiLimits,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = Result<NodeConnection, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let tracker =
        ConnectionTracker::new(limits.max_connections_per_address, limits.max_connections);
    let refused_log = Arc::new(LogThrottle::default());
    let handshake_log = Arc::new(LogThrottle::default());
    tokio::spawn(async move {
        let mut incoming = std::pin::pin!(accepted(listener, "Node API"));
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                next = incoming.next() => next,
            };
            let Some((tcp, peer)) = next else { return };
            let permit = match tracker.admit(peer.ip()) {
                Ok(p) => p,
                Err(refusal) => {
                    metrics.refused_connection(match refusal {
                        Refusal::PeerLimit { .. } => "address_limit",
                        Refusal::TotalLimit { .. } => "total_limit",
                    });
                    if let Some(left_out) = refused_log.permit() {
                        tracing::warn!(%peer, %refusal, similar_left_out = left_out, "refused a Node API connection");
                    }
                    continue;
                }
            };
            // Without it Nagle holds a response's last segment until the
            // client's delayed ACK (up to 40 ms) whenever a response spans
            // several segments, as every signed batch does.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let metrics = metrics.clone();
            let handshake_log = handshake_log.clone();
            let timeouts: Timeouts = limits.timeouts;
            tokio::spawn(async move {
                let failed =
                    match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(Guarded::new(tls, permit, timeouts))).await;
                            return;
                        }
                        Ok(Err(e)) => ("handshake_failed", e.to_string()),
                        Err(_) => (
                            "handshake_timeout",
                            "no TLS handshake within the timeout".to_owned(),
                        ),
                    };
                metrics.refused_connection(failed.0);
                if let Some(left_out) = handshake_log.permit() {
                    tracing::info!(%peer, error = %failed.1, similar_left_out = left_out, "Node API TLS handshake failed");
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CaSettings, MemoryKeys};
    use crate::datastore::SqliteDataStore;
    use signet_core::{Clock, ManualClock, TrustDomain};

    fn served_chain(resolver: &ServerSvidResolver) -> Vec<Vec<u8>> {
        let key = resolver.current.read().unwrap().clone();
        key.cert.iter().map(|c| c.to_vec()).collect()
    }

    #[tokio::test]
    async fn the_server_svid_is_renewed_at_once_when_its_ca_is_tainted() {
        let dir = tempfile::tempdir().unwrap();
        let ds = Arc::new(
            SqliteDataStore::open(&dir.path().join("ds.sqlite3"))
                .await
                .unwrap(),
        );
        let clock = Arc::new(ManualClock::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        ));
        let settings = CaSettings {
            trust_domain: TrustDomain::new("example.org").unwrap(),
            server_id: "s1".into(),
            upstream: None,
            ca_ttl: Duration::from_secs(86_400),
            default_svid_ttl: Duration::from_secs(3600),
            default_jwt_svid_ttl: Duration::from_secs(300),
            backdate: Duration::from_secs(30),
            schedule: Default::default(),
            jwt_key_type: Default::default(),
            jwt_issuer: None,
        };
        let (ca, _) = CertificateAuthority::start(
            settings,
            clock.clone(),
            ds,
            Arc::new(MemoryKeys::default()),
        )
        .await
        .unwrap();
        let ca = Arc::new(ca);
        let (resolver, task) = start_server_svid(ca.clone()).unwrap();
        let task = tokio::spawn(task);
        let first = served_chain(&resolver);

        let old = ca.own(AuthorityKind::X509)[0].id.clone();
        ca.prepare(AuthorityKind::X509).await.unwrap();
        let new = ca.activate(AuthorityKind::X509).await.unwrap();
        // Activation alone keeps the SVID (still valid, its CA still trusted).
        tokio::task::yield_now().await;
        assert_eq!(served_chain(&resolver), first);

        ca.taint(AuthorityKind::X509, &old).await.unwrap();
        let new_ca = new.certificate.unwrap();
        let renewed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let chain = served_chain(&resolver);
                if validate_x509_svid(&chain, std::slice::from_ref(&new_ca), clock.now()).is_ok() {
                    return chain;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("a server SVID from the new CA, long before half-life");
        assert_ne!(renewed, first);
        task.abort();
    }
}
