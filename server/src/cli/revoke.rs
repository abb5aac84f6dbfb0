//! `signet-server revoke x509 --serial HEX | jwt --jti ID [--reason R]`.

use clap::Subcommand;
use signet_proto::admin::{RevokeJwtSvidRequest, RevokeX509SvidRequest};

use super::client::{connect, status_error};
use super::{rfc3339, AdminArgs};

#[derive(Debug, Subcommand)]
pub enum RevokeCommand {
    /// Revokes one X.509-SVID by serial; it is published in its CA's CRL.
    X509 {
        #[command(flatten)]
        admin: AdminArgs,
        /// Hex serial number (colons and case ignored).
        #[arg(long)]
        serial: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Revokes one JWT-SVID by jti; every agent refuses it from then on.
    Jwt {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        jti: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

impl RevokeCommand {
    /// Prints `Revoked <serial|jti> until <RFC3339>`.
    pub async fn run(self) -> anyhow::Result<()> {
        let (what, expires_at) = match self {
            RevokeCommand::X509 {
                admin,
                serial,
                reason,
            } => {
                let r = connect(&admin.admin_socket)
                    .await?
                    .revoke_x509_svid(RevokeX509SvidRequest {
                        serial: serial.clone(),
                        reason,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                (serial.replace(':', "").to_ascii_lowercase(), r.expires_at)
            }
            RevokeCommand::Jwt { admin, jti, reason } => {
                let r = connect(&admin.admin_socket)
                    .await?
                    .revoke_jwt_svid(RevokeJwtSvidRequest {
                        jti: jti.clone(),
                        reason,
                        expires_at: 0,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                (jti, r.expires_at)
            }
        };
        println!("Revoked {what} until {}", rfc3339(expires_at));
        Ok(())
    }
}
