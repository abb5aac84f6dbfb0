//! Makes the Workload API accept what grpcio sends as `:authority`.
//!
//! grpcio >= 1.57 (so py-spiffe 0.3) puts the Unix socket path,
//! percent-encoded, in the HTTP/2 `:authority` pseudo-header; the h2 crate
//! under tonic refuses that as malformed (hyperium/h2#487) and resets the
//! stream before any of our code runs. Each accepted connection therefore
//! goes through a relay that re-encodes the client's header blocks,
//! replacing an `:authority` that is not a valid URI authority with
//! `localhost`. Every other frame, and the whole server-to-client
//! direction, passes through untouched. The socket's peer credentials are
//! taken before relaying, so workload attestation is unchanged.

mod frames;
mod hpack;
mod huffman;
mod relay;

pub use frames::{RelayError, Rewriter, MAX_HEADER_LIST};
#[doc(hidden)]
pub use hpack::Decoder as HpackDecoder;
pub use relay::{refuse, relay, RelayedStream, WorkloadPeer};
