//! A set of page offsets kept as sorted, disjoint, non-adjacent half-open runs: the pages a
//! `cma_alloc` handle still holds after partial raw releases.

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RunSet {
    runs: Vec<(u64, u64)>,
}

impl RunSet {
    /// `[start, end)`; empty if `start >= end`.
    pub(crate) fn range(start: u64, end: u64) -> RunSet {
        let runs = if start < end { vec![(start, end)] } else { Vec::new() };
        RunSet { runs }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The maximal runs, ascending.
    pub(crate) fn runs(&self) -> &[(u64, u64)] {
        &self.runs
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.runs.iter().map(|(s, e)| e - s).sum()
    }

    /// Number of members in `[start, end)`.
    pub(crate) fn overlap(&self, start: u64, end: u64) -> u64 {
        self.runs.iter().map(|&(s, e)| e.min(end).saturating_sub(s.max(start))).sum()
    }

    /// Remove `[start, end)`.
    pub(crate) fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut out = Vec::with_capacity(self.runs.len() + 1);
        for &(s, e) in &self.runs {
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
        self.runs = out;
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
        r.remove(0, 100);
        assert!(r.is_empty());
    }
}
