//! Stack frame sizes from the image's exception data (`.pdata` and the unwind records it points
//! to), decoded by goblin.
//!
//! Both Windows ABIs require unwind data for every function that moves the stack pointer or
//! saves a non-volatile register; a function without any is a leaf that uses no stack of its own.
//! So the `.pdata` table covers every function with a frame, and its prolog description gives the
//! frame's size:
//! * x64: the bytes the prolog pushes (`UWOP_PUSH_NONVOL`, 8 each; `UWOP_PUSH_MACHFRAME`) and
//!   allocates (`UWOP_ALLOC_SMALL`/`UWOP_ALLOC_LARGE`), plus those of the primary record when the
//!   record is chained. The caller's return address (8 bytes) is not counted.
//! * ARM64: packed records state the whole frame (`FrameSize`, in 16-byte units); full `.xdata`
//!   records are summed over the prolog's codes (index 0 up to `end`): the `alloc_*` sizes and the
//!   decrements of the pre-indexed saves (`save_*_x`, `save_r19r20_x`). That is not enough on
//!   its own: once a function has set up x29 as its frame pointer, the unwinder restores SP from
//!   it, and LLVM then leaves the `sub sp, sp, #locals` that follows out of the prolog codes (seen
//!   in this project's image: a 1408-byte allocation described only by its epilog). So the
//!   function's code is also scanned ([`arm64_code_bytes`]): every instruction that lowers SP by
//!   a constant (`sub sp, sp, #imm`; a load/store pair or register with SP write-back and a
//!   negative offset) is added up, over the whole function. The frame is the larger of the two;
//!   the scan over-counts rather than under-counts (two shrink-wrapped prologs on different paths
//!   both count). An SP decrement by a register amount cannot be sized and makes the function
//!   "not measured".
//!
//! What this does not see: x64 stack moved after the prolog (`alloca`-style allocation or stack
//! realignment, which the x64 ABI allows only in functions that set a frame register; those are
//! reported), and anything a function's callees use (each callee has its own entry).

use goblin::pe::PE;
use goblin::pe::exception::{
    Arm64RuntimeFunction, Arm64UnwindCode, RuntimeFunction, UnwindInfo, UnwindOperation,
};

/// The frame of one `.pdata` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// RVA of the first instruction the entry covers.
    pub begin: u32,
    /// RVA just past the last.
    pub end: u32,
    /// Bytes the prolog takes from the stack.
    pub bytes: u32,
    /// Whether the function sets a frame register (x64 `UWOP_SET_FPREG`, ARM64 `set_fp`/`add_fp`
    /// or a packed chained frame): it may move the stack pointer again after the prolog.
    pub uses_frame_pointer: bool,
}

/// Frames of every function with unwind data, or why one could not be measured.
#[derive(Debug, Default)]
pub struct Frames {
    /// The measured ones.
    pub frames: Vec<Frame>,
    /// Entries that could not be measured: (begin RVA, reason).
    pub unmeasured: Vec<(u32, String)>,
}

/// Deepest chain of x64 unwind records followed before giving up.
const MAX_CHAIN: usize = 32;

/// Reads every `.pdata` entry of an AMD64 or ARM64 image.
pub fn frames(pe: &PE<'_>, bytes: &[u8], arm64: bool) -> Frames {
    let mut out = Frames::default();
    let Some(exceptions) = &pe.exception_data else { return out };
    if arm64 {
        for function in exceptions.functions_arm64() {
            match function {
                Ok(function) => match arm64_frame(pe, bytes, function) {
                    Ok(frame) => out.frames.push(frame),
                    Err(reason) => out.unmeasured.push((function.begin_address, reason)),
                },
                Err(e) => out.unmeasured.push((0, format!(".pdata: {e}"))),
            }
        }
    } else {
        for function in exceptions.functions() {
            match function {
                Ok(function) => match x64_frame(pe, function) {
                    Ok(frame) => out.frames.push(frame),
                    Err(reason) => out.unmeasured.push((function.begin_address, reason)),
                },
                Err(e) => out.unmeasured.push((0, format!(".pdata: {e}"))),
            }
        }
    }
    out
}

