//! The shared-memory walker over arbitrary chain graphs built from the input: cycles, self
//! loops, shared tails, NULL handles, huge lengths and offsets, misaligned and NULL-page links,
//! any bound. The walker must agree with a plain reference walk, never follow more than the bound,
//! and never read a link that cannot be a segment (reading one would fault or be caught by ASan).
#![no_main]

use std::ptr;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use nbshm::shmem::{AnomalyKind, Anomalies, SegmentWalker, walk_chain};
use nbshm::sys::NET_BUFFER_SHARED_MEMORY;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Link {
    Null,
    Node(u8),
    Misaligned(u8),
    NullPage(u16),
}

#[derive(Arbitrary, Debug)]
struct Node {
    next: Link,
    handle: u16,
    offset: u32,
    length: u32,
    flags: u32,
}

#[derive(Arbitrary, Debug)]
struct Graph {
    nodes: Vec<Node>,
    start: Option<u8>,
    bound: u16,
}

fuzz_target!(|g: Graph| {
    if g.nodes.is_empty() || g.nodes.len() > 256 {
        return;
    }
    let n = g.nodes.len();
    let mut mem: Vec<NET_BUFFER_SHARED_MEMORY> = g
        .nodes
        .iter()
        .map(|s| NET_BUFFER_SHARED_MEMORY {
            NextSharedMemorySegment: ptr::null_mut(),
            SharedMemoryFlags: s.flags,
            SharedMemoryHandle: ptr::without_provenance_mut(usize::from(s.handle) << 4),
            SharedMemoryOffset: s.offset,
            SharedMemoryLength: s.length,
        })
        .collect();
    let base = mem.as_mut_ptr();
    let link = |l: Link| -> *mut NET_BUFFER_SHARED_MEMORY {
        match l {
            Link::Null => ptr::null_mut(),
            Link::Node(i) => base.wrapping_add(usize::from(i) % n),
            Link::Misaligned(i) => base.wrapping_add(usize::from(i) % n).wrapping_byte_add(1 + usize::from(i % 7)),
            Link::NullPage(a) => ptr::without_provenance_mut(usize::from(a % 0x1000) & !7),
        }
    };
    for (i, s) in g.nodes.iter().enumerate() {
        mem[i].NextSharedMemorySegment = link(s.next);
    }
    let first = g.start.map_or(ptr::null_mut(), |i| link(Link::Node(i)));
    let bound = u32::from(g.bound);

    // Reference: follow the spec, not the pointers.
    let mut want_segments = 0u32;
    let mut want_bytes = 0u64;
    let mut want = Anomalies::NONE;
    // A NULL-page link that masks to 0 is NULL: the end of the chain.
    let norm = |l: Link| match l {
        Link::NullPage(a) if usize::from(a % 0x1000) & !7 == 0 => Link::Null,
        other => other,
    };
    let mut cur = g.start.map_or(Link::Null, Link::Node);
    loop {
        match norm(cur) {
            Link::Null => break,
            _ if want_segments == bound => {
                want.insert(AnomalyKind::Overlong);
                break;
            }
            Link::Misaligned(_) | Link::NullPage(_) => {
                want.insert(AnomalyKind::BadPointer);
                break;
            }
            Link::Node(i) => {
                let s = &g.nodes[usize::from(i) % n];
                want_segments += 1;
                want_bytes += u64::from(s.length);
                if s.handle == 0 {
                    want.insert(AnomalyKind::NullHandle);
                }
                if s.length == 0 {
                    want.insert(AnomalyKind::ZeroLength);
                }
                if u64::from(s.offset) + u64::from(s.length) > u64::from(u32::MAX) {
                    want.insert(AnomalyKind::OffsetOverflow);
                }
                cur = s.next;
            }
        }
    }

    let mut seen = 0u32;
    // SAFETY: every aligned link at or above the NULL page points into `mem`, alive here.
    let summary = unsafe { walk_chain(first, bound, |_| seen += 1) };
    assert_eq!(summary.segments, want_segments);
    assert_eq!(seen, want_segments);
    assert!(summary.segments <= bound);
    assert_eq!(summary.shared_bytes, want_bytes);
    assert_eq!(summary.anomalies, want);
    // SAFETY: as above.
    let mut w = unsafe { SegmentWalker::new(first, bound) };
    assert_eq!(w.by_ref().count() as u32, want_segments);
    assert_eq!(w.next(), None);
});
