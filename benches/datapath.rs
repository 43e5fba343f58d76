//! Criterion benchmarks of the data path (docs/performance.md has the figures and ratios):
//!
//! * `walk/{0,1,4,16}seg`: one NET_BUFFER with N segments: the Rust walker alone, the driver's
//!   walk + account (`BenchModule::account`), and the C walk with the WDK macros (the floor);
//! * `chain64`: 64 NBLs of one NET_BUFFER and one segment: C walk, Rust walk only, Rust walk +
//!   account (statistics and handle table on), count only (walk off);
//! * `etw64`: walk + account with no session vs a verbose session on every keyword (the model's
//!   recorder, events discarded);
//! * `callbacks`: FilterSendNetBufferLists + FilterSendNetBufferListsComplete and
//!   FilterReceiveNetBufferLists + FilterReturnNetBufferLists through a lean model (no checking
//!   or allocation in the NDIS stand-ins), batches of 1, 16, 64, with and without the walk.

#![allow(clippy::cast_possible_truncation, clippy::many_single_char_names, reason = "benchmark set-up")]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nbshm::config::{CONFIG, Keyword};
use nbshm::filter::bench::{BenchModule, walk_only};
use nbshm::host::etw as recorder;
use nbshm::host::model::{Model, ModelOptions};
use nbshm::host::packets::{self, ChainSpec, ModelNbl, NbSpec, NblSpec, SegmentSpec};
use nbshm::shmem::ADDRESS_FLOOR;
use nbshm::stats::Direction;
use nbshm::sys::{
    NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL, NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID,
    NDIS_RETURN_FLAGS_DISPATCH_LEVEL, NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL,
    NDIS_SEND_FLAGS_DISPATCH_LEVEL, NET_BUFFER_LIST,
};
use nbshm_cwalk::{CCounts, c_walk};

/// `nbls` NBLs of one NET_BUFFER with `segments` segments each (0: no shared memory), spread
/// over `handles` shared-memory allocations (a VMQ queue's receive buffers come from a few). The
/// chain lives until the process ends (benchmarks reuse it).
fn chain(nbls: usize, segments: usize, handles: usize) -> *mut NET_BUFFER_LIST {
    let specs: Vec<Box<ModelNbl>> = (0..nbls)
        .map(|i| {
            let segs: Vec<SegmentSpec> = (0..segments)
                .map(|s| SegmentSpec {
                    handle: 0x1_0000 + (i % handles) * 0x1000,
                    offset: (i * 2048 + s * 96) as u32,
                    length: if segments == 1 { 1514 } else { 96 },
                    flags: 0,
                })
                .collect();
            let chain = if segments == 0 { ChainSpec::None } else { ChainSpec::List(segs) };
            ModelNbl::build(
                i as u64,
                0,
                Direction::Receive,
                NblSpec { nbs: vec![NbSpec { data_length: 1514, chain }] },
            )
        })
        .collect();
    packets::chain(specs)
}

fn bench_walk(c: &mut Criterion) {
    let module = BenchModule::new(2, 256).expect("pool");
    let bound = CONFIG.max_segments();
    let mut g = c.benchmark_group("walk");
    g.throughput(Throughput::Elements(1));
    for segments in [0usize, 1, 4, 16] {
        let head = chain(1, segments, 1);
        g.bench_with_input(BenchmarkId::new("c_macros", format!("{segments}seg")), &head, |b, &h| {
            b.iter(|| {
                let mut counts = CCounts::default();
                // SAFETY: a live chain of well-formed segments.
                unsafe { c_walk(black_box(h).cast(), bound, ADDRESS_FLOOR, true, &mut counts) };
                black_box(counts)
            });
        });
        g.bench_with_input(BenchmarkId::new("rust_walker", format!("{segments}seg")), &head, |b, &h| {
            // SAFETY: a live chain of well-formed segments.
            b.iter(|| black_box(unsafe { walk_only(black_box(h), bound) }));
        });
        g.bench_with_input(
            BenchmarkId::new("rust_walk_account", format!("{segments}seg")),
            &head,
            |b, &h| {
                // SAFETY: a live chain of well-formed segments.
                b.iter(|| black_box(unsafe { module.account(Direction::Receive, black_box(h), true, true) }));
            },
        );
    }
    g.finish();
}

