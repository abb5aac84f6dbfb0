//! `signet-agent`: parses the command line and hands over to the library.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = signet_agent::cli::Cli::parse();
    signet_agent::cli::dispatch(cli)
}
