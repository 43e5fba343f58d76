//! Each rule passes on the facts of a well-formed driver and fails on facts that break it.

use std::collections::{BTreeMap, BTreeSet};

use super::{Facts, Outcome, Policy, Section, evaluate};
use crate::arch::Arch;
use crate::mapfile::SymbolMap;
use crate::unwind::{Frame, Frames};

fn good() -> Facts {
    let section = |name: &str, rva, characteristics| Section {
        name: name.to_owned(),
        rva,
        size: 0x200,
        characteristics,
    };
    Facts {
        machine: 0x8664,
        file_characteristics: 0x2022,
        magic: 0x20B,
        subsystem: 1,
        dll_characteristics: 0x160,
        checksum_stored: 0xABCD,
        checksum_computed: 0xABCD,
        entry: 0x1000,
        relocations_size: 0x10,
        sections: vec![
            section(".text", 0x1000, 0x6000_0020),
            section(".rdata", 0x2000, 0x4000_0040),
            section(".data", 0x3000, 0xC000_0040),
        ],
        imports: vec![
            ("ndis.sys".to_owned(), "NdisFRegisterFilterDriver".to_owned()),
            ("ntoskrnl.exe".to_owned(), "ExAllocatePool2".to_owned()),
        ],
        exports: vec![(None, 0, false), (Some("DriverEntry".to_owned()), 0x1000, false)],
        frames: Frames {
            frames: vec![
                Frame { begin: 0x1000, end: 0x1040, bytes: 0x28, uses_frame_pointer: false },
                Frame { begin: 0x1040, end: 0x1100, bytes: 0x148, uses_frame_pointer: false },
            ],
            unmeasured: vec![],
        },
    }
}

fn policy() -> Policy {
    let list = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<BTreeSet<_>>();
    Policy {
        arch: Some(Arch::X64),
        import_lists: BTreeMap::from([
            ("ndis.sys".to_owned(), list(&["NdisFRegisterFilterDriver"])),
            ("ntoskrnl.exe".to_owned(), list(&["ExAllocatePool2", "KeBugCheckEx"])),
            ("rpcrt4.dll".to_owned(), list(&["UuidCreate"])),
        ]),
        frame_limit: 1024,
    }
}

fn map_text(extra: &str) -> String {
    format!(
        " nbshm\n\n Preferred load address is 0000000180000000\n\n  Address         Publics by Value              Rva+Base               Lib:Object\n\n \
         0001:00000000       DriverEntry                0000000180001000     nbshm.o\n \
         0001:00000040       _RNvNtCs1_5nbshm6filter4send 0000000180001040     nbshm.o\n \
         0002:00000000       _fltused                   0000000180002000     nbshm.o\n{extra}"
    )
}

fn run(facts: &Facts, map: Option<&SymbolMap>) -> Vec<Outcome> {
    evaluate(facts, &policy(), map)
}

/// The names of the rules that failed.
fn failed(outcomes: &[Outcome]) -> Vec<&'static str> {
    outcomes.iter().filter(|o| !o.passed).map(|o| o.rule).collect()
}

fn good_map() -> SymbolMap {
    SymbolMap::parse(&map_text("")).unwrap()
}

#[test]
fn a_well_formed_driver_passes_every_rule() {
    let outcomes = run(&good(), Some(&good_map()));
    assert_eq!(failed(&outcomes), Vec::<&str>::new(), "{outcomes:#?}");
    assert!(outcomes.len() >= 15);
}

/// Applies `change` to good facts and returns the rules that fail.
fn failing(change: impl FnOnce(&mut Facts)) -> Vec<&'static str> {
    let mut facts = good();
    change(&mut facts);
    failed(&run(&facts, Some(&good_map())))
}

#[test]
fn header_rules() {
    assert_eq!(failing(|f| f.machine = 0xAA64), ["machine"]);
    assert_eq!(failing(|f| f.machine = 0x14C), ["machine"]);
    assert_eq!(failing(|f| f.magic = 0x10B), ["pe32+"]);
    assert_eq!(failing(|f| f.subsystem = 2), ["native subsystem"]);
    assert_eq!(failing(|f| f.dll_characteristics &= !0x100), ["nx compatible"]);
    assert_eq!(failing(|f| f.dll_characteristics &= !0x40), ["dynamic base"]);
    assert_eq!(failing(|f| f.file_characteristics |= 0x1), ["dynamic base"]);
    assert_eq!(failing(|f| f.checksum_stored = 0x1234), ["checksum"]);
    assert_eq!(
        failing(|f| {
            f.checksum_stored = 0;
            f.checksum_computed = 0;
        }),
        ["checksum"]
    );
}

#[test]
fn arm64_is_accepted_when_asked_for() {
    let mut facts = good();
    facts.machine = 0xAA64;
    let policy = Policy { arch: Some(Arch::Arm64), ..policy() };
    assert!(failed(&evaluate(&facts, &policy, Some(&good_map()))).is_empty());
    let any = Policy { arch: None, ..policy };
    assert!(failed(&evaluate(&facts, &any, Some(&good_map()))).is_empty());
}

#[test]
fn writable_executable_section_fails() {
    assert_eq!(failing(|f| f.sections[1].characteristics |= 0xA000_0000), ["no writable+executable section"]);
}

