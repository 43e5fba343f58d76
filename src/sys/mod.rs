//! NDIS 6 ABI facts: types, constants, callback typedefs and the imported functions.
//!
//! One set for every build (host model, Linux cross-build, WDK build). wdk-sys has no NDIS
//! bindings, so these are written by hand from the WDK's names and Microsoft's layouts, and
//! every offset that matters is asserted at compile time in [`layout`].
#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    clippy::upper_case_acronyms,
    reason = "the WDK's C names are kept so that code reads like the documentation"
)]

mod consts;
mod imports;
pub mod layout;
mod types;

pub use consts::*;
pub use imports::*;
pub use types::*;
