//! PostgreSQL's out-of-line (TOAST) values, read without PostgreSQL: the
//! pointer a heap row holds in place of a value, and the reassembly of the
//! value from the TOAST table's chunks.
//!
//! Why: a `vector(768)` is 3,080 bytes, more than a heap row may hold inline
//! (about 2 kB), so PostgreSQL stores it in the table's TOAST table as two
//! chunks of at most ~2 kB, and the row keeps an 18-byte pointer. Reading one
//! such value through `pg_detoast_datum` opens the TOAST table and its index,
//! locks both, starts an index scan, reads the chunks and closes everything
//! again: ~7 µs a row, most of it the opening and closing. A re-rank reads
//! tens to hundreds of them per query, so the glue (src/ivfpq/toast.rs) keeps
//! one index scan open for the whole query and uses these two pieces to decide
//! which values it can read that way and to check what it reads. Anything they
//! do not accept (a compressed value, a pointer of another kind, chunks that do
//! not add up) goes to `pg_detoast_datum`, which raises PostgreSQL's own errors
//! for damaged values.
//!
//! Formats (PostgreSQL's `varatt.h`, little-endian machines): an external
//! datum starts with the byte `0x01` (a 1-byte header of length 0), then a tag
//! (`18`: on disk), then `varatt_external`, unaligned: `va_rawsize` (i32, the
//! value's size with its 4-byte header), `va_extinfo` (u32: the stored size
//! without header in the low 30 bits, the compression method above them),
//! `va_valueid` (the value's OID in the TOAST table: its chunks' `chunk_id`)
//! and `va_toastrelid` (the TOAST table's OID). A value is compressed when its
//! stored size is less than its raw size without header. Chunks are numbered
//! from 0 (`chunk_seq`) and their data concatenated gives the stored value.

/// The 1-byte header of an external datum (little-endian): length bits 0,
/// low bit set.
const EXTERNAL_HEADER: u8 = 0x01;

/// `VARTAG_ONDISK`: a pointer into a TOAST table (other tags point into
/// memory and never appear in a heap row).
pub const VARTAG_ONDISK: u8 = 18;

/// Bytes of an on-disk external datum: the 2-byte header and tag, then the
/// 16 bytes of `varatt_external`.
pub const POINTER_BYTES: usize = 2 + 16;

/// Bits of `va_extinfo` that hold the stored size.
const EXTSIZE_MASK: u32 = (1 << 30) - 1;

/// `VARHDRSZ`: the 4-byte header of a plain varlena.
pub const VARHDRSZ: usize = 4;

/// What an on-disk TOAST pointer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExternalPointer {
    /// The value's size with its 4-byte header, as stored in the pointer.
    pub rawsize: i32,
    /// Bytes stored in the TOAST table (the value without header, or its
    /// compressed form).
    pub extsize: u32,
    /// `chunk_id` of the value's chunks.
    pub valueid: u32,
    /// The TOAST table holding them.
    pub toastrelid: u32,
}

impl ExternalPointer {
    /// Whether the stored bytes are compressed (PostgreSQL's
    /// `VARATT_EXTERNAL_IS_COMPRESSED`).
    pub fn compressed(&self) -> bool {
        i64::from(self.extsize) < i64::from(self.rawsize) - VARHDRSZ as i64
    }

    /// The stored size when the value is stored as it is (not compressed, and
    /// its raw size agrees): the bytes to reassemble, without header.
    pub fn plain_size(&self) -> Option<usize> {
        (!self.compressed() && i64::from(self.extsize) == i64::from(self.rawsize) - VARHDRSZ as i64)
            .then_some(self.extsize as usize)
    }
}

/// The pointer of an on-disk external datum starting at `datum[0]`, or None
/// for anything else (an inline value, an in-memory pointer, too few bytes,
/// a big-endian machine, whose header bits differ). Never panics.
pub fn external_pointer(datum: &[u8]) -> Option<ExternalPointer> {
    if cfg!(target_endian = "big") {
        return None;
    }
    let b = datum.get(..POINTER_BYTES)?;
    if b[0] != EXTERNAL_HEADER || b[1] != VARTAG_ONDISK {
        return None;
    }
    let word = |at: usize| [b[at], b[at + 1], b[at + 2], b[at + 3]];
    Some(ExternalPointer {
        rawsize: i32::from_ne_bytes(word(2)),
        extsize: u32::from_ne_bytes(word(6)) & EXTSIZE_MASK,
        valueid: u32::from_ne_bytes(word(10)),
        toastrelid: u32::from_ne_bytes(word(14)),
    })
}

