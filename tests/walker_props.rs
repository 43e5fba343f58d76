//! Properties of the shared-memory walker over generated chain graphs: arbitrary links
//! (cycles, self-loops, shared tails), NULL and misaligned links, very long chains and every
//! segment defect. The walker must agree with a straightforward reference walk, stay within the
//! bound, and report each anomaly kind at most once per NET_BUFFER.

#![allow(clippy::cast_possible_truncation, reason = "test sizes are small")]

use std::ptr;

use nbshm::shmem::{Anomalies, AnomalyKind, Segment, SegmentWalker, walk_chain};
use nbshm::sys::{NET_BUFFER, NET_BUFFER_SHARED_MEMORY};
use proptest::prelude::*;

/// Where a node's `NextSharedMemorySegment` points.
#[derive(Clone, Copy, Debug)]
enum Link {
    Null,
    Node(usize),
    Misaligned,
}

#[derive(Clone, Debug)]
struct NodeSpec {
    next: Link,
    handle: usize,
    offset: u32,
    length: u32,
    flags: u32,
}

fn node_spec(n: usize) -> impl Strategy<Value = NodeSpec> {
    let link = prop_oneof![
        3 => Just(Link::Null),
        6 => (0..n).prop_map(Link::Node),
        1 => Just(Link::Misaligned),
    ];
    let handle = prop_oneof![1 => Just(0usize), 5 => (1usize..64).prop_map(|h| h * 0x1000)];
    let offset = prop_oneof![3 => 0u32..1 << 20, 1 => any::<u32>()];
    let length = prop_oneof![1 => Just(0u32), 4 => 1u32..9000, 1 => any::<u32>()];
    (link, handle, offset, length, any::<u32>()).prop_map(|(next, handle, offset, length, flags)| NodeSpec {
        next,
        handle,
        offset,
        length,
        flags,
    })
}

fn graph() -> impl Strategy<Value = (Vec<NodeSpec>, Option<usize>, u32)> {
    (1usize..40).prop_flat_map(|n| {
        (prop::collection::vec(node_spec(n), n), prop::option::weighted(0.9, 0..n), 0u32..80)
    })
}

/// Builds the nodes in memory. The returned box must outlive every walk over it.
fn build(specs: &[NodeSpec]) -> Box<[NET_BUFFER_SHARED_MEMORY]> {
    let mut nodes: Box<[NET_BUFFER_SHARED_MEMORY]> = specs
        .iter()
        .map(|s| NET_BUFFER_SHARED_MEMORY {
            NextSharedMemorySegment: ptr::null_mut(),
            SharedMemoryFlags: s.flags,
            SharedMemoryHandle: ptr::without_provenance_mut(s.handle),
            SharedMemoryOffset: s.offset,
            SharedMemoryLength: s.length,
        })
        .collect();
    let base = nodes.as_mut_ptr();
    for (i, s) in specs.iter().enumerate() {
        nodes[i].NextSharedMemorySegment = match s.next {
            Link::Null => ptr::null_mut(),
            Link::Node(j) => base.wrapping_add(j),
            Link::Misaligned => base.wrapping_byte_add(3),
        };
    }
    nodes
}

