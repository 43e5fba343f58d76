//! Host-only code (never in a kernel build): the user-mode NDIS model and its helpers.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "host-only test infrastructure"
)]

pub mod inf;
