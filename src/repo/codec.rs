//! How bytes are stored: zstd frames with zstd's own content checksum
//! (so a corrupted object fails to decode), and BLAKE3 (SHA-256 in older records) of the raw content
//! recorded in metadata (so a wrong-but-valid object is caught too).
//!
//! Stored bytes are not trusted, and a few KiB of them can expand to any
//! size (repeated frames of zeros): every decoder into memory stops at a
//! bound (a known size, or `MAX_DECOMPRESSED`), and a streaming decoder
//! takes one too (`decompress_stream_bounded`).

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

/// zstd level: 1 keeps wal-push well under the time Postgres takes to fill
/// a segment while still shrinking WAL 3-5x.
pub const LEVEL: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("stored object is corrupt (zstd: {0})")]
    Corrupt(#[source] io::Error),
    #[error("content checksum mismatch: expected sha256 {expected}, got {actual}")]
    Checksum { expected: String, actual: String },
    #[error("i/o while (de)compressing: {0}")]
    Io(#[source] io::Error),
    #[error("stored object decodes to more than {limit} bytes: it is corrupt or not pitr's")]
    TooLarge { limit: u64 },
}

/// The most `decompress` returns: the largest object pitr decodes whole
/// into memory is an archived `.partial` segment (at most a 1 GiB
/// segment); history files, `.backup` files and a segment's transaction
/// list are far smaller.
pub const MAX_DECOMPRESSED: u64 = 1 << 30;

pub use crate::catalog::envelope::sha256_hex;
pub use crate::catalog::ContentHash;

/// One-shot compression of a buffer: a single zstd frame with its content
/// checksum. (The streaming encoder copies input through its window and
/// takes the slower external-dictionary path: about 3x the CPU here.)
pub fn compress(raw: &[u8]) -> io::Result<Vec<u8>> {
    compressor()?.compress(raw)
}

/// A one-shot compressor at pitr's level, writing the frame checksum.
fn compressor() -> io::Result<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::new(LEVEL)?;
    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
    Ok(c)
}

/// Decodes a whole stored object of at most `MAX_DECOMPRESSED` bytes.
pub fn decompress(stored: &[u8]) -> Result<Vec<u8>, CodecError> {
    decompress_bounded(stored, MAX_DECOMPRESSED)
}

/// Decodes a whole stored object, refusing one that decodes to more than
/// `limit` bytes without holding more than about twice that.
pub fn decompress_bounded(stored: &[u8], limit: u64) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    zstd::stream::Decoder::new(stored)
        .and_then(|d| d.take(limit.saturating_add(1)).read_to_end(&mut out))
        .map_err(CodecError::Corrupt)?;
    if out.len() as u64 > limit {
        return Err(CodecError::TooLarge { limit });
    }
    Ok(out)
}

/// `compress` of the two halves of `raw` at once, on two threads: two
/// frames, one after the other, which every reader here decodes as one
/// stream. For one big buffer whose latency matters (a WAL segment
/// Postgres waits on).
pub fn compress_split(raw: &[u8]) -> io::Result<Vec<u8>> {
    if raw.len() < 1 << 20 {
        return compress(raw);
    }
    let (a, b) = raw.split_at(raw.len() / 2);
    let (first, second) = std::thread::scope(|scope| {
        let other = scope.spawn(|| compress(b));
        let first = compress(a);
        let second = other
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("a compressing thread panicked")));
        (first, second)
    });
    let mut out = first?;
    out.extend_from_slice(&second?);
    Ok(out)
}

/// Compresses one in-memory chunk; returns (stored bytes, content hash).
/// Each thread keeps its compression context (one allocation per worker,
/// not per chunk).
pub fn encode_chunk(raw: &[u8]) -> io::Result<(Vec<u8>, ContentHash)> {
    thread_local! {
        static CCTX: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let hash = ContentHash::of(raw);
    let stored = CCTX.with_borrow_mut(|slot| {
        let c = match slot {
            Some(c) => c,
            None => slot.insert(compressor()?),
        };
        c.compress(raw)
    })?;
    Ok((stored, hash))
}

const PIECE: usize = 64 << 10;

/// Decompresses `stored` in pieces of up to 64 KiB (no buffer of the whole
/// size, so no page faults for one), refusing more than `size` bytes;
/// returns the bytes seen.
fn for_each_piece(
    stored: &[u8],
    size: u64,
    mut each: impl FnMut(Vec<u8>) -> Result<(), CodecError>,
) -> Result<u64, CodecError> {
    let mut dec = zstd::stream::Decoder::with_buffer(stored).map_err(CodecError::Corrupt)?;
    let mut total = 0u64;
    loop {
        let mut buf = vec![0u8; PIECE];
        let mut got = 0;
        while got < PIECE {
            match dec.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CodecError::Corrupt(e)),
            }
        }
        if got == 0 {
            return Ok(total);
        }
        total += got as u64;
        if total > size {
            return Err(CodecError::Checksum {
                expected: format!("{size} bytes"),
                actual: "more".to_string(),
            });
        }
        buf.truncate(got);
        each(buf)?;
    }
}

