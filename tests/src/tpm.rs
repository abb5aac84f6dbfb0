//! A software TPM of the test's own: Debian's `swtpm` on a free local port
//! pair (commands, then control), its state in a temp dir, provisioned with
//! `tpm2-tools` as an owner would: an EK, an SRK, and an attestation key
//! at persistent handles, the key's certificate from an owner CA. The tools
//! are also the independent reader (EK hash, PCR values) and the stand-in
//! for a TPM that tries to answer a challenge sealed for another.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use rcgen::{CertificateParams, DnType, Issuer, KeyUsagePurpose, SubjectPublicKeyInfo};
use sha2::{Digest, Sha256};
use signet_core::{Clock, SystemClock};
use tempfile::TempDir;

use crate::x509pop::OrgCa;

pub const EK_HANDLE: &str = "0x81010001";
pub const SRK_HANDLE: &str = "0x81000001";
pub const KEY_HANDLE: &str = "0x81010002";

pub struct SoftTpm {
    dir: TempDir,
    pub port: u16,
    child: Child,
}

impl SoftTpm {
    /// A fresh TPM, answering.
    pub async fn start() -> SoftTpm {
        for _ in 0..20 {
            let port = free_port_pair();
            let dir = tempfile::Builder::new().prefix("tpm").tempdir().unwrap();
            std::fs::create_dir(dir.path().join("state")).unwrap();
            let child = Command::new("swtpm")
                .args(["socket", "--tpm2"])
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .arg("--tpmstate")
                .arg(format!("dir={}", dir.path().join("state").display()))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("swtpm (apt-get install swtpm swtpm-tools tpm2-tools)");
            let mut tpm = SoftTpm { dir, port, child };
            if tpm.wait_ready().await {
                return tpm;
            }
        }
        panic!("swtpm did not start on any port tried");
    }

