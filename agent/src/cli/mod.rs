//! The `signet-agent` command line: `run` starts the agent; `api fetch x509`,
//! `api fetch jwt`, `api fetch jwt-bundle`, `api validate jwt`, `api watch`,
//! `api authorize`
//! and `healthcheck` are Workload API clients; `validate` checks a config file.

pub mod audit;
pub mod authorize;
pub mod client;
pub mod exit;
pub mod fetch;
pub mod healthcheck;
pub mod jwt;
pub mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{RunArgs, RuntimeConfig};

#[derive(Debug, Parser)]
#[command(
    name = "signet-agent",
    version,
    about = "Signet agent: SPIFFE identities for local workloads"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent.
    Run(RunArgs),
    /// Talk to a running agent's Workload API.
    Api {
        #[command(subcommand)]
        command: ApiCommand,
    },
    /// Exit 0 when the agent's Workload API answers.
    Healthcheck(SocketArgs),
    /// Check a config file: unknown or invalid keys are reported as
    /// FILE:LINE:COL: message (exit 1); exit 0 when it is valid.
    Validate(ValidateArgs),
    /// The agent's hash-chained log of Workload API decisions.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the log's chain (and compare it with the server's
    /// checkpoints): exit 0 and a summary, or exit 1 naming the first problem.
    Verify(audit::VerifyArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// The TOML config file to check.
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Fetch credentials once.
    Fetch {
        #[command(subcommand)]
        what: FetchCommand,
    },
    /// Ask the agent's authorization policies (exit 0 allow, 2 deny).
    Authorize(authorize::AuthorizeArgs),
    /// Validate a credential through the agent.
    Validate {
        #[command(subcommand)]
        what: ValidateCommand,
    },
    /// Print every update of the X.509-SVID stream until killed.
    Watch(SocketArgs),
}

#[derive(Debug, Subcommand)]
pub enum ValidateCommand {
    /// Validate a JWT-SVID against an audience.
    Jwt(jwt::ValidateJwtArgs),
}

#[derive(Debug, Subcommand)]
pub enum FetchCommand {
    /// Fetch this process's X.509-SVIDs.
    X509(fetch::FetchX509Args),
    /// Fetch this process's JWT-SVIDs for an audience.
    Jwt(jwt::FetchJwtArgs),
    /// Fetch the JWT bundles (JWKS per trust domain).
    JwtBundle(jwt::FetchJwtBundleArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct SocketArgs {
    /// Workload API socket (else $SPIFFE_ENDPOINT_SOCKET, else the default).
    #[arg(long)]
    pub socket_path: Option<PathBuf>,
}

/// Runs the parsed command; errors print as `Error: <message>`, exit 1
/// (`run`: logged, with the codes of [`exit`]).
pub fn dispatch(cli: Cli) -> ExitCode {
    if let Command::Audit {
        command: AuditCommand::Verify(args),
    } = &cli.command
    {
        return audit::run(args);
    }
    if let Command::Validate(args) = &cli.command {
        return match crate::config::validate_file(&args.config) {
            Ok(()) => {
                println!("{}: configuration is valid", args.config.display());
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("{message}");
                ExitCode::from(1)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let daemon = matches!(cli.command, Command::Run(_));
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::Api { command } => match command {
                ApiCommand::Fetch {
                    what: FetchCommand::X509(args),
                } => fetch::run(args).await,
                ApiCommand::Fetch {
                    what: FetchCommand::Jwt(args),
                } => jwt::fetch(args).await,
                ApiCommand::Fetch {
                    what: FetchCommand::JwtBundle(args),
                } => jwt::fetch_bundle(args).await,
                ApiCommand::Validate {
                    what: ValidateCommand::Jwt(args),
                } => jwt::validate(args).await,
                ApiCommand::Watch(args) => watch::run(args).await,
                ApiCommand::Authorize(args) => authorize::run(args).await,
            },
            Command::Healthcheck(args) => healthcheck::run(args).await,
            Command::Validate(_) | Command::Audit { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `run` logged it already.
        Err(e) if daemon => exit::exit_code(&e),
        // Printed already: the exit code alone says it.
        Err(e) if e.is::<authorize::Denied>() => ExitCode::from(2),
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The daemon: its last error goes to the log (the journal, at priority
/// err) and to systemd's status line before the exit code says what kind it
/// was.
async fn run(args: RunArgs) -> anyhow::Result<()> {
    let result = match RuntimeConfig::from_args(&args) {
        Ok(config) => {
            signet_runtime::logging::init(config.log_json);
            crate::app::run(config, signet_runtime::signals::shutdown()).await
        }
        Err(e) => {
            signet_runtime::logging::init(false);
            Err(e.into())
        }
    };
    if let Err(e) = &result {
        tracing::error!("{e:#}");
        signet_runtime::systemd::status(&format!("failed: {e:#}"));
    }
    result
}