fn x64_frame(pe: &PE<'_>, function: RuntimeFunction) -> Result<Frame, String> {
    let exceptions = pe.exception_data.as_ref().ok_or("no exception data")?;
    let mut bytes = 0u32;
    let mut frame_register = false;
    let mut current = function;
    for _ in 0..MAX_CHAIN {
        let info =
            exceptions.get_unwind_info(current, &pe.sections).map_err(|e| format!("unwind info: {e}"))?;
        let (own, sets_fp) = x64_prolog_bytes(&info)?;
        bytes = bytes.checked_add(own).ok_or("frame size overflows")?;
        frame_register |= sets_fp;
        match info.chained_info {
            Some(primary) => current = primary,
            None => {
                return Ok(Frame {
                    begin: function.begin_address,
                    end: function.end_address,
                    bytes,
                    uses_frame_pointer: frame_register,
                });
            }
        }
    }
    Err(format!("unwind records chained more than {MAX_CHAIN} deep"))
}

/// Bytes one x64 unwind record's prolog takes, and whether it sets a frame register.
fn x64_prolog_bytes(info: &UnwindInfo<'_>) -> Result<(u32, bool), String> {
    let mut operations = Vec::new();
    for code in info.unwind_codes() {
        operations.push(code.map_err(|e| format!("unwind code: {e}"))?.operation);
    }
    x64_operations_bytes(&operations).map(|bytes| (bytes, info.frame_register.0 != 0))
}

/// Bytes a list of x64 prolog operations takes from the stack.
fn x64_operations_bytes(operations: &[UnwindOperation]) -> Result<u32, String> {
    let mut bytes = 0u32;
    for operation in operations {
        let taken = match *operation {
            UnwindOperation::PushNonVolatile(_) => 8,
            UnwindOperation::Alloc(size) => size,
            // SS, RSP, EFLAGS, CS, RIP, and the error code when there is one.
            UnwindOperation::PushMachineFrame(error_code) => {
                if error_code {
                    48
                } else {
                    40
                }
            }
            _ => 0,
        };
        bytes = bytes.checked_add(taken).ok_or("frame size overflows")?;
    }
    Ok(bytes)
}

fn arm64_frame(pe: &PE<'_>, image: &[u8], function: Arm64RuntimeFunction) -> Result<Frame, String> {
    let described = arm64_described_frame(pe, function)?;
    let code = code_bytes(pe, image, described.begin, described.end)?;
    let scanned = arm64_code_bytes(code)?;
    Ok(Frame { bytes: described.bytes.max(scanned), ..described })
}

/// The frame as the unwind data describes it.
fn arm64_described_frame(pe: &PE<'_>, function: Arm64RuntimeFunction) -> Result<Frame, String> {
    let begin = function.begin_address;
    if function.is_packed() {
        if function.flag() == 3 {
            return Err("reserved packed-unwind flag 3".to_owned());
        }
        let end = begin.checked_add(function.function_length()).ok_or("function end overflows")?;
        // CR = 2 or 3: x29/lr saved and x29 set up as the frame pointer.
        return Ok(Frame {
            begin,
            end,
            bytes: function.frame_size(),
            uses_frame_pointer: function.cr() >= 2,
        });
    }
    let exceptions = pe.exception_data.as_ref().ok_or("no exception data")?;
    let info = exceptions
        .get_unwind_info_arm64(function, &pe.sections)
        .ok_or("no .xdata record")?
        .map_err(|e| format!(".xdata: {e}"))?;
    let end = begin.checked_add(info.header.function_length()).ok_or("function end overflows")?;
    let mut codes = Vec::new();
    for code in info.unwind_codes(0).map_err(|e| format!(".xdata codes: {e}"))? {
        let code = code.map_err(|e| format!(".xdata code: {e}"))?.code;
        if matches!(code, Arm64UnwindCode::End | Arm64UnwindCode::EndC) {
            break;
        }
        codes.push(code);
    }
    let (bytes, frame_register) = arm64_prolog_bytes(&codes)?;
    Ok(Frame { begin, end, bytes, uses_frame_pointer: frame_register })
}

