//! The control device's dispatch with arbitrary requests: any code (mostly the driver's own, with
//! arbitrary method/access bits otherwise), any input bytes and lengths, any output length, any
//! granted access, against a loaded driver with two attached modules that have seen traffic.
//! Every request goes through the model's I/O manager as a METHOD_BUFFERED IRP whose system
//! buffer is followed by guard bytes: the driver must complete each IRP exactly once, with a
//! status the protocol documents, Information within the output length, and no byte written past
//! it (each breach is a recorded violation, which fails the run).
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use nbshm::host::device::{FILE_READ_DATA, FILE_WRITE_DATA};
use nbshm::host::model::{Model, ModelOptions};
use nbshm::host::packets::{ChainSpec, NbSpec, NblSpec, SegmentSpec};
use nbshm::host::violations;
use nbshm_proto::ioctl;
use nbshm_proto::status::{self, name};

const CODES: [u32; 6] = [
    ioctl::IOCTL_NBSHM_QUERY_VERSION,
    ioctl::IOCTL_NBSHM_LIST_MODULES,
    ioctl::IOCTL_NBSHM_QUERY_HANDLES,
    ioctl::IOCTL_NBSHM_RESET_STATS,
    ioctl::IOCTL_NBSHM_GET_CONFIG,
    ioctl::IOCTL_NBSHM_SET_CONFIG,
];

#[derive(Arbitrary, Debug)]
enum Code {
    Ours(u8),
    Any(u32),
}

#[derive(Arbitrary, Debug)]
struct Request {
    code: Code,
    input: Vec<u8>,
    output_len: u16,
    read: bool,
    write: bool,
}

thread_local! {
    static MODEL: Model = {
        let mut m = Model::new(ModelOptions::default());
        assert_eq!(m.load(), 0);
        for i in 0..2 {
            let (idx, s) = m.add_miniport(&format!("fuzz {i}"));
            assert_eq!(s, 0);
            assert_eq!(m.restart(idx), 0);
            let seg = SegmentSpec { handle: 0x1000 * (i + 1), offset: 0, length: 100, flags: 0 };
            let spec = NblSpec { nbs: vec![NbSpec { data_length: 100, chain: ChainSpec::List(vec![seg]) }] };
            m.indicate(idx, vec![spec], nbshm::sys::NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID, 0).unwrap();
        }
        assert!(m.quiesce());
        m
    };
}

fuzz_target!(|r: Request| {
    if r.input.len() > 4096 {
        return;
    }
    let code = match r.code {
        Code::Ours(i) => CODES[usize::from(i) % CODES.len()],
        Code::Any(c) => c,
    };
    let granted = if r.read { FILE_READ_DATA } else { 0 } | if r.write { FILE_WRITE_DATA } else { 0 };
    MODEL.with(|m| {
        let before = violations::count();
        let result = m.ioctl(code, &r.input, usize::from(r.output_len), granted);
        assert_eq!(violations::count(), before, "{:?}", violations::list());
        assert!(name(result.status).is_some(), "undocumented status {:#x}", result.status);
        assert!(result.information <= usize::from(r.output_len));
        if status::is_error(result.status) {
            assert_eq!(result.information, 0);
        }
    });
});
