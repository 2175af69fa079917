//! The kernel's bitmap primitives (`lib/bitmap.c`, `lib/find_bit.c`), over 32-bit words laid
//! out as debugfs prints them, with `unsigned long` arithmetic of either width.

/// Width of the kernel's `unsigned long`, in which `bitmap_find_next_zero_area_off()` and the
/// CMA helpers compute (wrapping) indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LongWidth {
    /// arm32.
    W32,
    /// arm64.
    W64,
}

impl LongWidth {
    pub(crate) fn from_bits(bits_per_long: u32) -> LongWidth {
        if bits_per_long <= 32 {
            LongWidth::W32
        } else {
            LongWidth::W64
        }
    }

    /// `ULONG_MAX`.
    pub(crate) fn max(self) -> u64 {
        self.wrap(u64::MAX)
    }

    /// Reduce a wrapped `u64` result modulo `2^BITS_PER_LONG`.
    pub(crate) fn wrap(self, x: u64) -> u64 {
        match self {
            LongWidth::W32 => x & 0xffff_ffff,
            LongWidth::W64 => x,
        }
    }
}

/// A fixed-length bitmap; bits at or above `nbits` are always clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bitmap {
    /// 64 bits per word (bit `i` is bit `i % 64` of `w[i / 64]`); bits at or past `nbits` are 0.
    w: Vec<u64>,
    nbits: u64,
}

/// `u32` words of a bitmap of `nbits` bits, as debugfs and the driver lay it out.
pub(crate) fn words_for(nbits: u64) -> usize {
    usize::try_from(nbits.div_ceil(32)).unwrap_or(usize::MAX)
}

fn u64_words_for(nbits: u64) -> usize {
    usize::try_from(nbits.div_ceil(64)).unwrap_or(usize::MAX)
}

impl Bitmap {
    /// `bitmap_zalloc(nbits)`.
    pub(crate) fn zeroed(nbits: u64) -> Bitmap {
        Bitmap { w: vec![0; u64_words_for(nbits)], nbits }
    }

    /// A bitmap over existing `u32` words; `None` unless `words.len() == DIV_ROUND_UP(nbits, 32)`.
    /// Bits at or past `nbits` are dropped.
    pub(crate) fn from_words(words: &[u32], nbits: u64) -> Option<Bitmap> {
        if words.len() != words_for(nbits) {
            return None;
        }
        let mut map = Bitmap::zeroed(nbits);
        for (i, pair) in words.chunks(2).enumerate() {
            let lo = u64::from(pair[0]);
            let hi = pair.get(1).map_or(0, |h| u64::from(*h) << 32);
            map.w[i] = lo | hi;
        }
        let tail = nbits % 64;
        if tail != 0 {
            if let Some(last) = map.w.last_mut() {
                *last &= (1u64 << tail) - 1;
            }
        }
        Some(map)
    }

    /// Whether any bit at or above `nbits` is set in `words`.
    pub(crate) fn has_stray_bits(words: &[u32], nbits: u64) -> bool {
        Bitmap::from_words(words, nbits).is_some_and(|m| m.words() != words)
    }

    /// The `u32` words, `DIV_ROUND_UP(nbits, 32)` of them.
    pub(crate) fn words(&self) -> Vec<u32> {
        let n = words_for(self.nbits);
        let mut out = Vec::with_capacity(n);
        for (i, w) in self.w.iter().enumerate() {
            out.push(*w as u32);
            if 2 * i + 1 < n {
                out.push((*w >> 32) as u32);
            }
        }
        out
    }

    pub(crate) fn len(&self) -> u64 {
        self.nbits
    }

    /// `test_bit(i, map)`; bits past the end read as clear.
    pub(crate) fn test(&self, i: u64) -> bool {
        i < self.nbits
            && usize::try_from(i / 64)
                .ok()
                .and_then(|w| self.w.get(w))
                .is_some_and(|word| word & (1u64 << (i % 64)) != 0)
    }

    fn apply(&mut self, start: u64, len: u64, set: bool) {
        let end = start.saturating_add(len).min(self.nbits);
        let mut i = start;
        while i < end {
            let lo = i % 64;
            let word_start = i - lo;
            let hi = (end - word_start).min(64);
            let n = (hi - lo) as u32;
            let mask = (u64::MAX >> (64 - n)) << lo;
            if let Some(word) = usize::try_from(i / 64).ok().and_then(|w| self.w.get_mut(w)) {
                if set {
                    *word |= mask;
                } else {
                    *word &= !mask;
                }
            }
            i = word_start + hi;
        }
    }

