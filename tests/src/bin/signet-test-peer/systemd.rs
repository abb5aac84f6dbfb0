//! systemd's D-Bus API as far as the agent reads it (`Manager.GetUnit`,
//! then the unit's `FragmentPath`), for one unit, on a bus the test runs:
//! the sandbox has a real dbus-daemon but no systemd (issue 13 boots one).

use std::path::Path;

use zbus::zvariant::OwnedObjectPath;

use super::report;

struct Manager {
    unit: String,
    path: OwnedObjectPath,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    fn get_unit(&self, name: &str) -> zbus::fdo::Result<OwnedObjectPath> {
        if name == self.unit {
            Ok(self.path.clone())
        } else {
            Err(zbus::fdo::Error::Failed(format!("Unit {name} not loaded.")))
        }
    }
}

struct Unit {
    fragment: String,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Unit")]
impl Unit {
    #[zbus(property)]
    fn fragment_path(&self) -> String {
        self.fragment.clone()
    }
}

pub async fn serve(address: &str, unit: &str, fragment: &str, ready: &Path) {
    let path =
        OwnedObjectPath::try_from("/org/freedesktop/systemd1/unit/signet_5ftest").expect("path");
    let conn = zbus::connection::Builder::address(address)
        .expect("bus address")
        .name("org.freedesktop.systemd1")
        .expect("name")
        .serve_at(
            "/org/freedesktop/systemd1",
            Manager {
                unit: unit.to_owned(),
                path: path.clone(),
            },
        )
        .expect("manager")
        .serve_at(
            path,
            Unit {
                fragment: fragment.to_owned(),
            },
        )
        .expect("unit")
        .build()
        .await
        .expect("connect to the bus");
    report::write(ready, &serde_json::json!({"serving": true}));
    let _keep = conn;
    std::future::pending::<()>().await;
}
