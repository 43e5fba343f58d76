//! `cargo xtask check-sys`: what a kernel image must be, checked on the linked `.sys`.
//!
//! The image is read with goblin ([`Facts::read`]); the rules are plain functions of those facts
//! ([`evaluate`]), so each rule is unit-tested on facts that break it. The rules, and what they
//! do and do not prove, are listed in docs/cross-build.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use goblin::pe::PE;

use crate::arch::Arch;
use crate::checksum;
use crate::mapfile::{SymbolMap, readable};
use crate::unwind::{self, Frames};

/// The modules a kernel driver may import from.
pub const ALLOWED_MODULES: [&str; 3] = ["ntoskrnl.exe", "ndis.sys", "hal.dll"];

/// Largest stack frame allowed for any one function, in bytes. Why this number: see
/// docs/cross-build.md ("Stack frames").
pub const FRAME_LIMIT: u32 = 1024;

/// The one function the image may export.
const ENTRY_NAME: &str = "DriverEntry";

/// The floating-point marker symbol, which may be exported as data.
const FLTUSED: &str = "_fltused";

/// CRT and compiler-runtime functions a driver linked without the CRT must not import: memory
/// and string routines (compiler-builtins puts its own `mem*` inside the image), the
/// floating-point marker, stack probes, exception and security-cookie support, x87/SSE conversion
/// helpers.
const CRT_NAMES: &[&str] = &[
    "memcpy",
    "memmove",
    "memset",
    "memcmp",
    "strlen",
    "strcmp",
    "_fltused",
    "__chkstk",
    "__C_specific_handler",
    "__CxxFrameHandler3",
    "__CxxFrameHandler4",
    "_purecall",
    "__security_check_cookie",
    "__security_init_cookie",
    "__GSHandlerCheck",
    "__report_rangecheckfailure",
    "_ftol",
    "_ftol2",
    "_dtoul3",
    "_ultod3",
];

/// C math-library functions (compiler-builtins defines some of them for `f64` methods).
const MATH_NAMES: &[&str] = &[
    "sqrt", "sqrtf", "floor", "floorf", "ceil", "ceilf", "fmod", "fmodf", "pow", "powf", "exp", "log", "sin",
    "cos",
];

/// Functions that only floating-point code pulls in: Rust's float formatting and parsing, C math
/// functions, and the compiler-builtins soft-float and conversion helpers (`__adddf3`,
/// `__floatundidf`, `__fixsfsi`, `__extendsfdf2`, ...).
fn is_float_code(name: &str) -> bool {
    const FLOAT_PATHS: [&str; 3] = ["core::num::flt2dec", "core::num::dec2flt", "core::fmt::float"];
    const FLOAT_OPS: [&str; 18] = [
        "add", "sub", "mul", "div", "neg", "pow", "float", "fix", "extend", "trunc", "eq", "ne", "lt", "le",
        "gt", "ge", "unord", "cmp",
    ];
    const FLOAT_MODES: [&str; 5] = ["sf", "df", "tf", "xf", "hf"];
    if MATH_NAMES.contains(&name) || FLOAT_PATHS.iter().any(|path| readable(name).contains(path)) {
        return true;
    }
    name.strip_prefix("__").is_some_and(|helper| {
        FLOAT_OPS.iter().any(|op| helper.starts_with(op))
            && FLOAT_MODES.iter().any(|mode| helper.contains(mode))
    })
}

/// A section header, reduced to what the rules use.
#[derive(Clone, Debug)]
pub struct Section {
    /// Name (up to 8 bytes).
    pub name: String,
    /// RVA.
    pub rva: u32,
    /// Virtual size.
    pub size: u32,
    /// `IMAGE_SCN_*` flags.
    pub characteristics: u32,
}

const SCN_EXECUTE: u32 = 0x2000_0000;
const SCN_READ: u32 = 0x4000_0000;
const SCN_WRITE: u32 = 0x8000_0000;

