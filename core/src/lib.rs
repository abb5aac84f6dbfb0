//! Signet's shared vocabulary: SPIFFE IDs, selectors, registration entries,
//! the SVIDs both sides hold, X.509-SVID minting and validation, rotation timing and the `Clock`.
//!
//! No I/O and no async runtime here: the server and the agent bring those.
#![forbid(unsafe_code)]

pub mod audit_chain;
pub mod bundle;
pub mod clock;
pub mod crypto;
pub mod duration;
pub mod entry;
pub mod jwt;
pub mod pem;
pub mod rotation;
pub mod selector;
pub mod spiffe_id;
pub mod svid;
pub mod x509;

pub use clock::{Clock, ManualClock, ShiftedClock, SystemClock};
pub use entry::RegistrationEntry;
pub use selector::{Selector, SelectorError};
pub use spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};
pub use svid::{JwtSvid, X509Svid};
