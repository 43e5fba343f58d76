//! Debug print, in every build: formats into a fixed stack buffer and hands the text to
//! `DbgPrintEx` as one `"%s"` argument.
//!
//! No allocation, no lock, no panic: safe to call at any IRQL up to DIRQL (`DbgPrintEx`'s own
//! bound; the text never contains `%` directives of its own, so `%wZ`/`%ws`, which need
//! PASSIVE_LEVEL, never reach it). Output longer than [`BUFFER_SIZE`]` - 1` bytes is cut (at a
//! character boundary); a NUL inside the formatted text ends it early, as it would in C.
//!
//! Where the text goes: the kernel builds call `DbgPrintEx` in ntoskrnl (component
//! `DPFLTR_IHVNETWORK_ID`; visible in a debugger or DebugView once that component's mask allows
//! the level), the `wdk` build through wdk-sys' binding (`crate::platform`), and the host build
//! the user-mode NDIS model's stand-in with the same signature.

use core::ffi::CStr;
use core::fmt;

/// Bytes of the stack buffer one [`print`] formats into, terminating NUL included. Well under
/// `DbgPrintEx`'s 512-byte limit for one call.
pub const BUFFER_SIZE: usize = 256;

/// A NUL-terminated text of at most [`BUFFER_SIZE`]` - 1` bytes, filled through [`fmt::Write`].
#[derive(Debug)]
pub struct Buffer {
    /// The text, then at least one NUL (the tail is all zeros).
    bytes: [u8; BUFFER_SIZE],
    /// Bytes of text written so far.
    len: usize,
    /// Whether something did not fit.
    truncated: bool,
}

impl Buffer {
    /// An empty buffer.
    #[must_use]
    pub const fn new() -> Self {
        Self { bytes: [0; BUFFER_SIZE], len: 0, truncated: false }
    }

    /// The text written so far, up to its first NUL.
    #[must_use]
    pub fn as_c_str(&self) -> &CStr {
        // The last byte is never written (`write_str` keeps one byte free), so a NUL is always
        // found; the empty string is a safe fallback that cannot be reached.
        CStr::from_bytes_until_nul(&self.bytes).unwrap_or(c"")
    }

    /// Whether some output did not fit and was dropped.
    #[must_use]
    pub const fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl Default for Buffer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for Buffer {
    /// Appends as much of `s` as fits, cutting at a character boundary; reports `fmt::Error` once
    /// something was dropped, which ends the formatting early (the kept prefix stays valid).
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = BUFFER_SIZE - 1 - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        let (Some(dst), Some(src)) =
            (self.bytes.get_mut(self.len..self.len + take), s.as_bytes().get(..take))
        else {
            // Unreachable: `take <= room` keeps both ranges in bounds.
            self.truncated = true;
            return Err(fmt::Error);
        };
        dst.copy_from_slice(src);
        self.len += take;
        if take < s.len() {
            self.truncated = true;
            return Err(fmt::Error);
        }
        Ok(())
    }
}

/// Formats `args` and prints the text with `DbgPrintEx(DPFLTR_IHVNETWORK_ID, level, "%s", text)`.
/// Use `format_args!`: `print(DPFLTR_INFO_LEVEL, format_args!("attached to {if_index}"))`.
pub fn print(level: u32, args: fmt::Arguments<'_>) {
    let mut buffer = Buffer::new();
    // An error only means the text was cut: print the part that fit.
    let _ = fmt::write(&mut buffer, args);
    emit(level, buffer.as_c_str());
}

/// Hands one formatted text to the project's own `DbgPrintEx` declaration (kernel build: the
/// ntoskrnl export; host build: the NDIS model's definition).
#[cfg(not(feature = "wdk"))]
fn emit(level: u32, text: &CStr) {
    // SAFETY: both strings are NUL-terminated and outlive the call; the format takes exactly the
    // one `%s` argument passed.
    let _ = unsafe {
        crate::sys::DbgPrintEx(
            crate::sys::DPFLTR_IHVNETWORK_ID,
            level,
            c"%s".as_ptr().cast(),
            text.as_ptr().cast(),
        )
    };
}

#[cfg(feature = "wdk")]
use crate::platform::emit;

#[cfg(test)]
mod tests {
    use core::fmt::Write;

    use super::{BUFFER_SIZE, Buffer};

    #[test]
    fn formats_and_terminates() {
        let mut buffer = Buffer::new();
        write!(buffer, "module {} on if {:#x}", 3, 0x2a).unwrap();
        assert_eq!(buffer.as_c_str(), c"module 3 on if 0x2a");
        assert!(!buffer.is_truncated());
    }

    #[test]
    fn cuts_long_text_and_keeps_the_terminator() {
        let mut buffer = Buffer::new();
        let long = "x".repeat(1000);
        assert!(write!(buffer, "{long}").is_err());
        assert!(buffer.is_truncated());
        assert_eq!(buffer.as_c_str().to_bytes().len(), BUFFER_SIZE - 1);
        // Nothing more fits, but what is there stays intact.
        assert!(write!(buffer, "y").is_err());
        assert_eq!(buffer.as_c_str().to_bytes(), long.as_bytes().get(..BUFFER_SIZE - 1).unwrap());
    }

    #[test]
    fn cuts_at_a_character_boundary() {
        let mut buffer = Buffer::new();
        // 254 ASCII bytes leave one byte free: a two-byte character does not fit in it.
        write!(buffer, "{}", "a".repeat(BUFFER_SIZE - 2)).unwrap();
        assert!(write!(buffer, "é").is_err());
        assert_eq!(buffer.as_c_str().to_bytes().len(), BUFFER_SIZE - 2);
        assert!(core::str::from_utf8(buffer.as_c_str().to_bytes()).is_ok());
    }

    #[test]
    fn interior_nul_ends_the_text() {
        let mut buffer = Buffer::new();
        write!(buffer, "ab\0cd").unwrap();
        assert_eq!(buffer.as_c_str(), c"ab");
    }

    #[test]
    fn exactly_full_is_not_truncated() {
        let mut buffer = Buffer::new();
        write!(buffer, "{}", "z".repeat(BUFFER_SIZE - 1)).unwrap();
        assert!(!buffer.is_truncated());
        assert_eq!(buffer.as_c_str().to_bytes().len(), BUFFER_SIZE - 1);
    }
}