fn bench_chain64(c: &mut Criterion) {
    let module = BenchModule::new(2, 256).expect("pool");
    let bound = CONFIG.max_segments();
    let head = chain(64, 1, 1);
    let head4 = chain(64, 1, 4);
    let mut g = c.benchmark_group("chain64");
    g.throughput(Throughput::Elements(64));
    g.bench_function("c_macros", |b| {
        b.iter(|| {
            let mut counts = CCounts::default();
            // SAFETY: a live chain of well-formed segments.
            unsafe { c_walk(black_box(head).cast(), bound, ADDRESS_FLOOR, true, &mut counts) };
            black_box(counts)
        });
    });
    g.bench_function("rust_walk_only", |b| {
        // SAFETY: a live chain of well-formed segments.
        b.iter(|| black_box(unsafe { walk_only(black_box(head), bound) }));
    });
    g.bench_function("rust_walk_account", |b| {
        // SAFETY: a live chain of well-formed segments.
        b.iter(|| black_box(unsafe { module.account(Direction::Receive, black_box(head), true, true) }));
    });
    g.bench_function("rust_walk_account_4handles", |b| {
        // SAFETY: a live chain of well-formed segments.
        b.iter(|| black_box(unsafe { module.account(Direction::Receive, black_box(head4), true, true) }));
    });
    g.bench_function("rust_walk_account_passive", |b| {
        // SAFETY: a live chain of well-formed segments.
        b.iter(|| black_box(unsafe { module.account(Direction::Receive, black_box(head), true, false) }));
    });
    g.bench_function("rust_count_only", |b| {
        // SAFETY: a live chain of well-formed segments.
        b.iter(|| black_box(unsafe { module.account(Direction::Receive, black_box(head), false, true) }));
    });
    g.finish();
}

fn bench_etw(c: &mut Criterion) {
    let module = BenchModule::new(2, 256).expect("pool");
    let head = chain(64, 1, 1);
    let mut g = c.benchmark_group("etw64");
    g.throughput(Throughput::Elements(64));
    recorder::reset();
    g.bench_function("no_session", |b| {
        // SAFETY: a live chain of well-formed segments.
        b.iter(|| black_box(unsafe { module.account(Direction::Receive, black_box(head), true, true) }));
    });
    recorder::forward(|ev| {
        black_box(ev);
    });
    recorder::enable(5, u64::MAX, 0);
    g.bench_function("verbose_session_recorder", |b| {
        // SAFETY: as above.
        b.iter(|| black_box(unsafe { module.account(Direction::Receive, black_box(head), true, true) }));
    });
    recorder::reset();
    g.finish();
}

fn bench_callbacks(c: &mut Criterion) {
    let mut m = Model::new(ModelOptions { lean: true, asynchronous: false, ..ModelOptions::default() });
    assert_eq!(m.load(), 0);
    let (i, _) = m.add_miniport("bench");
    assert_eq!(m.restart(i), 0);
    let mut g = c.benchmark_group("callbacks");
    for batch in [1usize, 16, 64] {
        let head = chain(batch, 1, 1);
        let n = u32::try_from(batch).unwrap();
        g.throughput(Throughput::Elements(batch as u64));
        for walk in [true, false] {
            let label = if walk { "walk" } else { "no_walk" };
            CONFIG.set(Keyword::SendPathWalk, u32::from(walk)).unwrap();
            CONFIG.set(Keyword::ReceivePathWalk, u32::from(walk)).unwrap();
            g.bench_function(BenchmarkId::new(format!("send_complete/{label}"), batch), |b| {
                b.iter(|| {
                    // SAFETY: a chain this benchmark owns, alive for the process.
                    let down = unsafe { m.lean_send(i, black_box(head), NDIS_SEND_FLAGS_DISPATCH_LEVEL) };
                    // SAFETY: the chain the filter passed down.
                    unsafe { m.lean_send_complete(i, down, NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL) };
                });
            });
            let flags = NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID | NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL;
            g.bench_function(BenchmarkId::new(format!("receive_return/{label}"), batch), |b| {
                b.iter(|| {
                    // SAFETY: a chain this benchmark owns, alive for the process.
                    let up = unsafe { m.lean_receive(i, black_box(head), n, flags) };
                    // SAFETY: the chain the filter indicated up.
                    unsafe { m.lean_return(i, up, NDIS_RETURN_FLAGS_DISPATCH_LEVEL) };
                });
            });
        }
    }
    CONFIG.reset();
    g.finish();
    m.pause(i);
    m.unload();
}

criterion_group!(benches, bench_walk, bench_chain64, bench_etw, bench_callbacks);
criterion_main!(benches);