fn check_decoded(
    size: u64,
    expected: &ContentHash,
    n: u64,
    actual: ContentHash,
) -> Result<(), CodecError> {
    if n != size {
        return Err(CodecError::Checksum {
            expected: format!("{size} bytes"),
            actual: format!("{n} bytes"),
        });
    }
    if &actual != expected {
        return Err(CodecError::Checksum {
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// Decodes a stored object of known size and content hash into `dst`, hashing
/// each piece as it is written (for many objects decoded by parallel
/// workers). `dst` may have received bytes when this fails; the caller
/// discards them.
pub fn decode_into(
    stored: &[u8],
    size: u64,
    expected: &ContentHash,
    mut dst: impl Write,
) -> Result<(), CodecError> {
    let mut h = expected.hasher();
    let n = for_each_piece(stored, size, |piece| {
        h.update(&piece);
        dst.write_all(&piece).map_err(CodecError::Io)
    })?;
    dst.flush().map_err(CodecError::Io)?;
    check_decoded(size, expected, n, h.finish())
}

/// `decode_into` with the hashing on a second thread, for one object whose
/// latency matters (a segment Postgres is waiting for).
pub fn decode_into_hashing_aside(
    stored: &[u8],
    size: u64,
    expected: &ContentHash,
    mut dst: impl Write,
) -> Result<(), CodecError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
    let mut h = expected.hasher();
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            for piece in rx {
                h.update(&piece);
            }
            h.finish()
        });
        let written = for_each_piece(stored, size, |piece| {
            dst.write_all(&piece).map_err(CodecError::Io)?;
            // A hasher that is gone shows up as a wrong hash below.
            let _ = tx.send(piece);
            Ok(())
        })
        .and_then(|n| dst.flush().map(|()| n).map_err(CodecError::Io));
        drop(tx);
        let hashed = hasher.join();
        let n = written?;
        let Ok(actual) = hashed else {
            return Err(CodecError::Io(io::Error::other(
                "the hashing thread panicked",
            )));
        };
        check_decoded(size, expected, n, actual)
    })
}

/// Streams `src` through zstd into `dst`; returns (raw bytes, raw sha256).
pub fn compress_stream(mut src: impl Read, dst: impl Write) -> io::Result<(u64, String)> {
    let mut enc = zstd::stream::Encoder::new(dst, LEVEL)?;
    enc.include_checksum(true)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        enc.write_all(&buf[..n])?;
        total += n as u64;
    }
    enc.finish()?.flush()?;
    Ok((total, hex::encode(hasher.finalize())))
}

/// Streams a zstd object from `src` into `dst`; returns (raw bytes, sha256).
/// Writes as much as the object decodes to: a caller that knows the size
/// should use `decompress_stream_bounded`.
pub fn decompress_stream(src: impl Read, dst: impl Write) -> Result<(u64, String), CodecError> {
    decompress_stream_bounded(src, dst, u64::MAX)
}

