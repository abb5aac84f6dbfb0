//! A small Docker Engine API client (Podman's compat API answers the same):
//! `GET /containers/<id>/json` over the engine's Unix socket, HTTP/1.1 by
//! hand, bounded in time and size. Answers are cached per container for a
//! short while, so a workload that reconnects does not cost an API call.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;

/// Inspect answers larger than this are refused.
const MAX_RESPONSE: u64 = 4 * 1024 * 1024;
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

    async fn get(&self, path: &str) -> Result<Vec<u8>, EngineError> {
        let mut stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| EngineError::Connect(self.socket.display().to_string(), e.to_string()))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: signet-agent\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        let io = |e: std::io::Error| EngineError::Io(e.to_string());
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut raw = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE + 1)
            .read_to_end(&mut raw)
            .await
            .map_err(io)?;
        if raw.len() as u64 > MAX_RESPONSE {
            return Err(EngineError::Malformed("answer too large".into()));
        }
        parse_response(&raw)
    }
}

/// Status line, headers, then a body framed by Content-Length, chunked
/// encoding, or the end of the connection.
pub fn parse_response(raw: &[u8]) -> Result<Vec<u8>, EngineError> {
    let malformed = |m: &str| EngineError::Malformed(m.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| malformed("no end of headers"))?;
    let head = std::str::from_utf8(raw.get(..split).unwrap_or_default())
        .map_err(|_| malformed("headers are not UTF-8"))?;
    let body = raw.get(split + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed("bad status line"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| malformed("bad Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    if status != 200 {
        return Err(EngineError::Status(status));
    }
    if chunked {
        return dechunk(body);
    }
    match length {
        Some(n) => body
            .get(..n)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| malformed("body shorter than Content-Length")),
        None => Ok(body.to_vec()),
    }
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, EngineError> {
    let malformed = |m: &str| EngineError::Malformed(m.to_owned());
    let mut out = Vec::new();
    loop {
        let eol = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| malformed("unterminated chunk size"))?;
        let size_line = std::str::from_utf8(body.get(..eol).unwrap_or_default())
            .map_err(|_| malformed("bad chunk size"))?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| malformed("bad chunk size"))?;
        let data_start = eol + 2;
        if size == 0 {
            return Ok(out);
        }
        let data_end = data_start
            .checked_add(size)
            .ok_or_else(|| malformed("bad chunk size"))?;
        let chunk = body
            .get(data_start..data_end)
            .ok_or_else(|| malformed("truncated chunk"))?;
        out.extend_from_slice(chunk);
        body = body
            .get(data_end + 2..)
            .ok_or_else(|| malformed("truncated chunk"))?;
    }
}
