//! Helpers shared by the integration tests that drive the driver through the model.
#![allow(dead_code, reason = "each test binary uses a subset")]
#![allow(clippy::cast_possible_truncation, clippy::missing_panics_doc, reason = "test helpers")]

use nbshm::filter::module::ModuleSummary;
use nbshm::host::model::{Miniport, Model, ModelOptions};
use nbshm::host::packets::{ChainSpec, NbSpec, NblSpec, SegmentSpec};
use nbshm::stats::Direction;
use nbshm_proto::Wire;

/// A loaded model with `n` attached, running miniports.
pub fn running(n: usize, opts: ModelOptions) -> Model {
    let mut m = Model::new(opts);
    assert_eq!(m.load(), 0, "DriverEntry");
    for i in 0..n {
        let (idx, status) = m.add_miniport(&format!("Model Ethernet Adapter #{}", i + 1));
        assert_eq!(status, 0, "FilterAttach");
        assert_eq!(m.restart(idx), 0, "FilterRestart");
    }
    m
}

/// One NBL with one NET_BUFFER of `len` bytes in one segment of `handle` at `offset`.
pub fn nbl(handle: usize, offset: u32, len: u32) -> NblSpec {
    NblSpec {
        nbs: vec![NbSpec {
            data_length: len,
            chain: ChainSpec::List(vec![SegmentSpec { handle, offset, length: len, flags: 0 }]),
        }],
    }
}

/// `n` NBLs of `nbs` NET_BUFFERs each, one 1000-byte segment per NET_BUFFER, over `handles`
/// distinct handles.
pub fn batch(n: usize, nbs: usize, handles: usize) -> Vec<NblSpec> {
    (0..n)
        .map(|i| NblSpec {
            nbs: (0..nbs)
                .map(|j| NbSpec {
                    data_length: 1000,
                    chain: ChainSpec::List(vec![SegmentSpec {
                        handle: 0x10_0000 + ((i * nbs + j) % handles) * 0x1000,
                        offset: ((i * nbs + j) as u32 % 1000) * 2048,
                        length: 1000,
                        flags: 0,
                    }]),
                })
                .collect(),
        })
        .collect()
}

/// The driver's summary of the module attached to `mp`.
pub fn summary(mp: &Miniport) -> ModuleSummary {
    let mut out = None;
    nbshm::filter::for_each_module_summary(|s| {
        if s.if_index == mp.if_index {
            out = Some(*s);
        }
    });
    out.unwrap_or_else(|| panic!("no module attached to miniport {}", mp.index))
}

/// The driver counted exactly what the model passed through it, in both directions.
pub fn assert_stats_match(m: &Model) {
    for mp in m.miniports() {
        if mp.module_context().is_null() {
            continue;
        }
        let s = summary(&mp);
        assert_eq!(s.receive, mp.expected(Direction::Receive), "receive statistics of miniport {}", mp.index);
        assert_eq!(s.send, mp.expected(Direction::Send), "send statistics of miniport {}", mp.index);
        assert_eq!(
            s.distinct_handles as usize,
            mp.expected_handles(),
            "distinct handles of miniport {}",
            mp.index
        );
    }
}

/// Every NBL is home, counts balance, and no contract violation was recorded.
pub fn assert_clean(m: &Model) {
    assert!(m.quiesce(), "NBLs outstanding: {}", m.live_nbls());
    let [sent, completed, indicated, returned] = m.totals();
    assert_eq!(sent, completed, "every sent NBL completed exactly once");
    assert_eq!(indicated, returned, "every indicated NBL returned exactly once");
    assert_eq!(m.violations(), vec![], "contract violations");
}

/// The wire bytes of a control-device request.
pub fn enc<T: Wire>(v: &T) -> Vec<u8> {
    let mut b = vec![0; T::SIZE];
    v.encode(&mut b).expect("a buffer of the type's size");
    b
}
