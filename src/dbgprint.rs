//! Debug print through `DbgPrintEx` (component `DPFLTR_IHVNETWORK_ID`): formats into a fixed
//! 256-byte stack buffer (NUL-terminated, truncating), so it allocates nothing. Seen in a kernel
//! debugger or DebugView once the component's mask allows the level. The host model records
//! the text.

use core::fmt::{self, Write};

use crate::sys::{DPFLTR_IHVNETWORK_ID, DbgPrintEx};

const CAPACITY: usize = 256;

struct Buffer {
    bytes: [u8; CAPACITY],
    len: usize,
}

impl Write for Buffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep one byte for the terminator; truncate silently.
        let room = CAPACITY - 1 - self.len;
        let n = s.len().min(room);
        if let (Some(dst), Some(src)) = (self.bytes.get_mut(self.len..self.len + n), s.as_bytes().get(..n)) {
            dst.copy_from_slice(src);
            self.len += n;
        }
        Ok(())
    }
}

/// Prints `args` at `level` (a `DPFLTR_*_LEVEL`).
pub fn print(level: u32, args: fmt::Arguments<'_>) {
    let mut buf = Buffer { bytes: [0; CAPACITY], len: 0 };
    let _ = buf.write_fmt(args);
    if let Some(b) = buf.bytes.get_mut(buf.len) {
        *b = 0;
    }
    // SAFETY: "%s" with one NUL-terminated string argument, both alive for the call.
    unsafe { DbgPrintEx(DPFLTR_IHVNETWORK_ID, level, c"%s".as_ptr().cast(), buf.bytes.as_ptr()) };
}
