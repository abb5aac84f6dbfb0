//! The servers of an HA group as the agent knows them: the `server_address`
//! list (HOST:PORT items in order of preference), checked once when the
//! config is read and resolved again at every connect, so a changed DNS
//! answer is followed. A name that resolves to several addresses stands for
//! several servers.

use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::num::NonZeroU16;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How long one name may take to resolve before this round skips it: a slow
/// resolver must not hold up failover to the names that do resolve.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a `server_address` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("no server address given")]
    Empty,
    #[error("item {position} of {list:?} is empty")]
    EmptyItem { position: usize, list: String },
    #[error("{item:?} is not HOST:PORT (an IPv6 address goes in brackets: [::1]:8081)")]
    NotHostPort { item: String },
    #[error("{item:?} has no valid port (1-65535)")]
    Port {
        item: String,
        #[source]
        source: std::num::ParseIntError,
    },
}

/// Why no address could be had for a configured name.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot resolve {name}: {source}")]
    Lookup {
        name: Arc<str>,
        #[source]
        source: std::io::Error,
    },
    #[error("resolving {name} took longer than {}s", RESOLVE_TIMEOUT.as_secs())]
    Timeout { name: Arc<str> },
    #[error("{name} resolved to no address")]
    NoAddress { name: Arc<str> },
}

/// The configured server addresses, in order of preference; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddresses(Vec<Arc<str>>);

/// One server to connect to: a configured name and one address it resolved
/// to. Two names resolving to the same address are the same server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: Arc<str>,
    pub addr: SocketAddr,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.parse::<SocketAddr>() == Ok(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{} ({})", self.name, self.addr)
        }
    }
}

impl ServerAddresses {
    /// A comma-separated list, `A,B,C`; blanks around items are ignored.
    pub fn parse(list: &str) -> Result<Self, AddressError> {
        if list.trim().is_empty() {
            return Err(AddressError::Empty);
        }
        Self::from_items(list.split(','), list)
    }

    /// One item per address (the TOML array form).
    pub fn from_list<S: AsRef<str>>(items: &[S]) -> Result<Self, AddressError> {
        if items.is_empty() {
            return Err(AddressError::Empty);
        }
        let whole = items
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(",");
        Self::from_items(items.iter().map(AsRef::as_ref), &whole)
    }

    fn from_items<'a>(
        items: impl Iterator<Item = &'a str>,
        whole: &str,
    ) -> Result<Self, AddressError> {
        let mut out: Vec<Arc<str>> = Vec::new();
        for (i, item) in items.enumerate() {
            let item = item.trim();
            if item.is_empty() {
                return Err(AddressError::EmptyItem {
                    position: i + 1,
                    list: whole.to_owned(),
                });
            }
            check_host_port(item)?;
            if !out.iter().any(|a| &**a == item) {
                out.push(item.into());
            }
        }
        Ok(Self(out))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|a| &**a)
    }

    /// Every server now, in the configured order, each name expanded to the
    /// addresses it resolves to. A name that does not resolve is skipped
    /// (the others may still answer); the error is that of the last name
    /// when none resolves.
    pub async fn resolve(&self) -> Result<Vec<Target>, ResolveError> {
        let mut targets: Vec<Target> = Vec::new();
        let mut last_error = None;
        for name in &self.0 {
            match resolve_one(name).await {
                Ok(addrs) => {
                    for addr in addrs {
                        if !targets.iter().any(|t| t.addr == addr) {
                            targets.push(Target {
                                name: name.clone(),
                                addr,
                            });
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(server = %name, %error, "skipping a server address that does not resolve");
                    last_error = Some(error);
                }
            }
        }
        match last_error {
            Some(error) if targets.is_empty() => Err(error),
            _ => Ok(targets),
        }
    }
}

async fn resolve_one(name: &Arc<str>) -> Result<Vec<SocketAddr>, ResolveError> {
    let lookup = tokio::net::lookup_host(&**name);
    let addrs: Vec<SocketAddr> = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .map_err(|_| ResolveError::Timeout { name: name.clone() })?
        .map_err(|source| ResolveError::Lookup {
            name: name.clone(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ResolveError::NoAddress { name: name.clone() });
    }
    Ok(addrs)
}

/// HOST:PORT with a port above 0; an IPv6 host in brackets.
fn check_host_port(item: &str) -> Result<(), AddressError> {
    let not_host_port = || AddressError::NotHostPort {
        item: item.to_owned(),
    };
    let (host, port) = item.rsplit_once(':').ok_or_else(not_host_port)?;
    let host_ok = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<Ipv6Addr>().is_ok()),
        None => {
            !host.is_empty() && !host.contains(|c: char| c == ':' || c == '/' || c.is_whitespace())
        }
    };
    if !host_ok {
        return Err(not_host_port());
    }
    port.parse::<NonZeroU16>()
        .map_err(|source| AddressError::Port {
            item: item.to_owned(),
            source,
        })?;
    Ok(())
}

