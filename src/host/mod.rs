//! Host-only code (never in a kernel build): the user-mode NDIS model and its helpers.
//!
//! * [`model`]: the stand-in for ndis.sys that drives the driver's callbacks;
//! * [`ndis`], [`kernel`]: the NDIS and kernel functions the driver imports, implemented with
//!   contract checks (they are `#[no_mangle]`, so the driver's `extern` declarations in
//!   `crate::sys` bind to them in the host build);
//! * [`registry`]: the NDIS configuration functions over an in-memory registry;
//! * [`device`]: `NdisRegisterDeviceEx`, the I/O manager's handles, IRPs and `IofCompleteRequest`;
//! * [`packets`]: NBLs and shared-memory chains with ownership tracking;
//! * [`etw`]: the recorder behind the simulated trace session;
//! * [`violations`]: the contract breaches found;
//! * [`inf`]: the INF parser.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc,
    clippy::must_use_candidate,
    reason = "host-only test infrastructure"
)]

pub mod device;
pub mod etw;
pub mod inf;
pub mod kernel;
pub mod model;
pub mod ndis;
pub mod packets;
pub mod registry;
pub mod traffic;
pub mod violations;
