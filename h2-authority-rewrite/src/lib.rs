//! Makes an h2 server accept what grpcio sends as `:authority`.
//!
//! grpcio >= 1.57 (so py-spiffe 0.3) puts the Unix socket path,
//! percent-encoded, in the HTTP/2 `:authority` pseudo-header; the h2 crate
//! (under tonic and hyper) refuses that as malformed (hyperium/h2#487) and
//! resets the stream before any server code runs. [`RewritingStream`] wraps
//! the server's side of a connection and re-encodes the client's header
//! blocks, replacing an `:authority` that is not a valid URI authority with
//! `localhost`. Every other frame, and the whole server-to-client direction,
//! passes through untouched.
//!
//! The day h2 accepts such an `:authority`, `tests/canary.rs` fails: this
//! crate can then be deleted.

mod frames;
mod hpack;
mod huffman;
mod stream;

pub use frames::{refusal, RelayError, Rewriter, MAX_FRAME, MAX_HEADER_LIST};
pub use stream::RewritingStream;

/// What the fuzz targets in `fuzz/` reach besides the public API: the HPACK
/// decoder, checked against another implementation.
#[cfg(fuzzing)]
pub mod fuzzing {
    pub use crate::hpack::Decoder as HpackDecoder;
}