impl Section {
    fn is_executable(&self) -> bool {
        self.characteristics & SCN_EXECUTE != 0
    }

    fn protection(&self) -> String {
        let flag = |bit: u32, c: char| if self.characteristics & bit == 0 { '-' } else { c };
        [flag(SCN_READ, 'r'), flag(SCN_WRITE, 'w'), flag(SCN_EXECUTE, 'x')].iter().collect()
    }
}

/// What the rules look at, read from the image.
#[derive(Debug, Default)]
pub struct Facts {
    /// `IMAGE_FILE_HEADER.Machine`.
    pub machine: u16,
    /// `IMAGE_FILE_HEADER.Characteristics`.
    pub file_characteristics: u16,
    /// Optional header magic (0x20B = PE32+).
    pub magic: u16,
    /// `Subsystem`.
    pub subsystem: u16,
    /// `DllCharacteristics`.
    pub dll_characteristics: u16,
    /// `CheckSum` as stored.
    pub checksum_stored: u32,
    /// `CheckSum` recomputed from the file.
    pub checksum_computed: u32,
    /// `AddressOfEntryPoint`.
    pub entry: u32,
    /// Size of the base-relocation directory.
    pub relocations_size: u32,
    /// Sections.
    pub sections: Vec<Section>,
    /// (module, function) of every import; ordinal imports appear as `ORDINAL n`.
    pub imports: Vec<(String, String)>,
    /// (name, RVA, forwarder) of every export.
    pub exports: Vec<(Option<String>, u32, bool)>,
    /// Stack frames from the unwind data.
    pub frames: Frames,
}

impl Facts {
    /// Reads the facts of a PE image.
    pub fn read(bytes: &[u8]) -> Result<Self, String> {
        let pe = PE::parse(bytes).map_err(|e| format!("not a PE image: {e}"))?;
        let optional = pe.header.optional_header.ok_or("no optional header")?;
        let field = checksum::field_offset(pe.header.dos_header.pe_pointer);
        let sections = pe
            .sections
            .iter()
            .map(|s| Section {
                name: s.name().unwrap_or("?").to_owned(),
                rva: s.virtual_address,
                size: s.virtual_size,
                characteristics: s.characteristics,
            })
            .collect();
        let relocations_size = optional.data_directories.get_base_relocation_table().map_or(0, |d| d.size);
        Ok(Self {
            machine: pe.header.coff_header.machine,
            file_characteristics: pe.header.coff_header.characteristics,
            magic: optional.standard_fields.magic,
            subsystem: optional.windows_fields.subsystem,
            dll_characteristics: optional.windows_fields.dll_characteristics,
            checksum_stored: optional.windows_fields.check_sum,
            checksum_computed: checksum::compute(bytes, field)?,
            entry: optional.standard_fields.address_of_entry_point,
            relocations_size,
            sections,
            imports: pe.imports.iter().map(|i| (i.dll.to_owned(), i.name.to_string())).collect(),
            exports: pe
                .exports
                .iter()
                .map(|e| {
                    (
                        e.name.map(str::to_owned),
                        u32::try_from(e.rva).unwrap_or(u32::MAX),
                        e.reexport.is_some(),
                    )
                })
                .collect(),
            frames: unwind::frames(&pe, bytes, pe.header.coff_header.machine == Arch::Arm64.pe_machine()),
        })
    }

    /// Imported functions grouped by module (module names lower-cased).
    pub fn imports_by_module(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (module, name) in &self.imports {
            modules.entry(module.to_ascii_lowercase()).or_default().insert(name.clone());
        }
        modules
    }

    /// The named exports with a real address (lld-link leaves an unnamed, zero slot for ordinal
    /// 0 that points nowhere).
    fn real_exports(&self) -> impl Iterator<Item = &(Option<String>, u32, bool)> {
        self.exports.iter().filter(|(name, rva, _)| name.is_some() || *rva != 0)
    }
}

