//! The systemd units in packaging/systemd/ pass `systemd-analyze verify`
//! with the binaries this build produced in place of /usr/bin. Without
//! systemd-analyze the test fails saying what to install (.ci/run installs it).
//! Booting them for real is `packaging/check-boot` (run by .ci/run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use signet_tests::bins::bins;

#[test]
fn both_units_pass_systemd_analyze_verify() {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "systemd-analyze is missing: install it with `apt-get install systemd` (.ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let units = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/systemd");
    let mut paths = Vec::new();
    for (unit, bin) in [
        ("signet-server.service", &bins().server),
        ("signet-agent.service", &bins().agent),
    ] {
        let text = std::fs::read_to_string(format!("{units}/{unit}")).unwrap();
        let name = unit.trim_end_matches(".service");
        assert!(text.contains(&format!(
            "ExecStart=/usr/bin/{name} run --config /etc/signet/"
        )));
        assert!(
            text.contains("Type=notify"),
            "{unit} uses sd_notify readiness"
        );
        assert!(text.contains("NoNewPrivileges=yes") && text.contains("ProtectSystem=strict"));
        let local = text.replace(&format!("/usr/bin/{name}"), bin.to_str().unwrap());
        let path = dir.path().join(unit);
        std::fs::write(&path, local).unwrap();
        paths.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned: {stderr}"
    );
}

/// The exit codes the daemons give for what a restart cannot fix are the
/// ones the units refuse to restart on.
#[test]
fn units_do_not_restart_on_the_exit_codes_that_need_an_admin() {
    let units = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/systemd");
    let line = |unit: &str| {
        std::fs::read_to_string(format!("{units}/{unit}"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("RestartPreventExitStatus="))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    use signet_agent::cli::exit;
    assert_eq!(
        line("signet-agent.service"),
        format!("{} {}", exit::NEEDS_NEW_CREDENTIALS, exit::CONFIGURATION)
    );
    assert_eq!(
        line("signet-server.service"),
        signet_server::cli::EXIT_CONFIGURATION.to_string()
    );
}
