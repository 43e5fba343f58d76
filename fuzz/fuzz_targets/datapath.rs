//! The driver's data-path accounting (the code FilterSendNetBufferLists and
//! FilterReceiveNetBufferLists run before they pass a chain on) over arbitrary NBL chains:
//! arbitrary numbers of NBLs and NET_BUFFERs, each NET_BUFFER with no shared memory, a list, a
//! cycle, a link that cannot be a segment, or (when the walk is off) a slot holding garbage.
//! Counts must equal the model's reference walk; nothing may be read past the bound or through a
//! bad link; the handle table may overflow but never loses a segment.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use nbshm::filter::bench::BenchModule;
use nbshm::host::packets::{self, ChainSpec, ModelNbl, NbSpec, NblSpec, SegmentSpec};
use nbshm::stats::Direction;

#[derive(Arbitrary, Debug)]
struct Seg {
    handle: u8,
    offset: u32,
    length: u32,
}

#[derive(Arbitrary, Debug)]
enum Chain {
    None,
    List(Vec<Seg>),
    Cycle(Vec<Seg>, u8),
    Broken(Vec<Seg>, u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    nbls: Vec<Vec<Chain>>,
    walk: bool,
    dispatch: bool,
    handle_capacity_log2: u8,
}

fn seg(s: &Seg) -> SegmentSpec {
    SegmentSpec { handle: usize::from(s.handle) * 0x40, offset: s.offset, length: s.length, flags: 0 }
}

fuzz_target!(|input: Input| {
    if input.nbls.len() > 64 || input.nbls.iter().any(|nbs| nbs.len() > 16) {
        return;
    }
    let bound = nbshm::config::CONFIG.max_segments();
    let specs: Vec<NblSpec> = input
        .nbls
        .iter()
        .map(|nbs| NblSpec {
            nbs: nbs
                .iter()
                .map(|c| {
                    let chain = match c {
                        Chain::None => ChainSpec::None,
                        Chain::List(s) if s.len() <= 200 => ChainSpec::List(s.iter().map(seg).collect()),
                        Chain::Cycle(s, back) if !s.is_empty() && s.len() <= 200 => {
                            ChainSpec::Cycle { segments: s.iter().map(seg).collect(), back_to: usize::from(*back) % s.len() }
                        }
                        Chain::Broken(s, link) if s.len() <= 200 => ChainSpec::Broken {
                            segments: s.iter().map(seg).collect(),
                            link: if *link == 0 { 3 } else { usize::from(*link) | 1 },
                        },
                        _ => ChainSpec::None,
                    };
                    // Without the walk, the slot may hold anything: make it garbage.
                    let chain = if input.walk { chain } else { ChainSpec::Raw(0x0BAD_0000_0000) };
                    NbSpec { data_length: 1514, chain }
                })
                .collect(),
        })
        .collect();
    let capacity = 1usize << (input.handle_capacity_log2 % 8).max(4);
    let Some(module) = BenchModule::new(2, capacity) else { return };
    let mut want_segments = 0u64;
    let mut want_bytes = 0u64;
    let mut want_anomalies = [0u64; 5];
    let mut want_nbs = 0u64;
    for s in &specs {
        for nb in &s.nbs {
            want_nbs += 1;
            if input.walk {
                let e = nb.chain.reference_walk(bound, |_| {});
                want_segments += u64::from(e.segments);
                want_bytes += e.shared_bytes;
                for (k, a) in want_anomalies.iter_mut().enumerate() {
                    if e.anomalies & (1 << k) != 0 {
                        *a += 1;
                    }
                }
            }
        }
    }
    let nbl_count = specs.len() as u64;
    let boxes: Vec<Box<ModelNbl>> =
        specs.into_iter().enumerate().map(|(i, s)| ModelNbl::build(i as u64, 0, Direction::Receive, s)).collect();
    let head = packets::chain(boxes);
    // SAFETY: a chain of model NBLs built just now; with the walk on, every chain is one the
    // walker's contract covers (segments in the NBL's memory, bad links never read).
    let n = unsafe { module.account(Direction::Receive, head, input.walk, input.dispatch) };
    assert_eq!(n, nbl_count);
    let s = module.summary();
    assert_eq!(s.receive.nbls, nbl_count);
    assert_eq!(s.receive.net_buffers, want_nbs);
    assert_eq!(s.receive.segments, want_segments);
    assert_eq!(s.receive.shared_bytes, want_bytes);
    assert_eq!(s.receive.anomalies, want_anomalies);
    // Every segment with a non-NULL handle is in the table or counted as overflow.
    // SAFETY: the chain was built above and nothing else holds it.
    for p in unsafe { packets::chain_members(head) } {
        // SAFETY: each member came from `packets::chain`.
        unsafe { packets::free(p) };
    }
});
