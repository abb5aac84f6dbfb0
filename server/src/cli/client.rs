//! The Admin API client over the admin Unix socket, and the healthcheck.

use std::path::Path;
use std::process::ExitCode;

use signet_proto::admin::admin_client::AdminClient;
use signet_proto::admin::HealthRequest;
use tonic::transport::Channel;

/// Connects to the server's admin socket.
pub async fn connect(path: &Path) -> anyhow::Result<AdminClient<Channel>> {
    // The default under /tmp (no root, no $XDG_RUNTIME_DIR): anyone could
    // have made that directory first, so only one of our own is trusted.
    if path.starts_with("/tmp") && path == crate::config::default_admin_socket() {
        if let Some(dir) = path.parent().filter(|d| d.exists()) {
            signet_runtime::dirs::check_own_dir(dir)?;
        }
    }
    let channel = signet_proto::uds::channel(path).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to the admin socket {}: {}",
            path.display(),
            error_chain(&e)
        )
    })?;
    Ok(AdminClient::new(channel))
}

/// A server's answer as an error: just its message, as the CLI prints it.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", status.message())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// `Server is healthy.` and exit 0, or why not and exit 1.
pub async fn healthcheck(path: &Path) -> anyhow::Result<ExitCode> {
    let answer = match connect(path).await {
        Ok(mut client) => client
            .health(HealthRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|s| s.message().to_owned()),
        Err(e) => Err(e.to_string()),
    };
    match answer {
        Ok(health) if health.serving => {
            println!("Server is healthy.");
            if !health.warning.is_empty() {
                eprintln!("Warning: {}", health.warning);
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(health) => {
            eprintln!("Server is unhealthy: it reports that it is not serving");
            if !health.warning.is_empty() {
                eprintln!("{}", health.warning);
            }
            Ok(ExitCode::FAILURE)
        }
        Err(why) => {
            eprintln!("Server is unhealthy: {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}
