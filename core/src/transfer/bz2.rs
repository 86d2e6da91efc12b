//! Segment compression (PROTOCOL.md §6.3): bz2 one stream per segment, sent only when
//! smaller, and decompressed into exactly the size the layout promises.
//!
//! Fuzz builds (`cfg(fuzzing)`) swap in a trivial codec for the sessions ([`compress`],
//! [`decompress`]), as they swap in the null crypto: bz2 took four fifths of a scripted
//! session's time and most of its coverage went into bz2's own tables, not the engine.
//! The real decoder keeps a target of its own (`fuzz::bz2_segment`), which calls
//! [`bz2_compress`] and [`bz2_decompress`] directly.

/// What decompressing a segment gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decompressed {
    /// Exactly the promised bytes, from exactly the data given.
    Exactly,
    /// More than promised: a decompression bomb.
    TooMuch,
    /// Less than promised, a broken stream, or bytes after it.
    Invalid,
}

/// Compresses `data` into `out` with the session's codec; `None` unless strictly smaller.
pub(crate) fn compress(data: &[u8], out: &mut [u8]) -> Option<usize> {
    #[cfg(fuzzing)]
    return stand_in::compress(data, out);
    #[cfg(not(fuzzing))]
    bz2_compress(data, out)
}

/// Decompresses `data` into `out` (exactly the promised size) with the session's codec.
pub(crate) fn decompress(data: &[u8], out: &mut [u8]) -> Decompressed {
    #[cfg(fuzzing)]
    return stand_in::decompress(data, out);
    #[cfg(not(fuzzing))]
    bz2_decompress(data, out)
}

/// bz2 of `data` into `out`, or `None` unless strictly smaller. The block size is the
/// smallest that holds `data` whole (a level counts 100 kB): a larger one compresses no
/// better and costs its tables' set-up for every segment.
pub(crate) fn bz2_compress(data: &[u8], out: &mut [u8]) -> Option<usize> {
    use bzip2::{Action, Compress, Compression, Status};
    let limit = data.len().saturating_sub(1).min(out.len());
    let level = data.len().div_ceil(100_000).clamp(1, 9) as u32;
    let mut compressor = Compress::new(Compression::new(level), 30);
    match compressor.compress(data, &mut out[..limit], Action::Finish) {
        Ok(Status::StreamEnd) => Some(compressor.total_out() as usize),
        _ => None,
    }
}

/// bz2-decompresses `data` into `out`, whose length is the exact size the layout
/// promises: more output than that is a bomb, less or a broken stream is corruption.
pub(crate) fn bz2_decompress(data: &[u8], out: &mut [u8]) -> Decompressed {
    use bzip2::{Decompress, Status};
    let mut decompressor = Decompress::new(true);
    // One bz2 stream that ends exactly at the data's end (PROTOCOL.md §6.3): a second
    // stream, or bytes after the first, are refused like any other corruption.
    let whole = |d: &Decompress| d.total_in() as usize == data.len();
    match decompressor.decompress(data, out) {
        Ok(Status::StreamEnd) if decompressor.total_out() as usize == out.len() => {
            if whole(&decompressor) {
                Decompressed::Exactly
            } else {
                Decompressed::Invalid
            }
        }
        Ok(Status::StreamEnd) => Decompressed::Invalid,
        Ok(_) if decompressor.total_out() as usize == out.len() => {
            // The output is full but the stream has not ended: it wants to produce more.
            let mut probe = [0u8; 1];
            match decompressor.decompress(&data[decompressor.total_in() as usize..], &mut probe) {
                Ok(Status::StreamEnd)
                    if decompressor.total_out() as usize == out.len() && whole(&decompressor) =>
                {
                    Decompressed::Exactly
                }
                Ok(_) if decompressor.total_out() as usize > out.len() => Decompressed::TooMuch,
                _ => Decompressed::Invalid,
            }
        }
        _ => Decompressed::Invalid,
    }
}

/// The fuzz build's codec: a segment that repeats one short pattern becomes its length
/// (u32), the pattern's length (u8) and the pattern. It keeps what the engine reacts to —
/// sent only when smaller, and a bomb, a short or broken stream on the way in — at a
/// fraction of bz2's cost.
#[cfg(any(fuzzing, test))]
mod stand_in {
    use super::Decompressed;

    const LONGEST_PATTERN: usize = 64;

    pub(crate) fn compress(data: &[u8], out: &mut [u8]) -> Option<usize> {
        let period = (1..=LONGEST_PATTERN.min(data.len()))
            .find(|&p| data.chunks(p).all(|c| c == &data[..c.len()]))?;
        let len = 5 + period;
        if len >= data.len() || len > out.len() {
            return None;
        }
        out[..4].copy_from_slice(&u32::try_from(data.len()).ok()?.to_be_bytes());
        out[4] = period as u8;
        out[5..len].copy_from_slice(&data[..period]);
        Some(len)
    }

    pub(crate) fn decompress(data: &[u8], out: &mut [u8]) -> Decompressed {
        let Some((&[a, b, c, d, period], pattern)) = data.split_first_chunk::<5>() else {
            return Decompressed::Invalid;
        };
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        if period == 0 || pattern.len() != usize::from(period) {
            return Decompressed::Invalid;
        }
        if len > out.len() {
            return Decompressed::TooMuch;
        }
        if len < out.len() {
            return Decompressed::Invalid;
        }
        for chunk in out.chunks_mut(pattern.len()) {
            chunk.copy_from_slice(&pattern[..chunk.len()]);
        }
        Decompressed::Exactly
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stand_in_round_trips_patterns_and_refuses_what_bz2_would() {
        let text: Vec<u8> = b"ferry fuzz line\n"
            .iter()
            .copied()
            .cycle()
            .take(3000)
            .collect();
        let mut packed = [0u8; 64];
        let len = stand_in::compress(&text, &mut packed).expect("a pattern compresses");
        let mut out = vec![0u8; text.len()];
        assert_eq!(
            stand_in::decompress(&packed[..len], &mut out),
            Decompressed::Exactly
        );
        assert_eq!(out, text);
        let mut short = vec![0u8; text.len() - 1];
        assert_eq!(
            stand_in::decompress(&packed[..len], &mut short),
            Decompressed::TooMuch
        );
        let mut long = vec![0u8; text.len() + 1];
        assert_eq!(
            stand_in::decompress(&packed[..len], &mut long),
            Decompressed::Invalid
        );
        assert_eq!(
            stand_in::decompress(&packed[..len - 1], &mut out),
            Decompressed::Invalid
        );
        let noise: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(stand_in::compress(&noise, &mut packed), None);
    }

    #[test]
    fn bz2_round_trips_and_refuses_a_bomb_and_trailing_bytes() {
        let text: Vec<u8> = b"ferry line\n".iter().copied().cycle().take(5000).collect();
        let mut packed = vec![0u8; text.len()];
        let len = bz2_compress(&text, &mut packed).expect("text compresses");
        let mut out = vec![0u8; text.len()];
        assert_eq!(
            bz2_decompress(&packed[..len], &mut out),
            Decompressed::Exactly
        );
        assert_eq!(out, text);
        let mut short = vec![0u8; text.len() - 1];
        assert_eq!(
            bz2_decompress(&packed[..len], &mut short),
            Decompressed::TooMuch
        );
        let mut trailing = packed[..len].to_vec();
        trailing.push(0);
        assert_eq!(bz2_decompress(&trailing, &mut out), Decompressed::Invalid);
    }
}