/// `decompress_stream`, refusing (before writing them) bytes past `limit`.
pub fn decompress_stream_bounded(
    src: impl Read,
    mut dst: impl Write,
    limit: u64,
) -> Result<(u64, String), CodecError> {
    let mut dec = zstd::stream::Decoder::new(src).map_err(CodecError::Corrupt)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CodecError::Corrupt(e)),
        };
        if total.saturating_add(n as u64) > limit {
            return Err(CodecError::TooLarge { limit });
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(CodecError::Io)?;
        total += n as u64;
    }
    dst.flush().map_err(CodecError::Io)?;
    Ok((total, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_chunk(stored: &[u8], size: u64, hash: &ContentHash) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        decode_into(stored, size, hash, &mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trip_and_corruption() {
        let raw: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let z = compress(&raw).unwrap();
        assert!(z.len() < raw.len());
        // Records written before BLAKE3 carry SHA-256: both verify.
        let sha = sha256_hex(&raw);
        for hash in [ContentHash::Sha256(sha.clone()), ContentHash::of(&raw)] {
            assert_eq!(decode_chunk(&z, raw.len() as u64, &hash).unwrap(), raw);
            assert!(matches!(
                decode_chunk(&z, raw.len() as u64, &hash.recompute(b"other")),
                Err(CodecError::Checksum { .. })
            ));
        }
        let mut bad = z.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        assert!(decode_chunk(&bad, raw.len() as u64, &ContentHash::of(&raw)).is_err());

        let mut streamed = Vec::new();
        let (n, s) = compress_stream(&raw[..], &mut streamed).unwrap();
        assert_eq!((n, s.as_str()), (raw.len() as u64, sha.as_str()));
        let mut out = Vec::new();
        let (n2, s2) = decompress_stream(&streamed[..], &mut out).unwrap();
        assert_eq!((n2, s2), (n, sha));
        assert_eq!(out, raw);
    }

    /// Found by tests/fuzz_parsers.rs (`codec_bombs_are_refused`, frames = 1,
    /// mib = 2): `decompress` held whatever a stored object expanded to, so
    /// a few KiB of repeated frames of zeros could take gigabytes.
    #[test]
    fn a_decompression_bomb_is_refused_at_its_limit() {
        let frame = compress(&vec![0u8; 2 << 20]).unwrap();
        assert!(frame.len() < 1024);
        let bomb = frame.repeat(8);
        let limit = 1 << 20;
        let r = decompress_bounded(&bomb, limit);
        assert!(
            matches!(r, Err(CodecError::TooLarge { limit: 1048576 })),
            "{r:?}"
        );
        let mut out = Vec::new();
        let r = decompress_stream_bounded(&bomb[..], &mut out, limit);
        assert!(matches!(r, Err(CodecError::TooLarge { .. })), "{r:?}");
        assert!(out.len() as u64 <= limit);
        // Exactly at the limit is fine.
        let exact = compress(&vec![7u8; 1 << 20]).unwrap();
        assert_eq!(decompress_bounded(&exact, limit).unwrap().len(), 1 << 20);
        let (n, _) = decompress_stream_bounded(&exact[..], &mut Vec::new(), limit).unwrap();
        assert_eq!(n, limit);
    }

    #[test]
    fn chunks_round_trip_and_refuse_wrong_size_or_content() {
        let raw: Vec<u8> = (0..50_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect();
        let (stored, hash) = encode_chunk(&raw).unwrap();
        assert_eq!(hash, ContentHash::of(&raw));
        let mut bad = stored.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;

        // Two frames decode as one stream.
        let big: Vec<u8> = (0..(3u32 << 20) / 4)
            .flat_map(|i| (i % 1013).to_le_bytes())
            .collect();
        let split = compress_split(&big).unwrap();
        let mut back = Vec::new();
        decode_into(&split, big.len() as u64, &ContentHash::of(&big), &mut back).unwrap();
        assert_eq!(back, big);
        let mut back = Vec::new();
        decompress_stream(&split[..], &mut back).unwrap();
        assert_eq!(back, big);

        // Decoding into a writer, both ways.
        type Decode = fn(&[u8], u64, &ContentHash, &mut Vec<u8>) -> Result<(), CodecError>;
        let ways: [Decode; 2] = [
            |s, n, h, out| decode_into(s, n, h, out),
            |s, n, h, out| decode_into_hashing_aside(s, n, h, out),
        ];
        for decode in ways {
            let mut out = Vec::new();
            decode(&stored, raw.len() as u64, &hash, &mut out).unwrap();
            assert_eq!(out, raw);
            for size in [raw.len() as u64 - 1, raw.len() as u64 + 1] {
                let r = decode(&stored, size, &hash, &mut Vec::new());
                assert!(matches!(r, Err(CodecError::Checksum { .. })), "{r:?}");
            }
            let other = ContentHash::of(b"x");
            let r = decode(&stored, raw.len() as u64, &other, &mut Vec::new());
            assert!(matches!(r, Err(CodecError::Checksum { .. })), "{r:?}");
            assert!(decode(&bad, raw.len() as u64, &hash, &mut Vec::new()).is_err());
        }
    }
}
