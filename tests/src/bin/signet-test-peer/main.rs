//! `signet-test-peer`: the misbehaving client the security tests need, as a
//! process of its own, so it can run as another uid, exit to free its pid,
//! exec another binary while its socket lives on, or hold thousands of
//! connections. Each subcommand does one attack step and reports JSON to a
//! file the test reads (written whole, by rename).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod flood;
mod handover;
mod report;
mod systemd;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One FetchX509SVID on a new connection; the outcome to --out.
    Fetch {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Connects, hands the socket to a child (`relay-client`) that makes a
    /// first call, then exits (freeing the pid) or execs PROG.
    HandOver {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        go: PathBuf,
        /// Exec this (with its arguments) once the first call is answered.
        #[arg(long, num_args = 1.., allow_hyphen_values = true)]
        exec: Vec<String>,
    },
    /// The child of `hand-over`: its stdin is the connected socket.
    RelayClient {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        go: PathBuf,
    },
    /// Opens --count connections to a Unix socket and holds them, each
    /// having sent --send.
    Hold {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        count: usize,
        #[arg(long, value_enum, default_value = "nothing")]
        send: flood::Send,
        #[arg(long)]
        status: PathBuf,
    },
    /// Opens --count TCP connections from --source to --addr and holds them
    /// idle; with --tls each completes a TLS handshake first.
    TcpFlood {
        #[arg(long)]
        addr: std::net::SocketAddr,
        #[arg(long)]
        source: std::net::IpAddr,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        tls: bool,
        #[arg(long)]
        status: PathBuf,
    },
    /// Makes --calls FetchJWTSVID calls one after another on one
    /// connection; the count of each status code to --out.
    CallFlood {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        calls: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Sends one HEADERS block that names a 4 KB table entry 250,000 times.
    HpackBomb {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Serves systemd's GetUnit/FragmentPath for one unit on a D-Bus.
    FakeSystemd {
        #[arg(long)]
        address: String,
        #[arg(long)]
        unit: String,
        #[arg(long)]
        fragment: String,
        #[arg(long)]
        ready: PathBuf,
    },
    /// Does nothing for a minute (a process to give a pid or an exe).
    Sleep,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::HandOver {
        socket,
        out,
        go,
        exec,
    } = &cli.command
    {
        // No runtime here: this process execs or exits as soon as it can.
        return handover::hand_over(socket, out, go, exec);
    }
    if let Command::Sleep = cli.command {
        // A workload that only exists to be attested: no runtime, no work.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(std::time::Duration::from_secs(60));
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        match cli.command {
            Command::Fetch { socket, out } => workload::fetch(&socket, &out).await,
            Command::RelayClient { out, go } => handover::relay_client(&out, &go).await,
            Command::Hold {
                socket,
                count,
                send,
                status,
            } => flood::hold(&socket, count, send, &status).await,
            Command::TcpFlood {
                addr,
                source,
                count,
                tls,
                status,
            } => flood::tcp_flood(addr, source, count, tls, &status).await,
            Command::CallFlood { socket, calls, out } => {
                workload::call_flood(&socket, calls, &out).await
            }
            Command::HpackBomb { socket, out } => workload::hpack_bomb(&socket, &out).await,
            Command::FakeSystemd {
                address,
                unit,
                fragment,
                ready,
            } => systemd::serve(&address, &unit, &fragment, &ready).await,
            Command::HandOver { .. } | Command::Sleep => unreachable!("handled above"),
        }
    });
    ExitCode::SUCCESS
}
