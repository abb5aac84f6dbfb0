//! What both daemons need alike and that knows nothing of SPIFFE: bounds on
//! the connections a listener keeps (`conn`), the file-descriptor limit
//! (`rlimit`), directories no other user can swap (`dirs`), files written
//! whole or not at all (`fs`), log lines that cannot flood the journal
//! (`throttle`), per-key token buckets (`ratelimit`), log setup with journal priorities (`logging`),
//! `Type=notify` (`systemd`), gRPC call timing (`rpc`), times as people
//! read them (`time`), the `/live` `/ready` `/metrics` endpoint (`probes`)
//! the signals that stop a daemon (`signals`) and the lower-priority threads
//! for bulk computation (`bulk`).
#![forbid(unsafe_code)]

pub mod bulk;
pub mod conn;
pub mod dirs;
pub mod fs;
pub mod logging;
pub mod probes;
pub mod ratelimit;
pub mod rlimit;
pub mod rpc;
pub mod signals;
pub mod systemd;
pub mod throttle;
pub mod time;
