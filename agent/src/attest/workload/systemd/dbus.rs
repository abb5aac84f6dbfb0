//! `FragmentPath` of a unit from systemd over the system D-Bus
//! (`org.freedesktop.systemd1.Manager.GetUnit`, then the unit's property).
//! One connection is kept and dropped on error, so a bus that comes back
//! later is used again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::Connection;

const SYSTEMD: &str = "org.freedesktop.systemd1";

/// Which bus to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAddress {
    System,
    /// A D-Bus address such as `unix:path=/run/dbus/system_bus_socket`.
    Address(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("D-Bus did not answer within {0:?}")]
    Timeout(Duration),
    #[error("D-Bus: {0}")]
    Bus(String),
}

impl From<zbus::Error> for BusError {
    fn from(e: zbus::Error) -> Self {
        Self::Bus(e.to_string())
    }
}

#[derive(Clone)]
pub struct UnitBus {
    address: BusAddress,
    timeout: Duration,
    conn: Arc<Mutex<Option<Connection>>>,
}

impl UnitBus {
    pub fn new(address: BusAddress, timeout: Duration) -> Self {
        Self {
            address,
            timeout,
            conn: Arc::default(),
        }
    }

    /// The unit file's path; `None` for units without one (scopes).
    pub async fn fragment_path(&self, unit: &str) -> Result<Option<String>, BusError> {
        let mut guard = self.conn.lock().await;
        let result = tokio::time::timeout(self.timeout, async {
            let conn = match guard.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let c = self.connect().await?;
                    *guard = Some(c.clone());
                    c
                }
            };
            query(&conn, unit).await
        })
        .await
        .unwrap_or(Err(BusError::Timeout(self.timeout)));
        if result.is_err() {
            *guard = None;
        }
        result
    }

    async fn connect(&self) -> Result<Connection, BusError> {
        let builder = match &self.address {
            BusAddress::System => zbus::connection::Builder::system()?,
            BusAddress::Address(a) => zbus::connection::Builder::address(a.as_str())?,
        };
        Ok(builder.build().await?)
    }
}

async fn query(conn: &Connection, unit: &str) -> Result<Option<String>, BusError> {
    let reply = conn
        .call_method(
            Some(SYSTEMD),
            "/org/freedesktop/systemd1",
            Some("org.freedesktop.systemd1.Manager"),
            "GetUnit",
            &(unit,),
        )
        .await?;
    let path: OwnedObjectPath = reply.body().deserialize()?;
    let reply = conn
        .call_method(
            Some(SYSTEMD),
            path.as_ref(),
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &("org.freedesktop.systemd1.Unit", "FragmentPath"),
        )
        .await?;
    let value: OwnedValue = reply.body().deserialize()?;
    let path = String::try_from(value).map_err(|e| BusError::Bus(e.to_string()))?;
    Ok(Some(path).filter(|p| !p.is_empty()))
}