/// What the image is held to.
#[derive(Debug)]
pub struct Policy {
    /// The architecture it must be built for; `None` accepts either of ours.
    pub arch: Option<Arch>,
    /// Module (lower case) → the names `src/sys/*.def` lists for it.
    pub import_lists: BTreeMap<String, BTreeSet<String>>,
    /// Largest allowed frame.
    pub frame_limit: u32,
}

/// The result of one rule.
#[derive(Debug)]
pub struct Outcome {
    /// Short name of the rule.
    pub rule: &'static str,
    /// Whether the image satisfies it.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

fn outcome(rule: &'static str, passed: bool, detail: impl Into<String>) -> Outcome {
    Outcome { rule, passed, detail: detail.into() }
}

/// Applies every rule.
pub fn evaluate(facts: &Facts, policy: &Policy, map: Option<&SymbolMap>) -> Vec<Outcome> {
    let mut out = Vec::new();
    let machine = Arch::from_pe_machine(facts.machine);
    let machine_ok = match policy.arch {
        Some(arch) => machine == Some(arch),
        None => machine.is_some(),
    };
    let expected = policy.arch.map_or("AMD64 or ARM64", Arch::pe_machine_name);
    let seen = machine.map_or("other", Arch::pe_machine_name);
    out.push(outcome("machine", machine_ok, format!("{seen} ({:#06x}); expected {expected}", facts.machine)));
    out.push(outcome("pe32+", facts.magic == 0x20B, format!("optional header magic {:#x}", facts.magic)));
    out.push(outcome("native subsystem", facts.subsystem == 1, format!("subsystem {}", facts.subsystem)));
    out.push(outcome(
        "nx compatible",
        facts.dll_characteristics & 0x100 != 0,
        format!("DllCharacteristics {:#06x}", facts.dll_characteristics),
    ));
    let relocatable = facts.file_characteristics & 0x1 == 0;
    out.push(outcome(
        "dynamic base",
        facts.dll_characteristics & 0x40 != 0 && relocatable,
        format!(
            "DllCharacteristics {:#06x}, relocations {}, {} bytes of base relocations",
            facts.dll_characteristics,
            if relocatable { "kept" } else { "stripped" },
            facts.relocations_size
        ),
    ));
    out.push(outcome(
        "checksum",
        facts.checksum_stored != 0 && facts.checksum_stored == facts.checksum_computed,
        format!("stored {:#010x}, computed {:#010x}", facts.checksum_stored, facts.checksum_computed),
    ));
    let wx: Vec<&str> = facts
        .sections
        .iter()
        .filter(|s| s.characteristics & SCN_WRITE != 0 && s.is_executable())
        .map(|s| s.name.as_str())
        .collect();
    out.push(outcome("no writable+executable section", wx.is_empty(), list_or("none", &wx)));
    imports_rules(facts, policy, &mut out);
    entry_rules(facts, map, &mut out);
    code_rules(facts, map, &mut out);
    frame_rule(facts, policy, map, &mut out);
    out
}

fn imports_rules(facts: &Facts, policy: &Policy, out: &mut Vec<Outcome>) {
    let modules = facts.imports_by_module();
    let foreign: Vec<&str> =
        modules.keys().map(String::as_str).filter(|m| !ALLOWED_MODULES.contains(m)).collect();
    out.push(outcome(
        "imports only from ntoskrnl.exe, ndis.sys, hal.dll",
        foreign.is_empty(),
        format!("modules: {}", list_or("none", &modules.keys().map(String::as_str).collect::<Vec<_>>())),
    ));
    let rpcrt4 = modules.keys().any(|m| m.starts_with("rpcrt4"));
    out.push(outcome("rpcrt4 not imported", !rpcrt4, if rpcrt4 { "rpcrt4 is imported" } else { "absent" }));
    let mut undeclared = Vec::new();
    for (module, names) in &modules {
        let listed = policy.import_lists.get(module);
        for name in names {
            if !listed.is_some_and(|l| l.contains(name)) {
                undeclared.push(format!("{module}!{name}"));
            }
        }
    }
    out.push(outcome(
        "every import is in its src/sys/*.def list (by name)",
        undeclared.is_empty(),
        list_or("all listed", &undeclared),
    ));
    let registers = modules.get("ndis.sys").is_some_and(|names| names.contains("NdisFRegisterFilterDriver"));
    out.push(outcome(
        "imports NdisFRegisterFilterDriver from ndis.sys",
        registers,
        if registers { "imported" } else { "missing" },
    ));
    let crt: Vec<String> = facts
        .imports
        .iter()
        .filter(|(_, name)| CRT_NAMES.contains(&name.as_str()) || is_float_code(name))
        .map(|(module, name)| format!("{module}!{name}"))
        .collect();
    out.push(outcome("no CRT or floating-point helper imported", crt.is_empty(), list_or("none", &crt)));
}

fn entry_rules(facts: &Facts, map: Option<&SymbolMap>, out: &mut Vec<Outcome>) {
    let exported = facts.real_exports().find(|(name, _, _)| name.as_deref() == Some(ENTRY_NAME)).map(|e| e.1);
    let mapped = map.and_then(|m| m.symbols().iter().find(|s| s.name == ENTRY_NAME)).map(|s| s.rva);
    let (passed, detail) = match (exported, mapped) {
        (None, None) => (false, format!("no {ENTRY_NAME} export or map symbol to compare with")),
        (exported, mapped) => (
            exported.is_none_or(|rva| rva == facts.entry) && mapped.is_none_or(|rva| rva == facts.entry),
            format!(
                "AddressOfEntryPoint {:#x}; {ENTRY_NAME} export {}, map {}",
                facts.entry,
                exported.map_or("absent".to_owned(), |rva| format!("{rva:#x}")),
                mapped.map_or("absent".to_owned(), |rva| format!("{rva:#x}")),
            ),
        ),
    };
    out.push(outcome("entry point is DriverEntry", passed, detail));
    // `_fltused` is a data marker: the kernel build defines it, and so does wdk-sys, and rustc
    // exports every `#[no_mangle]` item of a cdylib. As an export it is harmless; as code it would
    // not be the marker.
    let is_data =
        |rva: u32| !facts.sections.iter().any(|s| s.is_executable() && rva >= s.rva && rva - s.rva < s.size);
    let others: Vec<String> = facts
        .real_exports()
        .filter(|(name, rva, forwarder)| match name.as_deref() {
            Some(ENTRY_NAME) => *forwarder,
            Some(FLTUSED) => *forwarder || !is_data(*rva),
            _ => true,
        })
        .map(|(name, rva, _)| name.clone().unwrap_or_else(|| format!("ordinal-only export at {rva:#x}")))
        .collect();
    out.push(outcome(
        "exports nothing but DriverEntry (and the _fltused marker)",
        others.is_empty(),
        list_or("nothing else", &others),
    ));
}

fn code_rules(facts: &Facts, map: Option<&SymbolMap>, out: &mut Vec<Outcome>) {
    let Some(map) = map else {
        out.push(outcome("no floating-point code linked", false, "no linker map next to the image"));
        out.push(outcome("no stack probe", false, "no linker map next to the image"));
        return;
    };
    let code: Vec<&crate::mapfile::Symbol> = map
        .symbols()
        .iter()
        .filter(|s| {
            facts
                .sections
                .iter()
                .any(|sec| sec.is_executable() && s.rva >= sec.rva && s.rva - sec.rva < sec.size)
        })
        .collect();
    let float: Vec<String> =
        code.iter().filter(|s| is_float_code(&s.name)).map(|s| readable(&s.name)).collect();
    out.push(outcome(
        "no floating-point code linked",
        !code.is_empty() && float.is_empty(),
        format!("{} code symbols in the map; float code: {}", code.len(), list_or("none", &float)),
    ));
    let probe = map.symbols().iter().any(|s| s.name.contains("chkstk"))
        || facts.imports.iter().any(|(_, name)| name.contains("chkstk"));
    out.push(outcome("no stack probe", !probe, if probe { "__chkstk present" } else { "absent" }));
}

fn frame_rule(facts: &Facts, policy: &Policy, map: Option<&SymbolMap>, out: &mut Vec<Outcome>) {
    let frames = &facts.frames;
    let over: Vec<String> = frames
        .frames
        .iter()
        .filter(|f| f.bytes > policy.frame_limit)
        .map(|f| format!("{} bytes at {:#x} {}", f.bytes, f.begin, name_at(map, f.begin)))
        .collect();
    let unmeasured: Vec<String> = frames
        .unmeasured
        .iter()
        .map(|(rva, why)| format!("{rva:#x} {}: {why}", name_at(map, *rva)))
        .collect();
    let largest = frames.frames.iter().max_by_key(|f| f.bytes);
    let mut detail = format!(
        "{} functions with unwind data, limit {} bytes; largest: {}",
        frames.frames.len(),
        policy.frame_limit,
        largest.map_or("none".to_owned(), |f| format!(
            "{} bytes at {:#x} {}",
            f.bytes,
            f.begin,
            name_at(map, f.begin)
        ))
    );
    if !over.is_empty() {
        let _ = write!(detail, "; over the limit: {}", over.join(", "));
    }
    if !unmeasured.is_empty() {
        let _ = write!(detail, "; not measured: {}", unmeasured.join(", "));
    }
    out.push(outcome(
        "every stack frame within the limit",
        !frames.frames.is_empty() && over.is_empty() && unmeasured.is_empty(),
        detail,
    ));
}

/// `(name)` of the map symbol at `rva`, or an empty string.
pub fn name_at(map: Option<&SymbolMap>, rva: u32) -> String {
    map.and_then(|m| m.at(rva)).map_or_else(String::new, |s| format!("({})", readable(&s.name)))
}

fn list_or<S: AsRef<str>>(empty: &str, items: &[S]) -> String {
    if items.is_empty() {
        empty.to_owned()
    } else {
        items.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ")
    }
}

/// The human-readable inventory printed before the verdicts.
pub fn inventory(facts: &Facts, map: Option<&SymbolMap>) -> String {
    let mut text = String::new();
    text.push_str("sections:\n");
    for s in &facts.sections {
        let _ = writeln!(text, "  {:<8} {} rva {:#07x} size {:#x}", s.name, s.protection(), s.rva, s.size);
    }
    text.push_str("imports:\n");
    for (module, names) in facts.imports_by_module() {
        let _ = writeln!(
            text,
            "  {module} ({}): {}",
            names.len(),
            names.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    text.push_str("exports:\n");
    for (name, rva, _) in facts.real_exports() {
        let _ = writeln!(text, "  {} at {rva:#x}", name.as_deref().unwrap_or("(unnamed)"));
    }
    let arm64 = facts.machine == Arch::Arm64.pe_machine();
    let mut frames: Vec<&unwind::Frame> = facts.frames.frames.iter().collect();
    frames.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.begin.cmp(&b.begin)));
    let _ = writeln!(text, "largest stack frames (of {}):", frames.len());
    for f in frames.iter().take(8) {
        let fp = if f.uses_frame_pointer && !arm64 { " [frame register]" } else { "" };
        let _ = writeln!(
            text,
            "  {:>5} bytes  {:#07x}..{:#07x} {}{fp}",
            f.bytes,
            f.begin,
            f.end,
            name_at(map, f.begin)
        );
    }
    if arm64 {
        text.push_str("ARM64 frames: the larger of the unwind-described prolog and the constant SP decrements in the code\n");
    } else {
        let with_fp = frames.iter().filter(|f| f.uses_frame_pointer).count();
        let _ =
            writeln!(text, "functions that set a frame register (RSP may move after the prolog): {with_fp}");
    }
    text
}

#[cfg(test)]
mod tests;