/// The reference walk: plain loop over the specs, no pointers.
fn reference(specs: &[NodeSpec], start: Option<usize>, bound: u32) -> (Vec<Segment>, Anomalies) {
    let mut out = Vec::new();
    let mut anomalies = Anomalies::NONE;
    let mut cur = start.map_or(Link::Null, Link::Node);
    loop {
        match cur {
            Link::Null => break,
            _ if out.len() as u32 == bound => {
                anomalies.insert(AnomalyKind::Overlong);
                break;
            }
            Link::Misaligned => {
                anomalies.insert(AnomalyKind::BadPointer);
                break;
            }
            Link::Node(i) => {
                let s = &specs[i];
                out.push(Segment {
                    index: out.len() as u32,
                    handle: s.handle,
                    offset: s.offset,
                    length: s.length,
                    flags: s.flags,
                });
                if s.handle == 0 {
                    anomalies.insert(AnomalyKind::NullHandle);
                }
                if s.length == 0 {
                    anomalies.insert(AnomalyKind::ZeroLength);
                }
                if u64::from(s.offset) + u64::from(s.length) > u64::from(u32::MAX) {
                    anomalies.insert(AnomalyKind::OffsetOverflow);
                }
                cur = s.next;
            }
        }
    }
    (out, anomalies)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn walker_matches_reference((specs, start, bound) in graph()) {
        let nodes = build(&specs);
        let first = start.map_or(ptr::null(), |i| &raw const nodes[i]);
        // SAFETY: every aligned link points into `nodes`, which outlives the walker.
        let mut walker = unsafe { SegmentWalker::new(first, bound) };
        let got: Vec<Segment> = walker.by_ref().collect();
        let (want, want_anomalies) = reference(&specs, start, bound);
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(walker.anomalies(), want_anomalies);
        prop_assert!(got.len() as u32 <= bound);
        prop_assert_eq!(walker.walked() as usize, got.len());
        // The iterator stays finished.
        prop_assert_eq!(walker.next(), None);
    }

    #[test]
    fn summary_adds_up((specs, start, bound) in graph()) {
        let nodes = build(&specs);
        let first = start.map_or(ptr::null(), |i| &raw const nodes[i]);
        let mut seen = 0u32;
        // SAFETY: as above.
        let s = unsafe { walk_chain(first, bound, |_| seen += 1) };
        let (want, want_anomalies) = reference(&specs, start, bound);
        prop_assert_eq!(s.segments, seen);
        prop_assert_eq!(s.segments as usize, want.len());
        prop_assert_eq!(s.shared_bytes, want.iter().map(|g| u64::from(g.length)).sum::<u64>());
        prop_assert_eq!(s.anomalies, want_anomalies);
        // Each kind at most once: the set has at most one bit per kind.
        prop_assert!(s.anomalies.len() as usize <= AnomalyKind::ALL.len());
    }

    /// A cycle of any size through any entry point is overlong after exactly `bound` segments.
    #[test]
    fn cycles_terminate_at_the_bound(len in 1usize..50, entry in 0usize..50, bound in 1u32..200) {
        let entry = entry % len;
        let specs: Vec<NodeSpec> = (0..len)
            .map(|i| NodeSpec { next: Link::Node((i + 1) % len), handle: 0x1000, offset: 0, length: 64, flags: 0 })
            .collect();
        let nodes = build(&specs);
        // SAFETY: all links point into `nodes`.
        let s = unsafe { walk_chain(&raw const nodes[entry], bound, |_| {}) };
        prop_assert_eq!(s.segments, bound);
        prop_assert!(s.anomalies.contains(AnomalyKind::Overlong));
        prop_assert_eq!(s.anomalies.len(), 1);
    }
}

/// A very long (acyclic) chain: exactly the bound is walked, and the rest is never read.
#[test]
fn very_long_chain_is_cut_at_the_bound() {
    let len = 100_000;
    let specs: Vec<NodeSpec> = (0..len)
        .map(|i| NodeSpec {
            next: if i + 1 < len { Link::Node(i + 1) } else { Link::Null },
            handle: 0x1000,
            offset: 0,
            length: 1,
            flags: 0,
        })
        .collect();
    let nodes = build(&specs);
    for bound in [0, 1, 64, 65_535] {
        // SAFETY: all links point into `nodes`.
        let s = unsafe { walk_chain(&raw const nodes[0], bound, |_| {}) };
        assert_eq!(s.segments, bound);
        assert_eq!(s.shared_bytes, u64::from(bound));
        assert!(s.anomalies.contains(AnomalyKind::Overlong));
    }
    // SAFETY: as above.
    let s = unsafe { walk_chain(&raw const nodes[0], u32::MAX, |_| {}) };
    assert_eq!(s.segments as usize, len);
    assert!(s.anomalies.is_empty());
}

/// The walker starts where `NET_BUFFER_FIRST_SHARED_MEM_INFO` says.
#[test]
fn for_net_buffer_reads_shared_memory_info() {
    let specs = vec![NodeSpec { next: Link::Null, handle: 0x7000, offset: 12, length: 34, flags: 5 }];
    let nodes = build(&specs);
    // SAFETY: an all-zero NET_BUFFER is a valid value (NULL pointers, zero scalars).
    let mut nb: NET_BUFFER = unsafe { std::mem::zeroed() };
    nb.SharedMemoryInfo = nodes.as_ptr().cast_mut();
    // SAFETY: `nb` and `nodes` live across the walk.
    let segs: Vec<_> = unsafe { SegmentWalker::for_net_buffer(&raw const nb, 64) }.collect();
    assert_eq!(segs, [Segment { index: 0, handle: 0x7000, offset: 12, length: 34, flags: 5 }]);
}