/// Bytes a list of ARM64 prolog codes (before `end`) takes, and whether it sets a frame register.
fn arm64_prolog_bytes(codes: &[Arm64UnwindCode]) -> Result<(u32, bool), String> {
    let mut bytes = 0u32;
    let mut frame_register = false;
    for code in codes {
        let taken = match *code {
            Arm64UnwindCode::AllocSmall { size_bytes }
            | Arm64UnwindCode::AllocMedium { size_bytes }
            | Arm64UnwindCode::AllocLarge { size_bytes } => size_bytes,
            Arm64UnwindCode::SaveR19R20Preindexed { offset_bytes }
            | Arm64UnwindCode::SaveFpLrPreindexed { offset_bytes }
            | Arm64UnwindCode::SaveRegPairPreindexed { offset_bytes, .. }
            | Arm64UnwindCode::SaveRegPreindexed { offset_bytes, .. }
            | Arm64UnwindCode::SaveFRegPairPreindexed { offset_bytes, .. }
            | Arm64UnwindCode::SaveFRegPreindexed { offset_bytes, .. } => offset_bytes,
            Arm64UnwindCode::SetFp | Arm64UnwindCode::AddFp { .. } => {
                frame_register = true;
                0
            }
            Arm64UnwindCode::SaveFpLr { .. }
            | Arm64UnwindCode::SaveRegPair { .. }
            | Arm64UnwindCode::SaveReg { .. }
            | Arm64UnwindCode::SaveLrPair { .. }
            | Arm64UnwindCode::SaveFRegPair { .. }
            | Arm64UnwindCode::SaveFReg { .. }
            | Arm64UnwindCode::SaveNext
            | Arm64UnwindCode::Nop
            | Arm64UnwindCode::PacSignLr
            | Arm64UnwindCode::SaveAnyReg { preindexed: false, .. } => 0,
            // SVE allocations, pre-indexed `save_any_reg`, custom stack cases, reserved codes:
            // their effect on the frame is not something this check models.
            other => return Err(format!("prolog code not measured: {other:?}")),
        };
        bytes = bytes.checked_add(taken).ok_or("frame size overflows")?;
    }
    Ok((bytes, frame_register))
}

/// The bytes of the image at RVAs `begin..end`, which must lie in one section's file data.
fn code_bytes<'a>(pe: &PE<'_>, image: &'a [u8], begin: u32, end: u32) -> Result<&'a [u8], String> {
    let section = pe
        .sections
        .iter()
        .find(|s| begin >= s.virtual_address && end <= s.virtual_address.saturating_add(s.size_of_raw_data))
        .ok_or_else(|| format!("{begin:#x}..{end:#x} is not inside one section's data"))?;
    let start = usize::try_from(section.pointer_to_raw_data + (begin - section.virtual_address))
        .map_err(|e| e.to_string())?;
    let length = usize::try_from(end - begin).map_err(|e| e.to_string())?;
    image
        .get(start..start + length)
        .ok_or_else(|| format!("{begin:#x}..{end:#x} lies past the end of the file"))
}

/// Sign-extends the low `bits` bits of `value`.
fn signed(value: u32, bits: u32) -> i64 {
    let shift = 64 - bits;
    (i64::from(value) << shift) >> shift
}

