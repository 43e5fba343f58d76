//! A fixed data-path workload for instruction counting (`valgrind --tool=callgrind`): runs one
//! scenario `ITERATIONS` times inside `measured_region`, which `tools/perf/callgrind.sh` limits the
//! count to. Instructions are deterministic for a given binary and input, so the figures can guard
//! regressions in CI (docs/performance.md).
//!
//! `cargo run --release --example hotpath -- <scenario> [iterations]`; scenarios: `c_walk`,
//! `rust_walker`, `account`, `account_passive`, `account_light_session`,
//! `account_verbose_session`, `send_walk`, `send_no_walk`, `receive_walk`,
//! `receive_no_walk` (64 NBLs of one NET_BUFFER and one segment each, one handle), and the
//! same with a `_1` or `_16` suffix for those batch sizes.

use std::hint::black_box;

use nbshm::config::{CONFIG, Keyword};
use nbshm::filter::bench::{BenchModule, walk_only};
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

fn chain(nbls: usize) -> *mut NET_BUFFER_LIST {
    packets::chain(
        (0..nbls)
            .map(|i| {
                let seg = SegmentSpec {
                    handle: 0x1_0000,
                    offset: u32::try_from(i * 2048).unwrap(),
                    length: 1514,
                    flags: 0,
                };
                let spec =
                    NblSpec { nbs: vec![NbSpec { data_length: 1514, chain: ChainSpec::List(vec![seg]) }] };
                ModelNbl::build(i as u64, 0, Direction::Receive, spec)
            })
            .collect(),
    )
}

/// The region callgrind counts (`--toggle-collect=*measured_region*`).
#[inline(never)]
fn measured_region(iterations: u64, mut f: impl FnMut()) {
    for _ in 0..iterations {
        f();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map_or("receive_walk", String::as_str);
    let iterations: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let (base, batch) = match scenario.rsplit_once('_') {
        Some((b, "1")) => (b, 1),
        Some((b, "16")) => (b, 16),
        _ => (scenario, 64),
    };
    let head = chain(batch);
    let bound = CONFIG.max_segments();
    let n = u32::try_from(batch).unwrap();
    match base {
        "c_walk" => measured_region(iterations, || {
            let mut c = CCounts::default();
            // SAFETY: a live, well-formed chain.
            unsafe { c_walk(black_box(head).cast(), bound, ADDRESS_FLOOR, true, &mut c) };
            black_box(c);
        }),
        "rust_walker" => measured_region(iterations, || {
            // SAFETY: a chain built by `chain`, alive for the process.
            black_box(unsafe { walk_only(black_box(head), bound) });
        }),
        "account" | "account_passive" | "account_light_session" | "account_verbose_session" => {
            let module = BenchModule::new(2, 256).expect("pool");
            let dispatch = base != "account_passive";
            if base == "account_light_session" {
                // The WPR Light profile: level 4, Lifecycle | Usage | Anomaly.
                nbshm::host::etw::enable(4, 0xB, 0);
            } else if base == "account_verbose_session" {
                nbshm::host::etw::forward(|ev| {
                    black_box(ev);
                });
                nbshm::host::etw::enable(5, u64::MAX, 0);
            }
            measured_region(iterations, || {
                // SAFETY: a live, well-formed chain.
                black_box(unsafe { module.account(Direction::Receive, black_box(head), true, dispatch) });
            });
        }
        "send_walk" | "send_no_walk" | "receive_walk" | "receive_no_walk" => {
            let mut m =
                Model::new(ModelOptions { lean: true, asynchronous: false, ..ModelOptions::default() });
            assert_eq!(m.load(), 0);
            let (i, _) = m.add_miniport("hotpath");
            assert_eq!(m.restart(i), 0);
            let walk = u32::from(base.ends_with("_walk") && !base.ends_with("no_walk"));
            CONFIG.set(Keyword::SendPathWalk, walk).unwrap();
            CONFIG.set(Keyword::ReceivePathWalk, walk).unwrap();
            if base.starts_with("send") {
                measured_region(iterations, || {
                    // SAFETY: a chain this program owns, alive for the process.
                    let down = unsafe { m.lean_send(i, black_box(head), NDIS_SEND_FLAGS_DISPATCH_LEVEL) };
                    // SAFETY: the chain the filter passed down.
                    unsafe { m.lean_send_complete(i, down, NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL) };
                });
            } else {
                let flags = NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID | NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL;
                measured_region(iterations, || {
                    // SAFETY: a chain this program owns, alive for the process.
                    let up = unsafe { m.lean_receive(i, black_box(head), n, flags) };
                    // SAFETY: the chain the filter indicated up.
                    unsafe { m.lean_return(i, up, NDIS_RETURN_FLAGS_DISPATCH_LEVEL) };
                });
            }
            m.pause(i);
            m.unload();
        }
        other => {
            eprintln!("unknown scenario {other}");
            std::process::exit(2);
        }
    }
    println!("{scenario} iterations={iterations} net_buffers_per_iteration={batch}");
}
