//! nbshm: an NDIS 6 lightweight filter driver that reports how `NET_BUFFER`s use NDIS shared
//! memory (the `NET_BUFFER_SHARED_MEMORY` chains of VMQ NICs), per adapter and per handle.
//!
//! One crate, three builds (docs/architecture.md):
//! * host (default features): the driver's callbacks run against the user-mode NDIS model in
//!   `host`, with std, for tests and `nbshm-sim`;
//! * `kernel`: `no_std`, the project's own FFI and kernel glue; cross-built on Linux into a real
//!   `nbshm.sys` for x64 and ARM64 (`cargo xtask sys`);
//! * `wdk` (implies `kernel`): the shipped WDK build (`cargo make` on Windows), with
//!   wdk-sys/wdk/wdk-alloc/wdk-panic filling the glue roles.
#![cfg_attr(feature = "kernel", no_std)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used))]
#![cfg_attr(
    test,
    allow(
        clippy::multiple_unsafe_ops_per_block,
        clippy::cast_possible_truncation,
        reason = "unit tests poke at prepared memory and small counts"
    )
)]

pub mod config;
pub mod dbgprint;
pub mod device;
pub mod etw;
pub mod filter;
pub mod names;
#[cfg(feature = "kernel")]
pub mod platform;
pub mod pool;
pub mod shmem;
pub mod stats;
pub mod sync;
pub mod sys;

#[cfg(not(feature = "kernel"))]
pub mod host;