    /// `bitmap_set(map, start, len)`, limited to the bitmap.
    pub(crate) fn set(&mut self, start: u64, len: u64) {
        self.apply(start, len, true);
    }

    /// `bitmap_clear(map, start, len)`, limited to the bitmap.
    pub(crate) fn clear(&mut self, start: u64, len: u64) {
        self.apply(start, len, false);
    }

    /// `bitmap_weight(map, nbits)`.
    pub(crate) fn weight(&self) -> u64 {
        self.w.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// The kernel's `_find_next_bit()`: the first bit in `[start, size)` that is set (or clear),
    /// else `size`. Exactly the answer of the kernel's scan in whole `unsigned long` words (32-bit
    /// ones here, as on arm32: a word is looked at whole once it starts below `min(size,
    /// nbits)`), read 64 bits at a time.
    fn find_next(&self, size: u64, start: u64, want_set: bool) -> u64 {
        let limit = size.min(self.nbits);
        if start >= limit {
            return size;
        }
        // The 32-bit scan's last word ends at the first multiple of 32 at or past `limit`.
        let examined = limit.div_ceil(32).saturating_mul(32);
        let mut i = start;
        while i < examined {
            let lo = i % 64;
            let base = i - lo;
            let Some(&raw) = usize::try_from(i / 64).ok().and_then(|w| self.w.get(w)) else {
                break;
            };
            let mut word = if want_set { raw } else { !raw };
            word &= u64::MAX << lo;
            let span = examined - base;
            if span < 64 {
                word &= (1u64 << span) - 1;
            }
            if word != 0 {
                return (base + u64::from(word.trailing_zeros())).min(size);
            }
            i = base + 64;
        }
        size
    }

    /// `find_next_bit(map, size, start)`: first set bit in `[start, size)`, else `size`.
    pub(crate) fn find_next_bit(&self, size: u64, start: u64) -> u64 {
        self.find_next(size, start, true)
    }

    /// `find_next_zero_bit(map, size, start)`: first clear bit in `[start, size)`, else `size`.
    pub(crate) fn find_next_zero_bit(&self, size: u64, start: u64) -> u64 {
        self.find_next(size, start, false)
    }

    /// Whether any bit of `[start, start + len)` is set.
    pub(crate) fn any_set(&self, start: u64, len: u64) -> bool {
        let end = start.saturating_add(len);
        self.find_next_bit(end, start) < end
    }

    /// The first clear bit in `[start, end)`, else `end`; for `end <= nbits` this is
    /// `find_next_zero_bit(map, end, start)`.
    #[inline]
    fn first_zero_below(&self, start: u64, end: u64) -> u64 {
        self.first_below(start, end, u64::MAX)
    }

    /// The first set bit in `[start, end)`, else `end`; for `end <= nbits` this is
    /// `find_next_bit(map, end, start)`.
    #[inline]
    fn first_set_below(&self, start: u64, end: u64) -> u64 {
        self.first_below(start, end, 0)
    }

    /// The first bit in `[start, end)` that `flip` (all ones: look for clear bits; zero: for set
    /// ones) turns to 1, else `end`; whole words at a time.
    #[inline]
    fn first_below(&self, start: u64, end: u64, flip: u64) -> u64 {
        if start >= end {
            return end;
        }
        let mut wi = start / 64;
        let mut word = match self.word(wi) {
            Some(raw) => (raw ^ flip) & (u64::MAX << (start % 64)),
            None => return end,
        };
        loop {
            if word != 0 {
                return (wi * 64 + u64::from(word.trailing_zeros())).min(end);
            }
            wi += 1;
            if wi * 64 >= end {
                return end;
            }
            match self.word(wi) {
                Some(raw) => word = raw ^ flip,
                None => return end,
            }
        }
    }

    /// The last set bit in `[start, end)`, if any (bits past `nbits` read as clear).
    #[inline]
    fn last_set_in(&self, start: u64, end: u64) -> Option<u64> {
        if start >= end {
            return None;
        }
        let last = end - 1;
        let first_wi = start / 64;
        let mut wi = last / 64;
        let mut word = self.word(wi).unwrap_or(0) & (u64::MAX >> (63 - last % 64));
        loop {
            if wi == first_wi {
                word &= u64::MAX << (start % 64);
            }
            if word != 0 {
                return Some(wi * 64 + 63 - u64::from(word.leading_zeros()));
            }
            if wi == first_wi {
                return None;
            }
            wi -= 1;
            word = self.word(wi).unwrap_or(0);
        }
    }

    /// The 64-bit word `wi`, if the bitmap has it.
    #[inline]
    fn word(&self, wi: u64) -> Option<u64> {
        usize::try_from(wi).ok().and_then(|i| self.w.get(i)).copied()
    }
}

/// `bitmap_find_next_zero_area_off(map, size, start, nr, align_mask, align_offset)`
/// (Linux 6.1 `lib/bitmap.c:417-440`, 6.12 `:413-436`, identical): first fit from `start` of `nr`
/// clear bits whose index `i` satisfies `(i + align_offset) & align_mask == 0`. After meeting a set
/// bit it restarts just past it and re-aligns. A result `> size` means failure (`index + nr`).
///
/// When no `unsigned long` sum can wrap and `size` is within the bitmap (every CMA search), this
/// is [`find_zero_area_fast`], which gives the same answer in fewer rounds, or for short windows
/// and small alignments (the usual CMA request) [`first_fit_short`] when there is a fit at all;
/// otherwise it is the kernel's loop as written ([`find_next_zero_area_off_kernel`]).
#[inline]
pub(crate) fn find_next_zero_area_off(
    map: &Bitmap,
    size: u64,
    start: u64,
    nr: u64,
    align_mask: u64,
    align_offset: u64,
    w: LongWidth,
) -> u64 {
    let no_wrap = size
        .checked_add(align_mask)
        .and_then(|x| x.checked_add(align_offset))
        .and_then(|x| x.checked_add(nr))
        .is_some_and(|x| x <= w.max());
    if no_wrap && size <= map.nbits {
        if nr <= 64 && align_mask < 64 {
            if let Some(index) = first_fit_short(map, size, start, nr, align_mask, align_offset) {
                return index;
            }
        }
        find_zero_area_fast(map, size, start, nr, align_mask, align_offset, w)
    } else {
        find_next_zero_area_off_kernel(map, size, start, nr, align_mask, align_offset, w)
    }
}

/// `bitmap_find_next_zero_area_off()` line by line, in wrapping `unsigned long` arithmetic.
fn find_next_zero_area_off_kernel(
    map: &Bitmap,
    size: u64,
    mut start: u64,
    nr: u64,
    align_mask: u64,
    align_offset: u64,
    w: LongWidth,
) -> u64 {
    // The kernel loop ends because `start` grows past each set bit it meets; the cap only guards
    // against `unsigned long` wrap-around, which needs bases and alignments no kernel area has.
    let max_rounds = size.saturating_add(2);
    let mut rounds = 0u64;
    loop {
        let index = map.find_next_zero_bit(size, start);
        let index = w.wrap(
            (w.wrap(index.wrapping_add(align_offset).wrapping_add(align_mask)) & !align_mask)
                .wrapping_sub(align_offset),
        );
        let end = w.wrap(index.wrapping_add(nr));
        if end > size {
            return end;
        }
        let i = map.find_next_bit(end, index);
        if i < end {
            rounds += 1;
            if rounds > max_rounds {
                return size.saturating_add(1);
            }
            start = i + 1;
            continue;
        }
        return index;
    }
}

/// [`find_next_zero_area_off_kernel`] for `size <= map.len()` and `size + align_mask +
/// align_offset + nr` within `unsigned long` (so nothing wraps, and `find_next_zero_bit` /
/// `find_next_bit` are plain "first such bit below the bound, else the bound").
///
/// Same answer, fewer rounds: when the window `[index, index + nr)` holds set bits, the kernel
/// restarts past the *first* one, `i`; this restarts past the *last* one, `j`, and lands on the
/// candidate `c` that follows the first clear bit `z > j`. Every candidate the kernel tries in
/// between is below `c` and fails: one in `(index, j]` has a window (as long, starting later)
/// that holds `j`; one in `(j, z)` is itself a set bit. So the kernel reaches `c` too — unless one
/// of those in-between windows ends past `size`, where the kernel returns that end. All of them
/// end before `c + nr`, so the skip stands whenever `c + nr <= size`; when it does not, the search
/// goes back to the window that sent it past `j` and takes the kernel's own steps from there.
fn find_zero_area_fast(
    map: &Bitmap,
    size: u64,
    mut start: u64,
    nr: u64,
    align_mask: u64,
    align_offset: u64,
    w: LongWidth,
) -> u64 {
    // The last window that failed, when `start` skipped past its last set bit.
    let mut skipped: Option<(u64, u64)> = None;
    loop {
        let zero = map.first_zero_below(start, size);
        let index = ((zero + align_offset + align_mask) & !align_mask) - align_offset;
        let end = index + nr;
        if end > size {
            return match skipped {
                None => end,
                Some((index, end)) => {
                    let i = map.first_set_below(index, end);
                    find_next_zero_area_off_kernel(map, size, i + 1, nr, align_mask, align_offset, w)
                }
            };
        }
        match map.last_set_in(index, end) {
            None => return index,
            Some(j) => {
                skipped = Some((index, end));
                start = j + 1;
            }
        }
    }
}

/// For `nr <= 64`, `align_mask < 64` and the preconditions of [`find_zero_area_fast`]: the
/// smallest `p >= start` with `(p + align_offset) & align_mask == 0`, `p + nr <= size` and bits
/// `[p, p + nr)` clear, found 64 candidates at a time; `None` if there is none.
///
/// That is the kernel's answer whenever it exists. The kernel's candidates rise, and every
/// aligned `p` it passes over fails: below the first clear bit `z` at or past `start`, `p` is
/// itself set; between a failed candidate `c` and the first set bit `i` of its window, the window
/// at `p` holds `i` (`p <= i < c + nr < p + nr`); between `i` and the next clear bit, `p` is set;
/// between that bit and its alignment, no `p` is aligned. So the first candidate with a clear
/// window is this `p`, and no earlier candidate's window (ending before `p + nr`) ends past
/// `size`. Without a fit the kernel fails with a value that depends on its path, which only
/// [`find_zero_area_fast`] knows.
fn first_fit_short(map: &Bitmap, size: u64, start: u64, nr: u64, align_mask: u64, align_offset: u64) -> Option<u64> {
    let last = size.checked_sub(nr)?;
    if start > last || nr == 0 || nr > 64 || align_mask >= 64 {
        return None;
    }
    // Aligned bit positions within a word (alignment periods divide 64): every `align_mask + 1`
    // bits from `-align_offset mod (align_mask + 1)`.
    let aligned = periodic(align_mask + 1) << (align_offset.wrapping_neg() & align_mask);
    let mut wi = start / 64;
    let mut from = u64::MAX << (start % 64);
    loop {
        let base = wi * 64;
        if base > last {
            return None;
        }
        let lo = map.word(wi).unwrap_or(0);
        if lo != u64::MAX {
            // Bit p of `fit`: bits [p, p + nr) are clear. Within the word, by doubling the runs
            // of clear bits (zeros shift in from the top, so no window leaves the word)...
            let mut fit = !lo;
            let mut len = 1;
            while len * 2 <= nr {
                fit &= fit >> len;
                len *= 2;
            }
            if len < nr {
                fit &= fit >> (nr - len);
            }
            // ...and across into the next word: `top` clear bits end this word, `bottom` begin
            // the next, so every p from 64 - top with p + nr <= 64 + bottom fits (and no fit
            // within the word lies past that bound).
            let top = u64::from(lo.leading_zeros());
            if top > 0 {
                let bottom = u64::from(map.word(wi + 1).unwrap_or(0).trailing_zeros());
                if top + bottom >= nr {
                    fit |= u64::MAX << (64 - top);
                    let past = (64 + bottom - nr).min(63);
                    fit &= u64::MAX >> (63 - past);
                }
            }
            let mut fits = fit & aligned & from;
            if last - base < 63 {
                fits &= u64::MAX >> (63 - (last - base));
            }
            if fits != 0 {
                return Some(base + u64::from(fits.trailing_zeros()));
            }
        }
        from = u64::MAX;
        wi += 1;
    }
}

/// One bit every `period` bits from bit 0, for a power-of-two `period` in `1..=64`.
fn periodic(period: u64) -> u64 {
    let mut bits = 1u64;
    let mut shift = period;
    while shift < 64 {
        bits |= bits << shift;
        shift *= 2;
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_with(nbits: u64, set: &[(u64, u64)]) -> Bitmap {
        let mut m = Bitmap::zeroed(nbits);
        for &(s, l) in set {
            m.set(s, l);
        }
        m
    }

    #[test]
    fn bitmap_set_and_clear_cross_word_boundaries() {
        let mut m = Bitmap::zeroed(100);
        m.set(30, 40);
        assert_eq!(m.weight(), 40);
        assert!(!m.test(29) && m.test(30) && m.test(69) && !m.test(70));
        m.clear(31, 38);
        assert_eq!(m.weight(), 2);
        m.set(90, 50);
        assert_eq!(m.weight(), 12, "bitmap_set stops at nbits");
    }

    #[test]
    fn find_next_bit_returns_size_when_nothing_found() {
        let m = map_with(100, &[(64, 3)]);
        assert_eq!(m.find_next_bit(100, 0), 64);
        assert_eq!(m.find_next_bit(64, 0), 64);
        assert_eq!(m.find_next_bit(100, 67), 100);
        assert_eq!(m.find_next_zero_bit(100, 64), 67);
        assert_eq!(m.find_next_zero_bit(100, 200), 100);
    }

    #[test]
    fn bitmap_find_next_zero_area_off_is_first_fit() {
        let m = map_with(8192, &[(0, 64)]);
        assert_eq!(find_next_zero_area_off(&m, 8192, 0, 3, 0, 0, LongWidth::W32), 64);
    }

    #[test]
    fn bitmap_find_next_zero_area_off_realigns_after_set_bit() {
        // A 6-bit window at 0 meets the set bit 4; the search restarts at 5 and re-aligns to 8
        // (mask 3), not to 5.
        let m = map_with(64, &[(4, 1)]);
        assert_eq!(find_next_zero_area_off(&m, 64, 0, 6, 3, 0, LongWidth::W32), 8);
    }

    #[test]
    fn bitmap_find_next_zero_area_off_alignment_is_relative_to_offset() {
        // offset 0xc00 with mask 4095: indices i with (i + 0xc00) % 4096 == 0 -> 1024, 5120, ...
        let m = map_with(8192, &[(0, 96)]);
        assert_eq!(find_next_zero_area_off(&m, 8192, 0, 1, 4095, 0xc00, LongWidth::W64), 1024);
    }

    #[test]
    fn bitmap_find_next_zero_area_off_returns_past_size_when_no_window() {
        let m = map_with(16, &[(0, 10)]);
        let r = find_next_zero_area_off(&m, 16, 0, 8, 0, 0, LongWidth::W32);
        assert!(r > 16, "got {r}");
    }

    #[test]
    fn from_words_checks_length_and_detects_stray_bits() {
        assert!(Bitmap::from_words(&[0, 0], 65).is_none());
        assert!(Bitmap::from_words(&[0, 0, 0], 65).is_some());
        assert!(Bitmap::has_stray_bits(&[0, 0, 2], 65));
        assert!(!Bitmap::has_stray_bits(&[0, 0, 1], 65));
    }

    #[test]
    fn bitmap_find_next_zero_area_off_finds_short_windows_across_a_word_boundary() {
        // Clear bits 60-69 only: 10 fit at 60, 11 do not; 8 aligned to 8 fit only with offset 4
        // (candidates 60, 68) and not with offset 0 (candidate 64 ends at 72).
        let m = map_with(256, &[(0, 60), (70, 186)]);
        assert_eq!(first_fit_short(&m, 256, 0, 10, 0, 0), Some(60));
        assert_eq!(find_next_zero_area_off(&m, 256, 0, 10, 0, 0, LongWidth::W32), 60);
        assert_eq!(first_fit_short(&m, 256, 0, 11, 0, 0), None);
        assert!(find_next_zero_area_off(&m, 256, 0, 11, 0, 0, LongWidth::W32) > 256);
        assert_eq!(first_fit_short(&m, 256, 0, 8, 7, 4), Some(60));
        assert_eq!(first_fit_short(&m, 256, 0, 8, 7, 0), None);
        assert_eq!(first_fit_short(&m, 256, 61, 8, 0, 0), Some(61));
        assert_eq!(first_fit_short(&m, 256, 62, 8, 3, 0), None);
    }

    /// The searches read 64 bits at a time; this is the bit-by-bit definition they must match,
    /// including `size` past `nbits` and starts past the end.
    fn naive_find(m: &Bitmap, size: u64, start: u64, want_set: bool) -> u64 {
        let limit = size.min(m.nbits);
        let mut i = start;
        while i < limit {
            // The 32-bit word scan: a word is examined whole once its first bit is below limit.
            let word_start = i - i % 32;
            let word_end = word_start + 32;
            for b in i..word_end {
                let w = m.words().get((b / 32) as usize).copied().unwrap_or(0);
                if ((w >> (b % 32)) & 1 == 1) == want_set {
                    return b.min(size);
                }
            }
            i = word_end;
        }
        size
    }

    /// `bitmap_find_next_zero_area_off()` as `lib/bitmap.c` writes it, over the 32-bit word scan
    /// of [`naive_find`], in wrapping `unsigned long` arithmetic (the round cap stands in for the
    /// kernel's endless loop on wrap-around, as in the model).
    fn kernel_find_zero_area(m: &Bitmap, size: u64, mut start: u64, nr: u64, mask: u64, off: u64, w: LongWidth) -> u64 {
        let mut rounds = 0u64;
        loop {
            let index = naive_find(m, size, start, false);
            let index = w.wrap((w.wrap(index.wrapping_add(off).wrapping_add(mask)) & !mask).wrapping_sub(off));
            let end = w.wrap(index.wrapping_add(nr));
            if end > size {
                return end;
            }
            let i = naive_find(m, end, index, true);
            if i >= end {
                return index;
            }
            rounds += 1;
            if rounds > size.saturating_add(2) {
                return size.saturating_add(1);
            }
            start = i + 1;
        }
    }

    #[test]
    fn bitmap_find_next_zero_area_off_skip_past_the_last_set_bit_keeps_the_kernel_failure_value() {
        // size 10, nr 5: the window at 4 holds bits 5 and 8; the kernel restarts at 6 (past bit
        // 5) and fails with 6 + 5 = 11. Restarting past bit 8 would fail with 9 + 5 = 14.
        let m = map_with(10, &[(5, 1), (8, 1)]);
        assert_eq!(find_next_zero_area_off(&m, 10, 4, 5, 0, 0, LongWidth::W64), 11);
        assert_eq!(find_next_zero_area_off_kernel(&m, 10, 4, 5, 0, 0, LongWidth::W64), 11);
        // size 457, nr 110, mask 127, offset 36 (candidates 92, 220, 348, 476): the window at 220
        // holds bits 220 and 270-348. The kernel restarts at 221 and tries 348 — itself a set bit,
        // but its window ends at 458 > 457, so it fails with 458 before looking. Restarting past
        // bit 348 would try 476 and fail with 586.
        let m = map_with(489, &[(214, 7), (270, 79)]);
        assert_eq!(find_next_zero_area_off(&m, 457, 93, 110, 127, 36, LongWidth::W32), 458);
        assert_eq!(find_next_zero_area_off_kernel(&m, 457, 93, 110, 127, 36, LongWidth::W32), 458);
    }

    #[test]
    fn bitmap_find_next_zero_area_off_skips_runs_of_full_words() {
        // 201 set bits, a hole of 3, then 100 set bits: a 4-bit window lands at 304, a 3-bit one
        // in the hole unless aligned to 8.
        let m = map_with(1024, &[(0, 201), (204, 100)]);
        assert_eq!(find_next_zero_area_off(&m, 1024, 0, 4, 0, 0, LongWidth::W32), 304);
        assert_eq!(find_next_zero_area_off(&m, 1024, 0, 3, 0, 0, LongWidth::W32), 201);
        assert_eq!(find_next_zero_area_off(&m, 1024, 0, 3, 7, 0, LongWidth::W32), 304);
    }

    proptest::proptest! {
        #[test]
        fn word_searches_match_the_bit_by_bit_definition(
            nbits in 1u64..300,
            runs in proptest::collection::vec((0u64..300, 1u64..40), 0..12),
            size in 0u64..340,
            start in 0u64..340,
        ) {
            let m = map_with(nbits, &runs);
            proptest::prop_assert_eq!(m.find_next_bit(size, start), naive_find(&m, size, start, true));
            proptest::prop_assert_eq!(m.find_next_zero_bit(size, start), naive_find(&m, size, start, false));
        }

        /// `bitmap_find_next_zero_area_off()`: the model (fast path or kernel loop, whichever it
        /// picks) against the kernel's loop over the 32-bit word scan, on dense small maps where
        /// windows keep meeting set bits, with `size` below, at and past `nbits`.
        #[test]
        fn bitmap_find_next_zero_area_off_matches_the_kernel_loop(
            nbits in 1u64..300,
            runs in proptest::collection::vec((0u64..300, 1u64..40), 0..24),
            size_delta in -40i64..40,
            start in 0u64..320,
            nr in 1u64..80,
            align_order in 0u32..7,
            off in 0u64..64,
            w64 in proptest::bool::ANY,
        ) {
            let m = map_with(nbits, &runs);
            let size = nbits.saturating_add_signed(size_delta);
            let mask = (1u64 << align_order) - 1;
            let off = off & mask;
            let w = if w64 { LongWidth::W64 } else { LongWidth::W32 };
            proptest::prop_assert_eq!(
                find_next_zero_area_off(&m, size, start, nr, mask, off, w),
                kernel_find_zero_area(&m, size, start, nr, mask, off, w)
            );
        }

        /// The fast path alone against `find_next_zero_area_off_kernel()` (the slow loop it
        /// replaces), wherever its preconditions hold: `size <= nbits`, no wrap.
        #[test]
        fn bitmap_find_next_zero_area_off_fast_path_matches_the_kernel_loop(
            nbits in 1u64..600,
            runs in proptest::collection::vec((0u64..600, 1u64..100), 0..40),
            size_below in 0u64..70,
            start in 0u64..620,
            nr in 1u64..150,
            align_order in 0u32..10,
            off in 0u64..1024,
        ) {
            let m = map_with(nbits, &runs);
            let size = nbits.saturating_sub(size_below);
            let mask = (1u64 << align_order) - 1;
            let off = off & mask;
            for w in [LongWidth::W32, LongWidth::W64] {
                proptest::prop_assert_eq!(
                    find_zero_area_fast(&m, size, start, nr, mask, off, w),
                    find_next_zero_area_off_kernel(&m, size, start, nr, mask, off, w)
                );
            }
        }

        /// The 64-candidates-at-a-time first fit against `find_next_zero_area_off_kernel()`:
        /// its fit is the kernel's answer, and it finds none exactly when the kernel fails.
        #[test]
        fn bitmap_find_next_zero_area_off_short_first_fit_matches_the_kernel_loop(
            nbits in 1u64..600,
            runs in proptest::collection::vec((0u64..600, 1u64..100), 0..40),
            holes in proptest::collection::vec((0u64..600, 1u64..70), 0..20),
            size_below in 0u64..70,
            start in 0u64..620,
            nr in 1u64..=64,
            align_order in 0u32..=6,
            off in 0u64..64,
        ) {
            let mut m = map_with(nbits, &runs);
            for (s, l) in holes {
                m.clear(s, l);
            }
            let size = nbits.saturating_sub(size_below);
            let mask = (1u64 << align_order) - 1;
            let off = off & mask;
            let kernel = find_next_zero_area_off_kernel(&m, size, start, nr, mask, off, LongWidth::W64);
            match first_fit_short(&m, size, start, nr, mask, off) {
                Some(p) => proptest::prop_assert_eq!(p, kernel),
                None => proptest::prop_assert!(kernel > size, "kernel found {} where the short search found none", kernel),
            }
        }

        /// Near `ULONG_MAX` of the 32-bit kernel the sums wrap and the model must take the kernel
        /// loop: `nr` and the alignment at the top of `unsigned long`.
        #[test]
        fn bitmap_find_next_zero_area_off_wraps_as_the_32_bit_kernel(
            nbits in 1u64..200,
            runs in proptest::collection::vec((0u64..200, 1u64..40), 0..10),
            start in 0u64..220,
            nr_from_top in 0u64..300,
            align_order in 25u32..32,
            off_from_top in 0u64..300,
        ) {
            let m = map_with(nbits, &runs);
            let w = LongWidth::W32;
            let nr = w.max() - nr_from_top;
            let mask = (1u64 << align_order) - 1;
            let off = (w.max() - off_from_top) & mask;
            proptest::prop_assert_eq!(
                find_next_zero_area_off(&m, nbits, start, nr, mask, off, w),
                kernel_find_zero_area(&m, nbits, start, nr, mask, off, w)
            );
            proptest::prop_assert_eq!(
                find_next_zero_area_off(&m, nbits, start, 1 + nr_from_top, mask, off, w),
                kernel_find_zero_area(&m, nbits, start, 1 + nr_from_top, mask, off, w)
            );
        }
    }
}