/// Bytes by which the A64 instructions in `code` lower SP by constants, added up. The encodings
/// recognised (Arm A64 instruction set; `Rn`/`Rd` = 31 is SP in these forms):
/// * `SUB (immediate)`, 64-bit, `Rd` = `Rn` = SP: `sub sp, sp, #imm12{, lsl #12}`;
/// * load/store pair, pre- or post-indexed, `Rn` = SP, negative `imm7` (scaled by the access
///   size): `stp x29, x30, [sp, #-16]!`;
/// * load/store register (unscaled `imm9`), pre- or post-indexed, `Rn` = SP, negative offset:
///   `str x19, [sp, #-32]!`.
///
/// `SUB (extended register)` into SP (`sub sp, sp, x15, uxtx #4`, the stack-probe sequence)
/// lowers SP by an amount only known at run time: an error.
pub fn arm64_code_bytes(code: &[u8]) -> Result<u32, String> {
    let mut total: i64 = 0;
    for (index, word) in code.chunks_exact(4).enumerate() {
        let insn = u32::from_le_bytes(word.try_into().map_err(|_| "short instruction word")?);
        let lowered = if insn & 0xFF80_03FF == 0xD100_03FF {
            // sf=1 op=1 S=0 100010 sh imm12 Rn=SP Rd=SP
            let imm12 = i64::from((insn >> 10) & 0xFFF);
            if insn & (1 << 22) == 0 { imm12 } else { imm12 << 12 }
        } else if insn & 0x3A80_03E0 == 0x2880_03E0 {
            // opc 101 V 0 (pre 011 | post 001) L imm7 Rt2 Rn=SP Rt
            let opc = insn >> 30;
            let vector = insn & (1 << 26) != 0;
            let scale = match (vector, opc) {
                (false, 0b00 | 0b01) | (true, 0b00) => 4,
                (false, 0b10) | (true, 0b01) => 8,
                (true, 0b10) => 16,
                _ => return Err(format!("unallocated load/store pair encoding {insn:#010x}")),
            };
            -signed((insn >> 15) & 0x7F, 7) * scale
        } else if insn & 0x3B20_07E0 == 0x3800_07E0 {
            // size 111 V 00 opc 0 imm9 (pre 11 | post 01) Rn=SP Rt
            -signed((insn >> 12) & 0x1FF, 9)
        } else if insn & 0xFFE0_001F == 0xCB20_001F {
            return Err(format!("SP lowered by a register amount at +{:#x} ({insn:#010x})", index * 4));
        } else {
            0
        };
        total += lowered.max(0);
    }
    u32::try_from(total).map_err(|_| "frame size overflows".to_owned())
}

#[cfg(test)]
mod tests {
    use goblin::pe::exception::{
        Arm64RuntimeFunction, Arm64UnwindCode, Arm64UnwindCodeIterator, Register, UnwindOperation,
    };

    use super::{arm64_prolog_bytes, x64_operations_bytes};

    #[test]
    fn x64_counts_pushes_allocations_and_machine_frames() {
        let operations = [
            UnwindOperation::Alloc(0x128),
            UnwindOperation::PushNonVolatile(Register(3)),
            UnwindOperation::SetFPRegister,
            UnwindOperation::PushNonVolatile(Register(5)),
        ];
        assert_eq!(x64_operations_bytes(&operations), Ok(0x128 + 16));
        assert_eq!(x64_operations_bytes(&[UnwindOperation::PushMachineFrame(true)]), Ok(48));
        assert_eq!(x64_operations_bytes(&[]), Ok(0));
        assert!(
            x64_operations_bytes(&[UnwindOperation::Alloc(u32::MAX), UnwindOperation::Alloc(8)]).is_err()
        );
    }

    /// Decodes unwind bytes as they sit in an `.xdata` record (prolog first, up to `end`).
    fn decode(bytes: &[u8]) -> Vec<Arm64UnwindCode> {
        Arm64UnwindCodeIterator::new(bytes, 0)
            .unwrap()
            .map(|code| code.unwrap().code)
            .take_while(|code| !matches!(code, Arm64UnwindCode::End | Arm64UnwindCode::EndC))
            .collect()
    }

