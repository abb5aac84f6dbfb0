//! A SoftHSM2 token of the test's own (Debian's `softhsm2`): its own config
//! file and token directory, initialised by `softhsm2-util`, for servers
//! whose CA keys live in it. OpenSC's `pkcs11-tool`, a client independent
//! of ours, lists what the token holds.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

const PIN: &str = "81726354";
const MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
];

/// An object as `pkcs11-tool` shows it: class (`Private Key`, `Public
/// Key`, ...), label, and its usage and access flags as words.
#[derive(Debug, Default, Clone)]
pub struct TokenObject {
    pub class: String,
    pub label: String,
    pub usage: String,
    pub access: String,
}

pub struct SoftHsm {
    dir: TempDir,
    pub module: PathBuf,
    pub label: String,
}

impl SoftHsm {
    /// A fresh, initialised token labelled `label`.
    pub fn new(label: &str) -> SoftHsm {
        let module = MODULES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("SoftHSM2 is not installed: apt-get install softhsm2 opensc");
        let dir = tempfile::Builder::new().prefix("hsm").tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        let pin_file = dir.path().join("pin");
        signet_runtime::fs::write_atomic(&pin_file, format!("{PIN}\n").as_bytes(), 0o600).unwrap();
        let hsm = SoftHsm {
            dir,
            module,
            label: label.to_owned(),
        };
        let out = hsm
            .command("softhsm2-util")
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", PIN, "--so-pin", "1029384756"])
            .output()
            .expect("softhsm2-util (apt-get install softhsm2)");
        assert!(out.status.success(), "softhsm2-util --init-token: {out:?}");
        hsm
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    pub fn pin_file(&self) -> PathBuf {
        self.dir.path().join("pin")
    }

    /// The prefix a server runs under to find this token.
    pub fn env_prefix(&self) -> Vec<String> {
        vec![
            "env".into(),
            format!("SOFTHSM2_CONF={}", self.conf().display()),
        ]
    }

    /// A server config file (in `dir`) keeping its keys in this token.
    pub fn server_config(&self, dir: &Path) -> PathBuf {
        let path = dir.join("server-pkcs11.toml");
        std::fs::write(
            &path,
            format!(
                "[key_manager.pkcs11]\nmodule_path = {:?}\ntoken_label = {:?}\npin_file = {:?}\n",
                self.module.display().to_string(),
                self.label,
                self.pin_file().display().to_string()
            ),
        )
        .unwrap();
        path
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SOFTHSM2_CONF", self.conf());
        c
    }

    /// Every object on the token, as `pkcs11-tool --list-objects` prints
    /// them after login.
    pub fn objects(&self) -> Vec<TokenObject> {
        let out = self
            .command("pkcs11-tool")
            .arg("--module")
            .arg(&self.module)
            .args(["--token-label", &self.label, "--login", "--pin", PIN])
            .arg("--list-objects")
            .output()
            .expect("pkcs11-tool (apt-get install opensc)");
        assert!(out.status.success(), "pkcs11-tool --list-objects: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut objects: Vec<TokenObject> = Vec::new();
        for line in text.lines() {
            if let Some((class, _)) = line.split_once(" Object;") {
                objects.push(TokenObject {
                    class: class.trim().to_owned(),
                    ..TokenObject::default()
                });
            } else if let (Some(o), Some((key, value))) = (objects.last_mut(), line.split_once(':'))
            {
                let value = value.trim().to_owned();
                match key.trim() {
                    "label" => o.label = value,
                    "Usage" => o.usage = value,
                    "Access" => o.access = value,
                    _ => {}
                }
            }
        }
        objects
    }

    /// The labels of the private keys on the token.
    pub fn private_key_labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = self
            .objects()
            .into_iter()
            .filter(|o| o.class == "Private Key")
            .map(|o| o.label)
            .collect();
        labels.sort();
        labels
    }
}