/// Whether a varlena datum starting with `header` is stored in line and
/// uncompressed, so that reading it costs nothing beyond its row: a plain
/// 4-byte header (PostgreSQL's `VARATT_IS_4B_U`, low bits 00) or a short
/// 1-byte one (`VARATT_IS_1B` but not `VARATT_IS_1B_E`: low bit 1, not the
/// byte 0x01 of an external pointer; values under 127 bytes are stored so).
/// False for a compressed value, an external pointer, no bytes, a big-endian
/// machine. Never panics.
pub fn plain_inline(header: &[u8]) -> bool {
    !cfg!(target_endian = "big")
        && header
            .first()
            .is_some_and(|&b| b & 0x03 == 0 || (b & 0x01 == 1 && b != EXTERNAL_HEADER))
}

/// Why a value's chunks were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk's number is not the next one (missing, repeated or out of order).
    Sequence { got: i32, want: i32 },
    /// The chunks hold more bytes than the pointer says.
    TooLong,
    /// The chunks ended before the pointer's size.
    Short { got: usize, want: usize },
    /// A chunk is not of its size: every chunk but the last holds exactly
    /// the table's chunk size, the last what is left (PostgreSQL's own check:
    /// "unexpected chunk size").
    Size { seq: i32, got: usize, want: usize },
}

/// PostgreSQL's `TOAST_MAX_CHUNK_SIZE` for pages of `block_size` bytes: the
/// bytes of a value one TOAST chunk holds (1,996 at 8 kB). Four chunk rows fit
/// a page (`EXTERN_TUPLE_MAX_SIZE`: a quarter of the page after its 24-byte
/// header and four line pointers, aligned down to 8), less a chunk row's
/// aligned 24-byte tuple header, its `chunk_id`, `chunk_seq` and the
/// `chunk_data` varlena header (4 bytes each).
pub const fn max_chunk_size(block_size: usize) -> usize {
    const MAXALIGN: usize = 8;
    let page_header_and_pointers = (24usize + 4 * 4).div_ceil(MAXALIGN) * MAXALIGN;
    let tuple_max = (block_size - page_header_and_pointers) / 4 / MAXALIGN * MAXALIGN;
    let tuple_header = 23usize.div_ceil(MAXALIGN) * MAXALIGN;
    tuple_max - tuple_header - 4 - 4 - VARHDRSZ
}

/// Reassembles one value from its chunks, read in `chunk_seq` order, into
/// `out` (exactly the stored size). A chunk sequence that is not 0, 1, 2, …,
/// a chunk not of its size (every one but the last `chunk` bytes, the last
/// what is left), or chunks that do not add up to `out.len()` are refused, so
/// a damaged TOAST table is never read as a value. (Sizes that only add up:
/// chunks of 1,992 and 1,084 bytes where PostgreSQL wrote 1,996 and 1,080
/// were read as a value with four bytes moved, a wrong distance and a row
/// ranked 19th that was the nearest, where PostgreSQL's reader says XX001;
/// hunt-144.)
pub struct Assembly<'a> {
    out: &'a mut [u8],
    got: usize,
    next: i32,
    chunk: usize,
}

impl<'a> Assembly<'a> {
    /// `chunk`: the TOAST table's chunk size ([`max_chunk_size`]).
    pub fn new(out: &'a mut [u8], chunk: usize) -> Self {
        Assembly {
            out,
            got: 0,
            next: 0,
            chunk,
        }
    }

    /// Adds chunk `seq` with payload `data`.
    pub fn push(&mut self, seq: i32, data: &[u8]) -> Result<(), ChunkError> {
        if seq != self.next {
            return Err(ChunkError::Sequence {
                got: seq,
                want: self.next,
            });
        }
        let want = self.chunk.min(self.out.len() - self.got);
        if (data.len() > want && want < self.chunk) || want == 0 {
            return Err(ChunkError::TooLong);
        }
        if data.len() != want {
            return Err(ChunkError::Size {
                seq,
                got: data.len(),
                want,
            });
        }
        let end = self
            .got
            .checked_add(data.len())
            .filter(|&e| e <= self.out.len())
            .ok_or(ChunkError::TooLong)?;
        self.out[self.got..end].copy_from_slice(data);
        self.got = end;
        self.next += 1;
        Ok(())
    }

