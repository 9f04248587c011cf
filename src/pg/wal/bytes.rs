//! Bounds-checked little-endian reads from WAL bytes. Every accessor returns
//! `None` instead of panicking when the slice is too short, so the parsers
//! built on them never panic on arbitrary input.
//!
//! WAL is written in the server's native byte order; like `pg_waldump` built
//! for the same platform, we read little-endian (x86_64, aarch64, ppc64le).

/// `N` bytes at `off`, if they are all there.
#[inline]
pub(crate) fn array_at<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    let end = off.checked_add(N)?;
    b.get(off..end)?.try_into().ok()
}

#[inline]
pub(crate) fn u8_at(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

#[inline]
pub(crate) fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    array_at(b, off).map(u16::from_le_bytes)
}

#[inline]
pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    array_at(b, off).map(u32::from_le_bytes)
}

#[inline]
pub(crate) fn i32_at(b: &[u8], off: usize) -> Option<i32> {
    array_at(b, off).map(i32::from_le_bytes)
}

#[inline]
pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    array_at(b, off).map(u64::from_le_bytes)
}

#[inline]
pub(crate) fn i64_at(b: &[u8], off: usize) -> Option<i64> {
    array_at(b, off).map(i64::from_le_bytes)
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
}
