//! Benchmark and test support (host build only): a module context outside NDIS, to measure the
//! data path's accounting on its own, with the driver's real code.

use core::ptr::NonNull;

use super::datapath;
use super::module::{FilterModule, ModuleSummary};
use crate::stats::Direction;
use crate::sys::PNET_BUFFER_LIST;

/// A filter module that no NDIS instance knows about (allocated from the model's pool).
#[derive(Debug)]
pub struct BenchModule(NonNull<FilterModule>);

impl BenchModule {
    /// A module with `cpus` statistics slots and a handle table of `handles` entries (a power
    /// of two).
    #[must_use]
    pub fn new(cpus: usize, handles: usize) -> Option<Self> {
        FilterModule::allocate(u32::MAX, core::ptr::null_mut(), cpus, handles).map(Self)
    }

    /// What the data path does with a chain before it passes it on (count, walk if `walk`,
    /// account per CPU and per handle, events if a session listens). Returns the NBL count.
    ///
    /// # Safety
    /// As the data path's: `nbls` is a NULL-terminated chain readable for the call, and with
    /// `walk` every `SharedMemoryInfo` slot holds a valid shared-memory chain.
    /// `at_dispatch` says what a callback's DISPATCH flag would (per-CPU plain stores vs shared
    /// atomic adds).
    pub unsafe fn account(
        &self,
        dir: Direction,
        nbls: PNET_BUFFER_LIST,
        walk: bool,
        at_dispatch: bool,
    ) -> u64 {
        // SAFETY: the module is live until drop.
        let module = unsafe { self.0.as_ref() };
        // SAFETY: the chain contract is the caller's.
        unsafe { datapath::account(module, dir, nbls, walk, at_dispatch) }
    }

    /// The module's statistics.
    #[must_use]
    pub fn summary(&self) -> ModuleSummary {
        // SAFETY: live until drop.
        unsafe { self.0.as_ref() }.summary()
    }
}

impl Drop for BenchModule {
    fn drop(&mut self) {
        // SAFETY: allocated by `new`, never registered anywhere, no timer allocated.
        unsafe { FilterModule::free(self.0) };
    }
}
