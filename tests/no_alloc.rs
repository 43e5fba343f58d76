//! The data path allocates nothing: a counting global allocator sees no allocation by driver
//! code, and the driver makes no pool allocation, during sends, send completions, receives
//! (with and without RESOURCES), returns, the paused paths, and with ETW verbose events on.
//! Model code (the NDIS exports, the model's own bookkeeping, the ETW recorder) marks itself with
//! `host::kernel::ModelScope`; allocations made there are the model's, not the driver's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use nbshm::host::kernel::{POOL_ALLOCATIONS, in_model};
use nbshm::host::model::{Model, ModelOptions};
use nbshm::host::packets::{ChainSpec, NbSpec, NblSpec, SegmentSpec};
use nbshm::sys::*;

struct Counting;

static DRIVER_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if MEASURING.with(Cell::get) && !in_model() {
            DRIVER_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's layout contract is forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if MEASURING.with(Cell::get) && !in_model() {
            DRIVER_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn batch(n: usize) -> Vec<NblSpec> {
    (0..n)
        .map(|i| NblSpec {
            nbs: vec![NbSpec {
                data_length: 1514,
                chain: ChainSpec::List(vec![
                    SegmentSpec { handle: 0x1_0000 + (i % 4) * 0x1000, offset: 0, length: 128, flags: 0 },
                    SegmentSpec { handle: 0x1_0000 + (i % 4) * 0x1000, offset: 4096, length: 1386, flags: 0 },
                ]),
            }],
        })
        .collect()
}

/// Runs `f` with driver allocations counted; returns (driver heap allocations, pool allocations).
fn measure(f: impl FnOnce()) -> (u64, u64) {
    let heap = DRIVER_ALLOCATIONS.load(Ordering::Relaxed);
    let pool = POOL_ALLOCATIONS.load(Ordering::Relaxed);
    MEASURING.with(|m| m.set(true));
    f();
    MEASURING.with(|m| m.set(false));
    (DRIVER_ALLOCATIONS.load(Ordering::Relaxed) - heap, POOL_ALLOCATIONS.load(Ordering::Relaxed) - pool)
}

#[test]
fn the_data_path_allocates_nothing() {
    // Synchronous completion: the completion and return callbacks run inside the measured calls.
    let mut m = Model::new(ModelOptions { asynchronous: false, ..ModelOptions::default() });
    assert_eq!(m.load(), 0);
    let (i, _) = m.add_miniport("NIC");
    assert_eq!(m.restart(i), 0);
    let valid = NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID;
    // The specs are built before measuring (building them is the test's allocation, not the
    // driver's); each call moves one in.
    let traffic = |m: &Model| {
        let mut specs: Vec<Vec<NblSpec>> =
            [1, 16, 64].iter().flat_map(|n| [batch(*n), batch(*n), batch(*n), batch(*n)]).collect();
        specs.reverse();
        let (heap, pool) = measure(|| {
            for _ in 0..3 {
                m.send(i, specs.pop().unwrap(), NDIS_SEND_FLAGS_DISPATCH_LEVEL, 0).unwrap();
                m.send(i, specs.pop().unwrap(), 0, 0).unwrap();
                m.indicate(i, specs.pop().unwrap(), valid, 0).unwrap();
                m.indicate(
                    i,
                    specs.pop().unwrap(),
                    valid | NDIS_RECEIVE_FLAGS_RESOURCES | NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL,
                    0,
                )
                .unwrap();
            }
        });
        assert!(specs.is_empty());
        (heap, pool)
    };
    // Proof that the counter counts: an allocation outside model scope is seen.
    let (heap, _) = measure(|| drop(std::hint::black_box(vec![0u8; 64])));
    assert_eq!(heap, 1, "the counting allocator sees driver-side allocations");

    assert_eq!(traffic(&m), (0, 0), "running, no session");
    nbshm::host::etw::enable(5, u64::MAX, 0);
    assert_eq!(traffic(&m), (0, 0), "running, verbose session on every keyword");
    nbshm::host::etw::disable();
    m.pause_filter_only(i);
    assert_eq!(traffic(&m), (0, 0), "paused: rejected sends and returned receives");
    assert_eq!(m.restart(i), 0);
    assert!(m.quiesce());
    m.unload();
    assert_eq!(m.violations(), vec![]);
}
