//! A set of page offsets kept as sorted, disjoint, non-adjacent half-open runs: the pages a
//! `cma_alloc` handle still holds after partial raw releases.

/// The runs of one handle. A single run (what every `cma_alloc` handle starts with) is kept
/// inline, so a handle costs no heap allocation until a raw release splits it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunSet {
    /// Canonical: exactly one run is `One`, any other number `Many` (so equal sets compare equal).
    repr: Repr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Repr {
    One([(u64, u64); 1]),
    Many(Vec<(u64, u64)>),
}

impl Default for RunSet {
    fn default() -> Self {
        RunSet { repr: Repr::Many(Vec::new()) }
    }
}

impl RunSet {
    /// `[start, end)`; empty if `start >= end`.
    pub(crate) fn range(start: u64, end: u64) -> RunSet {
        if start < end {
            RunSet { repr: Repr::One([(start, end)]) }
        } else {
            RunSet::default()
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.runs().is_empty()
    }

    /// The maximal runs, ascending.
    pub(crate) fn runs(&self) -> &[(u64, u64)] {
        match &self.repr {
            Repr::One(r) => r,
            Repr::Many(v) => v,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.runs().iter().map(|(s, e)| e - s).sum()
    }

    /// Number of members in `[start, end)`.
    pub(crate) fn overlap(&self, start: u64, end: u64) -> u64 {
        self.runs().iter().map(|&(s, e)| e.min(end).saturating_sub(s.max(start))).sum()
    }

    /// Remove `[start, end)`.
    pub(crate) fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut out = Vec::with_capacity(self.runs().len() + 1);
        for &(s, e) in self.runs() {
            if e <= start || s >= end {
                out.push((s, e));
                continue;
            }
            if s < start {
                out.push((s, start));
            }
            if e > end {
                out.push((end, e));
            }
        }
        self.repr = match out.as_slice() {
            [one] => Repr::One([*one]),
            [] => Repr::Many(Vec::new()),
            _ => Repr::Many(out),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_the_middle_splits_a_run() {
        let mut r = RunSet::range(64, 69);
        r.remove(67, 69);
        assert_eq!(r.runs(), &[(64, 67)]);
        r.remove(65, 66);
        assert_eq!(r.runs(), &[(64, 65), (66, 67)]);
        assert_eq!(r.len(), 2);
        assert_eq!(r.overlap(0, 100), 2);
        assert_eq!(r.overlap(65, 67), 1);
        r.remove(66, 67);
        assert_eq!(r, RunSet::range(64, 65), "one run left compares equal to a fresh range");
        r.remove(0, 100);
        assert!(r.is_empty());
        assert_eq!(r, RunSet::default());
    }
}