    #[test]
    fn arm64_full_record() {
        // Encodings from the ARM64 unwind-code table, in unwind order (last prolog instruction
        // first):
        //   0xC0 0x20        alloc_m   X = 0x020 → sub sp, sp, #512
        //   0xE1             set_fp    mov x29, sp
        //   0x81             save_fplr_x Z = 1 → stp x29, lr, [sp, #-16]!
        //   0xCC 0x03        save_regp_x X = 0 (x19,x20), Z = 3 → [sp, #-32]!
        //   0xE4             end
        let codes = decode(&[0xC0, 0x20, 0xE1, 0x81, 0xCC, 0x03, 0xE4, 0xE3]);
        assert_eq!(arm64_prolog_bytes(&codes), Ok((512 + 16 + 32, true)));
        //   0x02             alloc_s   X = 2 → 32 bytes
        //   0x24             save_r19r20_x Z = 4 → [sp, #-32]!
        //   0xD0 0x42        save_reg  x20 at [sp, #16]: no change of sp
        //   0xE4             end
        let codes = decode(&[0x02, 0x24, 0xD0, 0x42, 0xE4, 0xE3, 0xE3, 0xE3]);
        assert_eq!(arm64_prolog_bytes(&codes), Ok((32 + 32, false)));
        //   0xE0 0x00 0x01 0x00  alloc_l X = 0x100 → 4096 bytes
        let codes = decode(&[0xE0, 0x00, 0x01, 0x00, 0xE4, 0xE3, 0xE3, 0xE3]);
        assert_eq!(arm64_prolog_bytes(&codes), Ok((4096, false)));
    }

    #[test]
    fn arm64_unknown_prolog_code_is_not_measured() {
        // 0xDF alloc_z (SVE).
        let codes = decode(&[0xDF, 0x01, 0xE4, 0xE3]);
        assert!(arm64_prolog_bytes(&codes).is_err());
    }

    /// Little-endian code from instruction words (encodings checked with `llvm-mc -show-encoding`).
    fn words(list: &[u32]) -> Vec<u8> {
        list.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn arm64_scan_adds_constant_sp_decrements() {
        let code = words(&[
            0xA9BD_53F3, // stp x19, x20, [sp, #-0x30]!
            0xA901_7BFD, // stp x29, x30, [sp, #0x10]      (no write-back)
            0x9100_43FD, // add x29, sp, #0x10
            0xD116_03FF, // sub sp, sp, #0x580
            0xF81E_0FF3, // str x19, [sp, #-0x20]!
            0x6DBE_27E8, // stp d8, d9, [sp, #-0x20]!
            0xD140_07FF, // sub sp, sp, #1, lsl #12
            0x9116_03FF, // add sp, sp, #0x580             (raises SP: ignored)
            0xA8C3_53F3, // ldp x19, x20, [sp], #0x30      (post-index, raises SP)
            0xF81F_07E0, // str x0, [sp], #-16             (post-index, lowers SP)
            0xADBE_07E0, // stp q0, q1, [sp, #-64]!
            0xF85F_0FE0, // ldr x0, [sp, #-16]!
            0xB81F_CFE0, // str w0, [sp, #-4]!
            0xD65F_03C0, // ret
        ]);
        assert_eq!(
            super::arm64_code_bytes(&code),
            Ok(0x30 + 0x580 + 0x20 + 0x20 + 0x1000 + 16 + 64 + 16 + 4)
        );
    }

    #[test]
    fn arm64_scan_ignores_other_registers_and_refuses_register_amounts() {
        // sub x0, x0, #0x580; stp x19, x20, [x0, #-0x30]!; str x19, [x1, #-0x20]!
        assert_eq!(super::arm64_code_bytes(&words(&[0xD116_0000, 0xA9BD_5013, 0xF81E_0C33])), Ok(0));
        // sub sp, sp, x15, uxtx #4
        assert!(super::arm64_code_bytes(&words(&[0xCB2F_73FF])).is_err());
    }

    #[test]
    fn arm64_packed_frame_size_is_in_16_byte_units() {
        // Flag 1, FunctionLength 8 (x4 bytes), RegI 2, CR 3, FrameSize 5 (x16 bytes).
        let unwind_data = 1 | (8 << 2) | (2 << 16) | (3 << 21) | (5 << 23);
        let function = Arm64RuntimeFunction { begin_address: 0x1000, unwind_data };
        assert!(function.is_packed());
        assert_eq!(function.frame_size(), 80);
        assert_eq!(function.function_length(), 32);
    }
}
