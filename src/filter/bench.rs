//! Benchmark and test support (host build only): a module context outside NDIS, to measure the
//! data path's accounting on its own, with the driver's real code.

use core::ptr::NonNull;

use super::datapath;
use super::module::{FilterModule, ModuleSummary};
use crate::shmem::{SegmentWalker, net_buffer_list_first_nb, net_buffer_list_next_nbl, net_buffer_next_nb};
use crate::stats::{BatchCounts, Direction};
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

/// The walker alone over a chain, with the same counts as the C floor (`tools/cwalk`) and none
/// of the driver's per-CPU or per-handle accounting: what the benchmark and the callgrind
/// workload compare with the C walk.
///
/// # Safety
/// `nbls` is a NULL-terminated chain readable for the call, and every `SharedMemoryInfo` slot
/// holds a valid shared-memory chain.
#[must_use]
#[inline]
pub unsafe fn walk_only(nbls: PNET_BUFFER_LIST, bound: u32) -> BatchCounts {
    let mut b = BatchCounts::default();
    let mut nbl = nbls;
    while !nbl.is_null() {
        b.nbls += 1;
        // SAFETY: a live NBL of the caller's chain.
        let mut nb = unsafe { net_buffer_list_first_nb(nbl) };
        while !nb.is_null() {
            b.net_buffers += 1;
            // SAFETY: a live NET_BUFFER whose slot holds a valid chain (caller's guarantee).
            let mut w = unsafe { SegmentWalker::for_net_buffer(nb, bound) };
            let mut bytes = 0u64;
            for s in w.by_ref() {
                bytes += u64::from(s.length);
            }
            b.add_chain(w.walked(), bytes, w.anomalies());
            // SAFETY: as above.
            nb = unsafe { net_buffer_next_nb(nb) };
        }
        // SAFETY: as above.
        nbl = unsafe { net_buffer_list_next_nbl(nbl) };
    }
    b
}
