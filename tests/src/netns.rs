//! A second host on this machine: a network namespace joined to the test's
//! by a veth pair (`ip netns`, `ip link` from iproute2), whose link the
//! test cuts and restores for real, as an edge node loses its uplink.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Host {
    /// The namespace's name (`ip netns exec NAME ...`).
    pub ns: String,
    /// The test side's interface and address.
    host_if: String,
    pub host_ip: String,
    /// The namespace side's address.
    pub ns_ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Host {
    /// A fresh namespace with its link up, addresses in 10.231.<n>.0/30.
    pub fn start() -> Host {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Names unique across test binaries running at once (≤ 15 bytes).
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let subnet = (std::process::id() % 200 + n * 7) % 250 + 1;
        let host = Host {
            ns: format!("sgn{tag}"),
            host_if: format!("sgh{tag}"),
            host_ip: format!("10.231.{subnet}.1"),
            ns_ip: format!("10.231.{subnet}.2"),
        };
        let peer = format!("sgp{tag}");
        ip(&["netns", "add", &host.ns]);
        ip(&[
            "link",
            "add",
            &host.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &host.ns]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", host.host_ip),
            "dev",
            &host.host_if,
        ]);
        ip(&["link", "set", &host.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &host.ns, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{}/30", host.ns_ip), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        host
    }

    /// What runs a program inside (it execs it: the pid is the program's).
    pub fn prefix(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.ns].map(String::from).to_vec()
    }

    /// The uplink goes down: nothing passes either way.
    pub fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }

    pub fn restore(&self) {
        ip(&["link", "set", &self.host_if, "up"]);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Deleting the namespace deletes the pair with it.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
