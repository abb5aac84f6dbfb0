//! Exit codes of `signet-agent run` that a service manager tells apart. The
//! packaged unit restarts the agent on failure but not on these
//! (`RestartPreventExitStatus=77 78`): restarting cannot fix them, and an
//! agent restarting every two seconds would send the same dead token to the
//! server forever while `systemctl start` looked like it had worked.

use std::process::ExitCode;

use crate::attest::node::NodeAttestError;
use crate::config::ConfigError;

/// Attestation needs an admin: a new join token (none given, used, expired),
/// a banned or evicted agent, a host certificate the server refuses
/// (sysexits' EX_NOPERM).
pub const NEEDS_NEW_CREDENTIALS: u8 = 77;
/// The configuration is wrong: an invalid file or flag, an unreadable trust
/// bundle or host certificate (EX_CONFIG).
pub const CONFIGURATION: u8 = 78;
/// Anything else, transient or not (the server unreachable, a full disk).
pub const FAILURE: u8 = 1;

/// The code for the error that ended `run`.
pub fn code_for(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<ConfigError>().is_some() {
        return CONFIGURATION;
    }
    match error.downcast_ref::<NodeAttestError>() {
        Some(e) if e.needs_new_credentials() => NEEDS_NEW_CREDENTIALS,
        Some(e) if e.is_configuration() => CONFIGURATION,
        _ => FAILURE,
    }
}

pub fn exit_code(error: &anyhow::Error) -> ExitCode {
    ExitCode::from(code_for(error))
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    fn code(e: NodeAttestError) -> u8 {
        code_for(
            &Err::<(), _>(e)
                .context("node attestation failed")
                .unwrap_err(),
        )
    }

    #[test]
    fn refusals_and_a_missing_token_stop_restarts_while_the_network_does_not() {
        assert_eq!(code(NodeAttestError::NoToken("/var/lib".into())), 77);
        for refused in [
            tonic::Code::PermissionDenied,
            tonic::Code::Unauthenticated,
            tonic::Code::InvalidArgument,
        ] {
            let e = NodeAttestError::Refused {
                code: refused,
                message: "join token not found".into(),
            };
            assert_eq!(code(e), 77, "{refused:?}");
        }
        for transient in [tonic::Code::Unavailable, tonic::Code::Internal] {
            let e = NodeAttestError::Refused {
                code: transient,
                message: "busy".into(),
            };
            assert_eq!(code(e), 1, "{transient:?}");
        }
        assert_eq!(code(NodeAttestError::Protocol("closed".into())), 1);
        assert_eq!(code(NodeAttestError::NoBundle), 78);
        let config = anyhow::Error::new(ConfigError::Empty("trust_domain"));
        assert_eq!(code_for(&config), 78);
        assert_eq!(code_for(&anyhow::anyhow!("disk full")), 1);
    }
}
