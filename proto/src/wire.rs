//! The wire format: every protocol type is a `#[repr(C)]` struct of little-endian unsigned
//! integers (and arrays and structs of them) with no implicit padding, so its byte image on a
//! little-endian machine (x64, ARM64) *is* the wire format, and a C client can use the same
//! declaration. [`Wire`] encodes and decodes field by field, without `unsafe` and without any
//! assumption about the alignment of the buffer (a `METHOD_BUFFERED` system buffer, a `Vec`).
//!
//! [`wire_struct!`] declares a type and its [`Wire`] impl together and asserts at compile time
//! that `size_of` equals the sum of the field sizes (no padding, so the in-memory layout is the
//! wire layout).

/// Writes into a byte buffer; writes past its end are dropped (callers check the length first,
/// so that never happens, but nothing here can panic or write out of bounds).
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Appends `bytes`.
    pub fn bytes(&mut self, bytes: &[u8]) {
        let end = self.pos.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }

    /// Bytes written (or skipped) so far.
    #[must_use]
    pub const fn position(&self) -> usize {
        self.pos
    }
}

/// Reads from a byte buffer; reads past its end yield zeros (callers check the length first).
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    #[must_use]
    pub const fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// The next `N` bytes.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let end = self.pos.saturating_add(N);
        let out = self.buf.get(self.pos..end).and_then(|s| <[u8; N]>::try_from(s).ok()).unwrap_or([0; N]);
        self.pos = end;
        out
    }
}

/// A type with a fixed-size little-endian wire image.
pub trait Wire: Copy {
    /// Bytes of the wire image (equal to `size_of::<Self>()`, asserted for every struct).
    const SIZE: usize;
    /// The all-zero value.
    const ZERO: Self;

    /// Writes the wire image.
    fn put(&self, w: &mut Writer<'_>);

    /// Reads a wire image.
    fn get(r: &mut Reader<'_>) -> Self;

    /// Encodes into the start of `out`; returns the bytes written, or None if `out` is shorter
    /// than [`SIZE`](Self::SIZE) (then nothing is written).
    fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let dst = out.get_mut(..Self::SIZE)?;
        self.put(&mut Writer::new(dst));
        Some(Self::SIZE)
    }

    /// Decodes from the start of `bytes`; None if it is shorter than [`SIZE`](Self::SIZE).
    #[must_use]
    fn decode(bytes: &[u8]) -> Option<Self> {
        let src = bytes.get(..Self::SIZE)?;
        Some(Self::get(&mut Reader::new(src)))
    }
}

macro_rules! wire_int {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            const SIZE: usize = core::mem::size_of::<$t>();
            const ZERO: Self = 0;
            fn put(&self, w: &mut Writer<'_>) {
                w.bytes(&self.to_le_bytes());
            }
            fn get(r: &mut Reader<'_>) -> Self {
                <$t>::from_le_bytes(r.bytes())
            }
        }
    )*};
}
wire_int!(u8, u16, u32, u64);

impl<T: Wire, const N: usize> Wire for [T; N] {
    const SIZE: usize = T::SIZE * N;
    const ZERO: Self = [T::ZERO; N];
    fn put(&self, w: &mut Writer<'_>) {
        for v in self {
            v.put(w);
        }
    }
    fn get(r: &mut Reader<'_>) -> Self {
        let mut out = Self::ZERO;
        for v in &mut out {
            *v = T::get(r);
        }
        out
    }
}

/// Declares a `#[repr(C)]` protocol struct, its [`Wire`] impl (fields in declaration order),
/// and a compile-time assertion that it has no padding.
#[macro_export]
macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty ),*
        }

        impl $crate::wire::Wire for $name {
            const SIZE: usize = 0 $( + <$ty as $crate::wire::Wire>::SIZE )*;
            const ZERO: Self = Self { $( $field: <$ty as $crate::wire::Wire>::ZERO ),* };
            fn put(&self, w: &mut $crate::wire::Writer<'_>) {
                $( $crate::wire::Wire::put(&self.$field, w); )*
            }
            fn get(r: &mut $crate::wire::Reader<'_>) -> Self {
                Self { $( $field: <$ty as $crate::wire::Wire>::get(r) ),* }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                <Self as $crate::wire::Wire>::ZERO
            }
        }

        const _: () = assert!(
            core::mem::size_of::<$name>() == <$name as $crate::wire::Wire>::SIZE,
            concat!(stringify!($name), ": implicit padding (the wire image would differ from repr(C))")
        );
        const _: () = assert!(core::mem::align_of::<$name>() <= 8, concat!(stringify!($name), ": over-aligned"));
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::wire_struct! {
        /// Test type.
        pub struct Pair {
            /// a
            pub a: u32,
            /// b
            pub b: [u16; 2],
            /// c
            pub c: u64,
        }
    }

    #[test]
    fn round_trip_little_endian_and_short_buffers() {
        let p = Pair { a: 0x0102_0304, b: [0x0506, 0x0708], c: 0x1122_3344_5566_7788 };
        let mut buf = [0u8; 16];
        assert_eq!(p.encode(&mut buf), Some(16));
        assert_eq!(buf, [4, 3, 2, 1, 6, 5, 8, 7, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
        assert_eq!(Pair::decode(&buf), Some(p));
        let mut short = [0xEEu8; 15];
        assert_eq!(p.encode(&mut short), None);
        assert_eq!(short, [0xEE; 15], "nothing written into a short buffer");
        assert_eq!(Pair::decode(&buf[..15]), None);
    }
}
