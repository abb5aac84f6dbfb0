//! RFC 5424 syslog: one datagram per record to a Unix datagram socket
//! (`/dev/log`, journald's or rsyslog's) or over UDP. The message is the
//! record as `audit tail` prints it; facility authpriv, severity notice
//! (warning for refusals, rate-limit trips and anomalies), MSGID its kind.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::audit::{AuditRecord, Decision, Outcome};

/// `unix:/dev/log` or `udp:HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    Unix(PathBuf),
    Udp(SocketAddr),
}

impl std::str::FromStr for SyslogTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/dev/log".into());
            }
            return Ok(SyslogTarget::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("udp:") {
            return addr
                .parse()
                .map(SyslogTarget::Udp)
                .map_err(|e| format!("udp:{addr}: {e} (an IP:PORT, e.g. udp:127.0.0.1:514)"));
        }
        Err(format!(
            "{s:?}: expected unix:/path/to/socket or udp:IP:PORT"
        ))
    }
}

impl fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogTarget::Unix(p) => write!(f, "unix:{}", p.display()),
            SyslogTarget::Udp(a) => write!(f, "udp:{a}"),
        }
    }
}

enum Socket {
    Unix(tokio::net::UnixDatagram),
    Udp(tokio::net::UdpSocket),
}

pub struct Syslog {
    socket: Socket,
    hostname: String,
    pid: u32,
}

/// authpriv: security and authorization messages.
const FACILITY: u8 = 10;
const WARNING: u8 = 4;
const NOTICE: u8 = 5;

fn severity(d: &Decision) -> u8 {
    match d {
        Decision::RateLimited { .. } | Decision::Anomaly { .. } => WARNING,
        Decision::NodeAttestation { outcome, .. }
        | Decision::FederationRefresh { outcome, .. }
        | Decision::Admin { outcome, .. }
            if matches!(outcome, Outcome::Refused { .. }) =>
        {
            WARNING
        }
        _ => NOTICE,
    }
}

/// `2026-12-06T13:24:05.123Z` from Unix milliseconds.
fn timestamp(time_ms: i64) -> String {
    let secs = time_ms.div_euclid(1000);
    let ms = time_ms.rem_euclid(1000);
    let base = signet_runtime::time::rfc3339(secs);
    match base.strip_suffix('Z') {
        Some(b) => format!("{b}.{ms:03}Z"),
        None => base,
    }
}

/// The RFC 5424 line for `record` (printed as `line`).
pub fn format(record: &AuditRecord, line: &str, hostname: &str, pid: u32) -> String {
    let pri = u16::from(FACILITY) * 8 + u16::from(severity(&record.decision));
    // HOSTNAME and APP-NAME are printable ASCII without spaces.
    let host: String = hostname
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    format!(
        "<{pri}>1 {} {} signet-server {pid} {} - {line}",
        timestamp(record.time_ms),
        if host.is_empty() { "-" } else { &host },
        record.decision.kind(),
    )
}

impl Syslog {
    pub async fn connect(target: SyslogTarget) -> std::io::Result<Self> {
        let socket = match &target {
            SyslogTarget::Unix(path) => {
                let s = tokio::net::UnixDatagram::unbound()?;
                s.connect(path)?;
                Socket::Unix(s)
            }
            SyslogTarget::Udp(addr) => {
                let local: SocketAddr = if addr.is_ipv4() {
                    "0.0.0.0:0".parse().map_err(std::io::Error::other)?
                } else {
                    "[::]:0".parse().map_err(std::io::Error::other)?
                };
                let s = tokio::net::UdpSocket::bind(local).await?;
                s.connect(addr).await?;
                Socket::Udp(s)
            }
        };
        Ok(Self {
            socket,
            hostname: crate::app::hostname(),
            pid: std::process::id(),
        })
    }

    pub async fn send(&mut self, record: &AuditRecord, line: &str) -> std::io::Result<()> {
        let msg = format(record, line, &self.hostname, self.pid);
        match &self.socket {
            Socket::Unix(s) => s.send(msg.as_bytes()).await.map(|_| ()),
            Socket::Udp(s) => s.send(msg.as_bytes()).await.map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_lines_follow_rfc_5424() {
        assert_eq!(
            "udp:127.0.0.1:514".parse::<SyslogTarget>(),
            Ok(SyslogTarget::Udp("127.0.0.1:514".parse().unwrap()))
        );
        assert_eq!(
            "unix:/dev/log".parse::<SyslogTarget>(),
            Ok(SyslogTarget::Unix("/dev/log".into()))
        );
        assert!("tcp:1.2.3.4:5".parse::<SyslogTarget>().is_err());
        assert!("udp:nowhere".parse::<SyslogTarget>().is_err());
        let r = AuditRecord {
            time_ms: 1_700_000_000_123,
            server_id: "s1".into(),
            decision: Decision::RateLimited {
                limit: "attestation".into(),
                subject: "10.0.0.7".into(),
                retry_after_ms: 5,
            },
        };
        assert_eq!(
            format(&r, "{}", "host a", 42),
            "<84>1 2023-11-14T22:13:20.123Z hosta signet-server 42 rate_limited - {}"
        );
    }
}