    /// Checks that every byte arrived.
    pub fn finish(self) -> Result<(), ChunkError> {
        if self.got == self.out.len() {
            Ok(())
        } else {
            Err(ChunkError::Short {
                got: self.got,
                want: self.out.len(),
            })
        }
    }
}

/// The payload of a chunk's `chunk_data` (a `bytea` stored inline: a 4-byte
/// header, or a 1-byte one for a short chunk), or None for any other header
/// (compressed or external chunk data, which PostgreSQL never writes, or a
/// length beyond `datum`). Never panics.
pub fn chunk_payload(datum: &[u8]) -> Option<&[u8]> {
    if cfg!(target_endian = "big") {
        return None;
    }
    let first = *datum.first()?;
    if first & 0x01 == 0x01 {
        // 1-byte header: the length (header included) in the upper 7 bits;
        // 0x01 alone is an external pointer.
        let len = usize::from(first >> 1);
        if len == 0 {
            return None;
        }
        return datum.get(1..len);
    }
    if first & 0x03 != 0 {
        // 0x02: a compressed inline value.
        return None;
    }
    let len = (u32::from_ne_bytes(datum.get(..4)?.try_into().ok()?) >> 2) as usize;
    datum.get(VARHDRSZ..len.max(VARHDRSZ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pointer(rawsize: i32, extinfo: u32, valueid: u32, rel: u32) -> Vec<u8> {
        let mut b = vec![EXTERNAL_HEADER, VARTAG_ONDISK];
        b.extend_from_slice(&rawsize.to_ne_bytes());
        b.extend_from_slice(&extinfo.to_ne_bytes());
        b.extend_from_slice(&valueid.to_ne_bytes());
        b.extend_from_slice(&rel.to_ne_bytes());
        b
    }

    #[test]
    fn reads_a_plain_pointer() {
        // A vector(768): 8-byte header and 768 floats, stored as it is.
        let p = external_pointer(&pointer(3080, 3076, 16_400, 16_390)).unwrap();
        assert_eq!(
            p,
            ExternalPointer {
                rawsize: 3080,
                extsize: 3076,
                valueid: 16_400,
                toastrelid: 16_390
            }
        );
        assert!(!p.compressed());
        assert_eq!(p.plain_size(), Some(3076));
    }

    #[test]
    fn a_compressed_pointer_has_no_plain_size() {
        // pglz (method 0) of 3,076 bytes into 1,000; the method bits sit above
        // the size and are not part of it.
        let p = external_pointer(&pointer(3080, 1000 | (1 << 30), 7, 8)).unwrap();
        assert_eq!(p.extsize, 1000);
        assert!(p.compressed());
        assert_eq!(p.plain_size(), None);
        // A size larger than the raw size is not a value we can read either.
        let p = external_pointer(&pointer(3080, 4000, 7, 8)).unwrap();
        assert_eq!(p.plain_size(), None);
    }

    #[test]
    fn in_line_means_uncompressed_in_the_row() {
        // A 3,080-byte vector in line: length << 2, low bits 00.
        assert!(plain_inline(&(3080u32 << 2).to_le_bytes()));
        // Short (1-byte header: length << 1, low bit 1): an 8-d vector.
        assert!(plain_inline(&[(40 << 1) | 1]));
        // Compressed in line (low bits 10), external (0x01), nothing.
        assert!(!plain_inline(&((3080u32 << 2) | 0x02).to_le_bytes()));
        assert!(!plain_inline(&pointer(3084, 3080, 7, 9)));
        assert!(!plain_inline(&[]));
    }

    #[test]
    fn other_datums_are_not_pointers() {
        let mut inline = vec![0u8; 40];
        inline[..4].copy_from_slice(&(40u32 << 2).to_ne_bytes());
        assert_eq!(external_pointer(&inline), None);
        let mut memory = pointer(3080, 3076, 1, 2);
        memory[1] = 1; // VARTAG_INDIRECT
        assert_eq!(external_pointer(&memory), None);
        assert_eq!(external_pointer(&pointer(3080, 3076, 1, 2)[..17]), None);
    }

    #[test]
    fn assembles_chunks_in_order() {
        let value: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut out = vec![0u8; value.len()];
        let mut a = Assembly::new(&mut out, 1996);
        for (seq, c) in value.chunks(1996).enumerate() {
            a.push(seq as i32, c).unwrap();
        }
        a.finish().unwrap();
        assert_eq!(out, value);
    }

    #[test]
    fn refuses_missing_repeated_and_extra_chunks() {
        let mut out = vec![0u8; 10];
        let mut a = Assembly::new(&mut out, 4);
        a.push(0, &[1; 4]).unwrap();
        assert_eq!(
            a.push(2, &[1; 4]),
            Err(ChunkError::Sequence { got: 2, want: 1 })
        );
        assert_eq!(
            a.push(0, &[1; 4]),
            Err(ChunkError::Sequence { got: 0, want: 1 })
        );
        a.push(1, &[1; 4]).unwrap();
        assert_eq!(a.push(2, &[1; 3]), Err(ChunkError::TooLong));
        assert_eq!(a.finish(), Err(ChunkError::Short { got: 8, want: 10 }));
    }

    #[test]
    fn chunks_must_be_of_the_tables_size() {
        assert_eq!(max_chunk_size(8192), 1996);
        // 3,076 bytes (a vector(768)'s stored size less its header) are
        // 1,996 + 1,080; 1,992 + 1,084 add up too, and are damage.
        let mut out = vec![0u8; 3076];
        let mut a = Assembly::new(&mut out, 1996);
        assert_eq!(
            a.push(0, &[0; 1992]),
            Err(ChunkError::Size {
                seq: 0,
                got: 1992,
                want: 1996
            })
        );
        let mut a = Assembly::new(&mut out, 1996);
        a.push(0, &[0; 1996]).unwrap();
        assert_eq!(
            a.push(1, &[0; 1079]),
            Err(ChunkError::Size {
                seq: 1,
                got: 1079,
                want: 1080
            })
        );
        let mut a = Assembly::new(&mut out, 1996);
        a.push(0, &[0; 1996]).unwrap();
        a.push(1, &[0; 1080]).unwrap();
        a.finish().unwrap();
    }

    #[test]
    fn chunk_payloads() {
        let mut long = vec![0u8; 4 + 1996];
        long[..4].copy_from_slice(&(2000u32 << 2).to_ne_bytes());
        long[4] = 9;
        assert_eq!(
            chunk_payload(&long).map(|p| (p.len(), p[0])),
            Some((1996, 9))
        );
        // A short chunk (1-byte header): the last chunk of a value.
        let short = [(6 << 1) | 1, 1, 2, 3, 4, 5];
        assert_eq!(chunk_payload(&short), Some(&[1u8, 2, 3, 4, 5][..]));
        // Compressed inline data, an external pointer, a length past the end.
        let mut compressed = long.clone();
        compressed[0] |= 0x02;
        assert_eq!(chunk_payload(&compressed), None);
        assert_eq!(chunk_payload(&[0x01, 18]), None);
        assert_eq!(chunk_payload(&long[..100]), None);
    }

    proptest! {
        /// Any bytes: a pointer or None, a payload inside the input or None,
        /// and an assembly that never writes past its buffer.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64),
                        seqs in proptest::collection::vec((-2i32..6, 0usize..40), 0..8),
                        size in 0usize..100) {
            if let Some(p) = external_pointer(&bytes) {
                if let Some(n) = p.plain_size() {
                    prop_assert_eq!(n as i64 + 4, i64::from(p.rawsize));
                }
            }
            if let Some(payload) = chunk_payload(&bytes) {
                prop_assert!(payload.len() < bytes.len());
            }
            let mut out = vec![0u8; size];
            let mut a = Assembly::new(&mut out, 16);
            let mut sum = 0;
            for (seq, len) in seqs {
                if a.push(seq, &vec![7u8; len]).is_err() {
                    break;
                }
                sum += len;
            }
            prop_assert!(sum <= size);
            prop_assert_eq!(a.finish().is_ok(), sum == size);
        }
    }
}
