//! `[key_manager]`: where the CA and JWT private keys live. On disk in the
//! data dir unless `[key_manager.pkcs11]` names an HSM's token.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use crate::ca::key_manager::pkcs11::Pkcs11Settings;

/// `[key_manager]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyManagerConfig {
    pub pkcs11: Option<Pkcs11Config>,
}

/// `[key_manager.pkcs11]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    pub module_path: PathBuf,
    pub token_label: String,
    pub pin_file: PathBuf,
}

/// The key manager, decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeyManagerSettings {
    /// `<data_dir>/ca`, 0600 files.
    #[default]
    Disk,
    Pkcs11(Pkcs11Settings),
}

impl KeyManagerConfig {
    pub fn decide(self) -> Result<KeyManagerSettings, ConfigError> {
        let Some(p) = self.pkcs11 else {
            return Ok(KeyManagerSettings::Disk);
        };
        if p.token_label.is_empty() {
            return Err(ConfigError::Empty("key_manager.pkcs11.token_label"));
        }
        Ok(KeyManagerSettings::Pkcs11(Pkcs11Settings {
            module_path: p.module_path,
            token_label: p.token_label,
            pin_file: p.pin_file,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FileConfig, RuntimeConfig};
    use super::*;

    #[test]
    fn disk_unless_a_token_is_named_and_its_keys_are_all_required() {
        let c = RuntimeConfig::try_from(FileConfig::parse("").unwrap()).unwrap();
        assert_eq!(c.key_manager, KeyManagerSettings::Disk);
        let c = RuntimeConfig::try_from(
            FileConfig::parse(
                "[key_manager.pkcs11]\nmodule_path = \"/m.so\"\ntoken_label = \"signet\"\npin_file = \"/pin\"",
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            c.key_manager,
            KeyManagerSettings::Pkcs11(Pkcs11Settings {
                module_path: "/m.so".into(),
                token_label: "signet".into(),
                pin_file: "/pin".into(),
            })
        );
        assert!(FileConfig::parse("[key_manager.pkcs11]\nmodule_path = \"/m.so\"").is_err());
        assert!(FileConfig::parse("[key_manager.pkcs11]\nmodule_path = \"/m.so\"\ntoken_label = \"t\"\npin_file = \"/p\"\npin = \"1\"").is_err());
        let empty = FileConfig::parse(
            "[key_manager.pkcs11]\nmodule_path = \"/m.so\"\ntoken_label = \"\"\npin_file = \"/p\"",
        )
        .unwrap();
        assert!(RuntimeConfig::try_from(empty).is_err());
    }
}
