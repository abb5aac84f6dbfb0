//! `signet-server`: parses the command line and dispatches.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = signet_server::cli::Cli::parse();
    signet_server::cli::dispatch(cli)
}
