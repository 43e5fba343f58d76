//! The NDIS 6 lightweight filter: registration, the module lifecycle and the data path.
//!
//! Registered handlers (NDIS 6.30, characteristics revision 2): Attach, Detach, Restart, Pause
//! (mandatory); Send and SendComplete, Receive and Return (the data path, all pass-through);
//! Status (pass-through, as the docs ask of a driver with a receive handler). Everything else is
//! NULL so that NDIS handles it itself: OIDs are forwarded by NDIS (more efficiently than a
//! clone-and-forward filter), PnP events pass, and no cancel handler is needed because nothing
//! is ever queued.

#[cfg(not(feature = "kernel"))]
#[doc(hidden)]
pub mod bench;
mod datapath;
mod driver;
mod lifecycle;
pub mod module;
pub mod registry;
mod timer;

pub use driver::{
    DRIVER_MAJOR, DRIVER_MINOR, DRIVER_VERSION, characteristics, driver_entry, driver_unload,
    for_each_module, for_each_module_summary, module_count, rearm_usage_timers, rundown, with_module,
};