    /// Up to 10 s for the TPM to answer; false if swtpm exited (its
    /// port was taken meanwhile).
    async fn wait_ready(&mut self) -> bool {
        for _ in 0..500 {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            let probe = self.tool("tpm2_getcap").arg("properties-fixed").output();
            if probe.is_ok_and(|o| o.status.success()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// The TCTI string the agent and the tools use.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A tpm2-tools command on this TPM, run in its dir.
    pub fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(name);
        c.env("TPM2TOOLS_TCTI", self.tcti())
            .env("TSS2_LOG", "all+none")
            .current_dir(self.dir.path());
        c
    }

    fn run(&self, name: &str, args: &[&str]) -> Output {
        let out = self.tool(name).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{name} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// EK (RSA 2048, default template), SRK, and an ECC P-256 signing key
    /// made in the TPM at [`KEY_HANDLE`] (`restricted`: an AK, whose
    /// quotes can be trusted); flushed after each step, as there is no
    /// resource manager. Returns the key's public PEM.
    pub fn provision(&self, restricted: bool) -> PathBuf {
        self.run(
            "tpm2_createek",
            &["-c", EK_HANDLE, "-G", "rsa", "-u", "ek.pub"],
        );
        self.run(
            "tpm2_createprimary",
            &[
                "-C",
                "o",
                "-g",
                "sha256",
                "-G",
                "ecc256:null:aes128cfb",
                "-c",
                "srk.ctx",
            ],
        );
        self.run(
            "tpm2_evictcontrol",
            &["-C", "o", "-c", "srk.ctx", SRK_HANDLE],
        );
        self.run("tpm2_flushcontext", &["-t"]);
        let attributes = if restricted {
            "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign"
        } else {
            "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign"
        };
        self.run(
            "tpm2_create",
            &[
                "-C",
                SRK_HANDLE,
                "-g",
                "sha256",
                "-G",
                "ecc256:ecdsa-sha256:null",
                "-a",
                attributes,
                "-u",
                "key.pub",
                "-r",
                "key.priv",
            ],
        );
        self.run(
            "tpm2_load",
            &[
                "-C", SRK_HANDLE, "-u", "key.pub", "-r", "key.priv", "-c", "key.ctx",
            ],
        );
        self.run(
            "tpm2_evictcontrol",
            &["-C", "o", "-c", "key.ctx", KEY_HANDLE],
        );
        self.run("tpm2_flushcontext", &["-t"]);
        self.run(
            "tpm2_readpublic",
            &["-c", KEY_HANDLE, "-f", "pem", "-o", "key.pem"],
        );
        self.path("key.pem")
    }

    /// SHA-256 of the EK's SubjectPublicKeyInfo DER, as tpm2-tools gives it.
    pub fn ek_hash(&self) -> String {
        self.run(
            "tpm2_readpublic",
            &["-c", EK_HANDLE, "-f", "der", "-o", "ek.der"],
        );
        hex::encode(Sha256::digest(std::fs::read(self.path("ek.der")).unwrap()))
    }

    /// Extends PCR `index` (SHA-256 bank) with SHA-256(`measurement`);
    /// returns the PCR's new value as `tpm2_pcrread` shows it.
    pub fn extend_pcr(&self, index: u32, measurement: &[u8]) -> String {
        let digest = hex::encode(Sha256::digest(measurement));
        self.run("tpm2_pcrextend", &[&format!("{index}:sha256={digest}")]);
        self.pcr(index)
    }

    /// PCR `index` of the SHA-256 bank, lowercase hex.
    pub fn pcr(&self, index: u32) -> String {
        let out = self.run("tpm2_pcrread", &[&format!("sha256:{index}")]);
        let text = String::from_utf8_lossy(&out.stdout);
        let value = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{index}:")))
            .unwrap_or_else(|| panic!("no PCR {index} in {text}"));
        value.trim().trim_start_matches("0x").to_ascii_lowercase()
    }

    /// `tpm2_activatecredential` on this TPM's key and EK, for a challenge
    /// sealed by the server: the recovered credential, or the TPM's refusal.
    pub fn activate_credential(&self, id_object: &[u8], secret: &[u8]) -> Result<Vec<u8>, String> {
        // tpm2-tools' blob: magic, version, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
        let mut blob = vec![0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1];
        for part in [id_object, secret] {
            blob.extend_from_slice(&(part.len() as u16).to_be_bytes());
            blob.extend_from_slice(part);
        }
        std::fs::write(self.path("cred.blob"), blob).unwrap();
        self.run(
            "tpm2_startauthsession",
            &["--policy-session", "-S", "session.ctx"],
        );
        self.run("tpm2_policysecret", &["-S", "session.ctx", "-c", "e"]);
        let out = self
            .tool("tpm2_activatecredential")
            .args([
                "-c",
                KEY_HANDLE,
                "-C",
                EK_HANDLE,
                "-i",
                "cred.blob",
                "-o",
                "cred.out",
            ])
            .args(["-P", "session:session.ctx"])
            .output()
            .unwrap();
        let _ = self.tool("tpm2_flushcontext").arg("session.ctx").output();
        let _ = self.tool("tpm2_flushcontext").arg("-s").output();
        if out.status.success() {
            Ok(std::fs::read(self.path("cred.out")).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for SoftTpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port `p` with `p + 1` free too (swtpm's control channel).
fn free_port_pair() -> u16 {
    loop {
        let Ok(first) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = first.local_addr().map(|a| a.port()) else {
            continue;
        };
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// The owner CA's certificate for the TPM key in `key_pem` (DevID/AK).
pub fn key_certificate(ca: &OrgCa, key_pem: &Path, cn: &str) -> Vec<u8> {
    let public =
        SubjectPublicKeyInfo::from_pem(&std::fs::read_to_string(key_pem).unwrap()).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = SystemClock.now();
    p.not_before = (now - Duration::from_secs(60)).into();
    p.not_after = (now + Duration::from_secs(86400)).into();
    let issuer = Issuer::from_ca_cert_der(ca.cert.der(), &ca.key).unwrap();
    p.signed_by(&public, &issuer).unwrap().der().to_vec()
}
