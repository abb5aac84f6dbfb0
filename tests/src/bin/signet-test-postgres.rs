//! Starts the test run's PostgreSQL cluster (see `signet_tests::postgres`),
//! prints its admin URL on the first line of stdout and keeps it until stdin
//! closes or the process is ended; `scripts/test` exports the URL as
//! `SIGNET_TEST_POSTGRES` so every test process shares one cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};

fn main() {
    let cluster = signet_tests::postgres::Cluster::start();
    let mut out = std::io::stdout();
    writeln!(out, "{}", cluster.admin_url()).expect("stdout");
    out.flush().expect("stdout");
    // Until stdin reaches its end (the caller exited or closed it).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(cluster);
}
