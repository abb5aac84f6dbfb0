//! Carries the cargo-deb metadata of the `signet` Debian package (see
//! Cargo.toml); there is no code here. The daemons are `signet-server` and
//! `signet-agent`.
#![forbid(unsafe_code)]