impl FromStr for ServerAddresses {
    type Err = AddressError;

    fn from_str(list: &str) -> Result<Self, Self::Err> {
        Self::parse(list)
    }
}

impl fmt::Display for ServerAddresses {
    /// The list as `server_address` takes it: `A,B,C`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for a in &self.0 {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(a)?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(list: &ServerAddresses) -> Vec<&str> {
        list.iter().collect()
    }

    #[test]
    fn a_comma_separated_list_keeps_its_order() {
        let list = ServerAddresses::parse("b.example:8081, a.example:8081,10.0.0.3:9").unwrap();
        assert_eq!(
            items(&list),
            ["b.example:8081", "a.example:8081", "10.0.0.3:9"]
        );
        assert_eq!(list.to_string(), "b.example:8081,a.example:8081,10.0.0.3:9");
        assert_eq!(
            ServerAddresses::parse("[::1]:8081").unwrap().to_string(),
            "[::1]:8081"
        );
    }

    #[test]
    fn the_same_address_twice_is_one_server() {
        let list = ServerAddresses::parse("a:1,b:2,a:1").unwrap();
        assert_eq!(items(&list), ["a:1", "b:2"]);
    }

    #[test]
    fn an_empty_list_or_an_empty_item_is_refused() {
        assert_eq!(ServerAddresses::parse(""), Err(AddressError::Empty));
        assert_eq!(ServerAddresses::parse("  "), Err(AddressError::Empty));
        assert_eq!(
            ServerAddresses::parse("a:1,,b:2"),
            Err(AddressError::EmptyItem {
                position: 2,
                list: "a:1,,b:2".into()
            })
        );
        assert!(matches!(
            ServerAddresses::parse("a:1,"),
            Err(AddressError::EmptyItem { position: 2, .. })
        ));
        assert_eq!(
            ServerAddresses::from_list::<&str>(&[]),
            Err(AddressError::Empty)
        );
        assert!(matches!(
            ServerAddresses::from_list(&["a:1", " "]),
            Err(AddressError::EmptyItem { position: 2, .. })
        ));
    }

    #[test]
    fn items_that_are_not_host_port_are_refused_by_name() {
        for bad in [
            "server.example",
            ":8081",
            "::1:8081",
            "[nonsense]:8081",
            "https://server:8081",
            "a b:1",
        ] {
            let err = ServerAddresses::parse(&format!("ok:1,{bad}")).unwrap_err();
            assert!(
                matches!(&err, AddressError::NotHostPort { item } if item == bad),
                "{bad}: {err}"
            );
        }
        for bad in ["a:0", "a:65536", "a:http", "a:"] {
            let err = ServerAddresses::parse(bad).unwrap_err();
            assert!(
                matches!(&err, AddressError::Port { item, .. } if item == bad),
                "{bad}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn resolving_expands_each_name_in_order_without_duplicates() {
        let list = ServerAddresses::parse("127.0.0.2:1,127.0.0.1:2,127.0.0.2:1").unwrap();
        let targets = list.resolve().await.unwrap();
        let addrs: Vec<String> = targets.iter().map(|t| t.addr.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.2:1", "127.0.0.1:2"]);
        assert_eq!(targets[0].to_string(), "127.0.0.2:1");

        // A name stands for every address it resolves to (at least one).
        let list = ServerAddresses::parse("localhost:8081").unwrap();
        let targets = list.resolve().await.unwrap();
        assert!(!targets.is_empty());
        assert!(targets.iter().all(|t| &*t.name == "localhost:8081"));
        assert!(targets[0].to_string().starts_with("localhost:8081 ("));
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_skipped_not_fatal() {
        let list = ServerAddresses::parse("nowhere.invalid:1,127.0.0.1:2").unwrap();
        let targets = list.resolve().await.unwrap();
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].addr.to_string(), "127.0.0.1:2");

        let list = ServerAddresses::parse("nowhere.invalid:1").unwrap();
        assert!(list.resolve().await.is_err());
    }
}