#[test]
fn import_rules() {
    let import = |module: &str, name: &str| (module.to_owned(), name.to_owned());
    assert_eq!(
        failing(|f| f.imports.push(import("rpcrt4.dll", "UuidCreate"))),
        ["imports only from ntoskrnl.exe, ndis.sys, hal.dll", "rpcrt4 not imported"]
    );
    assert_eq!(
        failing(|f| f.imports.push(import("ntoskrnl.exe", "KeGetCurrentIrql"))),
        ["every import is in its src/sys/*.def list (by name)"]
    );
    assert_eq!(
        failing(|f| f.imports.push(import("NTOSKRNL.EXE", "ORDINAL 12"))),
        ["every import is in its src/sys/*.def list (by name)"]
    );
    assert_eq!(
        failing(|f| {
            f.imports.remove(0);
        }),
        ["imports NdisFRegisterFilterDriver from ndis.sys"]
    );
    assert_eq!(
        failing(|f| f.imports.push(import("ntoskrnl.exe", "memcpy"))),
        ["every import is in its src/sys/*.def list (by name)", "no CRT or floating-point helper imported"]
    );
    assert_eq!(
        failing(|f| f.imports.push(import("msvcrt.dll", "__adddf3"))),
        [
            "imports only from ntoskrnl.exe, ndis.sys, hal.dll",
            "every import is in its src/sys/*.def list (by name)",
            "no CRT or floating-point helper imported"
        ]
    );
}

#[test]
fn entry_and_export_rules() {
    assert_eq!(failing(|f| f.entry = 0x1040), ["entry point is DriverEntry"]);
    let exports_rule = "exports nothing but DriverEntry (and the _fltused marker)";
    let export = |name: Option<&str>, rva: u32| (name.map(str::to_owned), rva, false);
    assert!(failing(|f| f.exports.push(export(Some("_fltused"), 0x2000))).is_empty());
    assert_eq!(failing(|f| f.exports.push(export(Some("_fltused"), 0x1040))), [exports_rule]);
    assert_eq!(failing(|f| f.exports.push(export(Some("FilterSend"), 0x1040))), [exports_rule]);
    assert_eq!(failing(|f| f.exports.push(export(None, 0x1040))), [exports_rule]);
    assert_eq!(failing(|f| f.exports[1].2 = true), [exports_rule]);
    // Without the export, the map still names the entry point.
    assert_eq!(failing(|f| f.exports.clear()), Vec::<&str>::new());
    let mut facts = good();
    facts.exports.clear();
    assert_eq!(
        failed(&run(&facts, None)),
        ["entry point is DriverEntry", "no floating-point code linked", "no stack probe"]
    );
}

#[test]
fn code_rules_need_the_map_and_find_float_code() {
    assert_eq!(failed(&run(&good(), None)), ["no floating-point code linked", "no stack probe"]);
    for symbol in [
        "__adddf3",
        "__floatundidf",
        "__fixsfsi",
        "__extendsfdf2",
        "fmod",
        "_ZN4core3fmt5float52_$LT$impl$u20$core..fmt..Display$u20$for$u20$f64$GT$3fmt17h0123456789abcdefE",
    ] {
        let map =
            SymbolMap::parse(&map_text(&format!(" 0001:00000100       {symbol} 0000000180001100     o\n")))
                .unwrap();
        assert_eq!(failed(&run(&good(), Some(&map))), ["no floating-point code linked"], "{symbol}");
    }
    // Integer helpers and the compiler-builtins mem* functions are fine.
    for symbol in ["__muldi3", "__udivti3", "memcpy", "memset"] {
        let map =
            SymbolMap::parse(&map_text(&format!(" 0001:00000100       {symbol} 0000000180001100     o\n")))
                .unwrap();
        assert!(failed(&run(&good(), Some(&map))).is_empty(), "{symbol}");
    }
    // A float helper outside executable sections is not code.
    let map = SymbolMap::parse(&map_text(" 0002:00000100       __adddf3 0000000180002100     o\n")).unwrap();
    assert!(failed(&run(&good(), Some(&map))).is_empty());
    let map = SymbolMap::parse(&map_text(" 0001:00000100       __chkstk 0000000180001100     o\n")).unwrap();
    assert_eq!(failed(&run(&good(), Some(&map))), ["no stack probe"]);
}

#[test]
fn frame_rule() {
    assert!(failing(|f| f.frames.frames[1].bytes = 1024).is_empty());
    assert_eq!(failing(|f| f.frames.frames[1].bytes = 1025), ["every stack frame within the limit"]);
    assert_eq!(
        failing(|f| f.frames.unmeasured.push((0x1100, "odd".to_owned()))),
        ["every stack frame within the limit"]
    );
    assert_eq!(failing(|f| f.frames.frames.clear()), ["every stack frame within the limit"]);
    let outcomes = run(&good(), Some(&good_map()));
    let frames = outcomes.iter().find(|o| o.rule == "every stack frame within the limit").unwrap();
    assert!(
        frames.detail.contains("largest: 328 bytes at 0x1040 (nbshm::filter::send)"),
        "{}",
        frames.detail
    );
}
