//! The one bounds-checked byte reader of `pg/`: fixed-width integers, a
//! double and a C `bool` at an offset, in a given byte order. Every read
//! returns `None` instead of panicking when the bytes are not all there, so
//! the decoders built on it (pg_control, WAL pages, records, resource
//! managers) never panic on arbitrary input.
//!
//! WAL is written in the server's native byte order; like `pg_waldump`
//! built for the same platform, the WAL decoders read little-endian
//! (x86_64, aarch64, ppc64le) through the `*_at` shorthands. pg_control
//! decoding detects the order from `pg_control_version` and reads through a
//! [`Reader`] of that order.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Byte order of the machine that wrote a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ByteOrder {
    Little,
    Big,
}

impl fmt::Display for ByteOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ByteOrder::Little => "little-endian",
            ByteOrder::Big => "big-endian",
        })
    }
}

/// Bounds-checked reads from `buf` in one byte order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    order: ByteOrder,
}

macro_rules! read_as {
    ($(#[$doc:meta])* $name:ident, $t:ty) => {
        $(#[$doc])*
        #[inline]
        pub(crate) fn $name(&self, off: usize) -> Option<$t> {
            let b = self.array(off)?;
            Some(match self.order {
                ByteOrder::Little => <$t>::from_le_bytes(b),
                ByteOrder::Big => <$t>::from_be_bytes(b),
            })
        }
    };
}

impl<'a> Reader<'a> {
    pub(crate) const fn new(buf: &'a [u8], order: ByteOrder) -> Reader<'a> {
        Reader { buf, order }
    }

    /// `N` bytes at `off`, if they are all there.
    #[inline]
    pub(crate) fn array<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let end = off.checked_add(N)?;
        self.buf.get(off..end)?.try_into().ok()
    }

    #[inline]
    pub(crate) fn u8(&self, off: usize) -> Option<u8> {
        self.buf.get(off).copied()
    }

    /// A C `bool`: one byte, anything but zero is true.
    #[inline]
    pub(crate) fn bool(&self, off: usize) -> Option<bool> {
        self.u8(off).map(|b| b != 0)
    }

    read_as!(u16, u16);
    read_as!(u32, u32);
    read_as!(i32, i32);
    read_as!(u64, u64);
    read_as!(i64, i64);
    read_as!(
        /// An IEEE-754 double (pg_control's `floatFormat`).
        f64,
        f64
    );
}

#[inline]
const fn le(b: &[u8]) -> Reader<'_> {
    Reader::new(b, ByteOrder::Little)
}

#[inline]
pub(crate) fn u8_at(b: &[u8], off: usize) -> Option<u8> {
    le(b).u8(off)
}

#[inline]
pub(crate) fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    le(b).u16(off)
}

#[inline]
pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    le(b).u32(off)
}

#[inline]
pub(crate) fn i32_at(b: &[u8], off: usize) -> Option<i32> {
    le(b).i32(off)
}

#[inline]
pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    le(b).u64(off)
}

#[inline]
pub(crate) fn i64_at(b: &[u8], off: usize) -> Option<i64> {
    le(b).i64(off)
}

/// MAXALIGN for the 8-byte alignment of every supported 64-bit platform.
#[inline]
pub(crate) const fn maxalign(n: usize) -> usize {
    (n + 7) & !7
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounds_checked() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(u16_at(&b, 0), Some(0x0201));
        assert_eq!(u32_at(&b, 5), Some(0x0908_0706));
        assert_eq!(u32_at(&b, 6), None);
        assert_eq!(u64_at(&b, 1), Some(0x0908_0706_0504_0302));
        assert_eq!(u64_at(&b, 2), None);
        assert_eq!(u8_at(&b, 9), None);
        assert_eq!(i64_at(&b, usize::MAX - 2), None);
        assert_eq!(maxalign(0), 0);
        assert_eq!(maxalign(1), 8);
        assert_eq!(maxalign(24), 24);
        assert_eq!(maxalign(114), 120);
    }

    #[test]
    fn big_endian_reads_the_same_bytes_the_other_way() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 0];
        let be = Reader::new(&b, ByteOrder::Big);
        assert_eq!(be.u16(0), Some(0x0102));
        assert_eq!(be.u32(0), Some(0x0102_0304));
        assert_eq!(be.u64(0), Some(0x0102_0304_0506_0708));
        assert_eq!(be.u64(2), None);
        assert_eq!(be.bool(8), Some(false));
        assert_eq!(be.bool(0), Some(true));
        assert_eq!(be.bool(9), None);
        let one = 1_234_567.0f64;
        assert_eq!(
            Reader::new(&one.to_be_bytes(), ByteOrder::Big).f64(0),
            Some(one)
        );
        assert_eq!(
            Reader::new(&one.to_le_bytes(), ByteOrder::Little).f64(0),
            Some(one)
        );
        assert_eq!(Reader::new(&b, ByteOrder::Little).i32(usize::MAX), None);
    }
}
