//! A small Docker Engine API client (Podman's compat API answers the same):
//! `GET /containers/<id>/json` over the engine's Unix socket with hyper's
//! HTTP/1.1 client, bounded in time and size. Answers are cached per container for a
//! short while, so a workload that reconnects does not cost an API call.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::UnixStream;
use tokio::time::Instant;

/// Inspect answers larger than this are refused.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;
/// Containers remembered at most.
const CACHE_MAX: usize = 512;
/// Labels, image and env of a running container do not change; the TTL only
/// bounds how long a removed-and-recreated id could be served stale.
pub const CACHE_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("container engine socket {0}: {1}")]
    Connect(String, String),
    #[error("container engine did not answer within {0:?}")]
    Timeout(Duration),
    #[error("container engine I/O: {0}")]
    Io(String),
    #[error("container engine answered HTTP {0}")]
    Status(u16),
    #[error("container engine sent a malformed answer: {0}")]
    Malformed(String),
}

/// The parts of `docker inspect` that become selectors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Inspect {
    #[serde(rename = "Image", default)]
    pub image: String,
    #[serde(rename = "Config", default)]
    pub config: InspectConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct InspectConfig {
    #[serde(rename = "Labels", default)]
    pub labels: Option<HashMap<String, String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
}

impl Inspect {
    /// The Engine's top-level `Image` (`sha256:<hex>`), if the container has
    /// one: a container made from a bare rootfs (podman `--rootfs`) answers
    /// `"sha256:"`, which names no image.
    fn image_id(&self) -> Option<&str> {
        let digest = match self.image.split_once(':') {
            Some((_, digest)) => digest,
            None => self.image.as_str(),
        };
        (!digest.is_empty()).then_some(self.image.as_str())
    }

    /// `docker:label:`, `docker:image_id:` and the allow-listed `docker:env:`
    /// values (without the `docker:` kind).
    pub fn selector_values(&self, env_allow: &[String]) -> Vec<String> {
        let mut values = Vec::new();
        if let Some(image) = self.image_id() {
            values.push(format!("image_id:{image}"));
        }
        let mut labels: Vec<_> = self.config.labels.iter().flatten().collect();
        labels.sort();
        values.extend(labels.into_iter().map(|(k, v)| format!("label:{k}:{v}")));
        for var in self.config.env.iter().flatten() {
            if let Some((k, v)) = var.split_once('=') {
                if env_allow.iter().any(|a| a == k) {
                    values.push(format!("env:{k}:{v}"));
                }
            }
        }
        values
    }
}

type InspectCache = Arc<Mutex<HashMap<String, (Instant, Arc<Inspect>)>>>;

#[derive(Clone)]
pub struct DockerClient {
    socket: PathBuf,
    timeout: Duration,
    cache: InspectCache,
}

impl DockerClient {
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            socket: socket.into(),
            timeout,
            cache: Arc::default(),
        }
    }

    /// The container's inspect document, from the cache when fresh.
    pub async fn inspect(&self, id: &str) -> Result<Arc<Inspect>, EngineError> {
        if let Some(hit) = self.cached(id) {
            return Ok(hit);
        }
        let body = tokio::time::timeout(self.timeout, self.get(&format!("/containers/{id}/json")))
            .await
            .map_err(|_| EngineError::Timeout(self.timeout))??;
        let inspect: Inspect =
            serde_json::from_slice(&body).map_err(|e| EngineError::Malformed(e.to_string()))?;
        let inspect = Arc::new(inspect);
        self.remember(id, inspect.clone());
        Ok(inspect)
    }

    fn cached(&self, id: &str) -> Option<Arc<Inspect>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(id)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, i)| i.clone())
    }

    fn remember(&self, id: &str, inspect: Arc<Inspect>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        if cache.len() >= CACHE_MAX {
            let oldest = cache
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                cache.remove(&oldest);
            }
        }
        cache.insert(id.to_owned(), (Instant::now(), inspect));
    }

    /// `GET path` over the engine's socket with hyper's HTTP/1.1 client: one
    /// connection per call, its body read to at most `MAX_RESPONSE`.
    async fn get(&self, path: &str) -> Result<Bytes, EngineError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| EngineError::Connect(self.socket.display().to_string(), e.to_string()))?;
        let http = |e: hyper::Error| EngineError::Malformed(e.to_string());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        let request = http::Request::get(path)
            .header(header::HOST, "docker")
            .header(header::USER_AGENT, "signet-agent")
            .header(header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| EngineError::Malformed(e.to_string()))?;
        let exchange = async move {
            let response = sender.send_request(request).await.map_err(http)?;
            if response.status() != http::StatusCode::OK {
                return Err(EngineError::Status(response.status().as_u16()));
            }
            let body = Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| match e.downcast::<LengthLimitError>() {
                    Ok(_) => EngineError::Malformed("answer too large".into()),
                    Err(e) => EngineError::Malformed(e.to_string()),
                })?;
            Ok(body.to_bytes())
        };
        // The connection is driven beside the exchange and dropped with it;
        // one that ends first has handed over all it read.
        tokio::pin!(conn, exchange);
        tokio::select! {
            biased;
            out = &mut exchange => out,
            ended = &mut conn => match ended {
                Ok(()) => exchange.await,
                Err(e) => Err(http(e)),
            },
        }
    }
}
