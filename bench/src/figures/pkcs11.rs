//! `pkcs11_issue_ratio` (issue 20): the issuing figure with the server's CA
//! key in a SoftHSM2 token over PKCS#11, beside `issue_ratio` with the key
//! on disk. The raw side is the same software signing as there, so the
//! ratio shows what the token's signing path costs.

use anyhow::Context;

use super::{issue, Ctx};
use crate::env::{start_agent_at, start_server_configured};
use crate::report::Report;
use signet_server::ca::key_manager::pkcs11::Pkcs11Settings;
use signet_server::config::KeyManagerSettings;
use signet_tests::softhsm::SoftHsm;

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let hsm = tokio::task::spawn_blocking(|| SoftHsm::new("signet-bench"))
        .await
        .context("initialising a SoftHSM2 token")?;
    // SoftHSM reads its config's location when the module initialises,
    // which is when the server below opens the token.
    std::env::set_var("SOFTHSM2_CONF", hsm.conf());
    let dir = ctx.dir.join("pkcs11");
    let settings = Pkcs11Settings {
        module_path: hsm.module.clone(),
        token_label: hsm.label.clone(),
        pin_file: hsm.pin_file(),
    };
    let server = start_server_configured(&dir, |config| {
        config.key_manager = KeyManagerSettings::Pkcs11(settings);
        Ok(())
    })
    .await?;
    let agent = start_agent_at(&server, &server.node_addr(), &dir).await?;
    let hsm_ctx = Ctx {
        server,
        agent,
        dir,
        quick: ctx.quick,
        workload_id: ctx.workload_id.clone(),
        selector: ctx.selector.clone(),
    };
    report.set_prefix("pkcs11_");
    let measured = issue::run(&hsm_ctx, report).await;
    report.set_prefix("");
    measured?;
    hsm_ctx.agent.stop().await;
    hsm_ctx.server.running.stop().await;
    Ok(())
}
