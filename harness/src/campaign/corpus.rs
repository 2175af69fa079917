//! `cmafuzz corpus minimize OUT`: the smallest set of `OUT/corpus` programs (greedy set cover)
//! that reaches every coverage entry the whole corpus reaches, in the campaign's own terms: the
//! entries of its `MaxMapFeedback` map at their highest hit-count bucket, model-state features
//! and KCOV alike ([`features`]). Each program runs once on one VM (KCOV on); the others are
//! moved to `OUT/corpus.pruned/`, not deleted.

use super::features;
use super::FuzzError;
use crate::backend::kernel::boot::KernelChoice;
use crate::diff::{BackendChoice, Execution, Executor};
use crate::findings::programs;
use crate::oracle::Suppressions;
use crate::targets::Target;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What `corpus minimize` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusSummary {
    pub before: usize,
    pub after: usize,
    /// Coverage entries the corpus reaches (and the kept set still does).
    pub entries: usize,
    /// Programs that did not run (an unknown area): kept.
    pub unrun: usize,
    pub pruned_dir: PathBuf,
}

/// The map entries of one execution: (index, hit-count bucket), model-state features first,
/// KCOV after, as the campaign's executor fills its map.
pub fn entries(e: &Execution) -> Vec<(usize, u8)> {
    let mut model = vec![0u8; features::MODEL_MAP_SIZE];
    let mut kcov = vec![0u8; features::KCOV_MAP_SIZE];
    let mut v: Vec<(usize, u8)> =
        features::fill_model(&mut model, &features::model_features(e)).into_iter().map(|i| (i, model[i])).collect();
    v.extend(
        features::fill(&mut kcov, &features::kcov_features(e))
            .into_iter()
            .map(|i| (features::MODEL_MAP_SIZE + i, kcov[i])),
    );
    v
}

/// Greedy set cover: the indices of `progs` (ops, entries) to keep so that every map index
/// reaches the highest bucket any program reaches there; at each step the program adding the
/// most entries, the shorter on a tie.
pub fn cover(progs: &[(usize, Vec<(usize, u8)>)]) -> Vec<usize> {
    let mut best: BTreeMap<usize, u8> = BTreeMap::new();
    for (_, es) in progs {
        for &(i, b) in es {
            let m = best.entry(i).or_default();
            *m = (*m).max(b);
        }
    }
    let useful: Vec<BTreeSet<usize>> = progs
        .iter()
        .map(|(_, es)| es.iter().filter(|(i, b)| best.get(i) == Some(b)).map(|(i, _)| *i).collect())
        .collect();
    let mut left: BTreeSet<usize> = best.keys().copied().collect();
    let mut keep = Vec::new();
    while !left.is_empty() {
        let pick = (0..progs.len())
            .map(|k| (useful[k].intersection(&left).count(), std::cmp::Reverse(progs[k].0), std::cmp::Reverse(k)))
            .max();
        let Some((n, _, std::cmp::Reverse(k))) = pick else { break };
        if n == 0 {
            break;
        }
        for i in &useful[k] {
            left.remove(i);
        }
        keep.push(k);
    }
    keep.sort_unstable();
    keep
}

/// Minimizes `OUT/corpus` ([`cover`]) on `target`'s kernel.
pub fn minimize_corpus(
    out: &Path,
    target: &Target,
    kernel: &KernelChoice,
    sup: Suppressions,
) -> Result<CorpusSummary, FuzzError> {
    let dir = out.join("corpus");
    if !dir.is_dir() {
        return Err(FuzzError::Io {
            what: dir,
            msg: "no such directory: give the --out directory of a campaign".into(),
        });
    }
    let files = super::program_files(&dir);
    let mut loaded = Vec::new();
    for f in &files {
        match programs::load(f) {
            Ok(p) => loaded.push(p),
            Err(e) => crate::disk::notice(&format!("cmafuzz corpus minimize: {e}; left where it is")),
        }
    }
    let mut ex = Executor::start(target, BackendChoice::Both, kernel, sup, &mut |l| eprintln!("{l}"))?;
    ex.set_kcov(true);
    let mut ran = Vec::new();
    let mut progs = Vec::new();
    let mut unrun = 0;
    for lp in &loaded {
        match ex.execute(&lp.program) {
            Ok(e) => {
                progs.push((lp.program.ops.len(), entries(&e)));
                ran.push(lp.path.clone());
            }
            Err(_) => unrun += 1,
        }
    }
    let keep: BTreeSet<usize> = cover(&progs).into_iter().collect();
    let entries = progs.iter().flat_map(|(_, es)| es.iter().map(|(i, _)| *i)).collect::<BTreeSet<_>>().len();
    let pruned_dir = out.join("corpus.pruned");
    let io = |p: &Path, e: std::io::Error| FuzzError::Io { what: p.to_path_buf(), msg: e.to_string() };
    std::fs::create_dir_all(&pruned_dir).map_err(|e| io(&pruned_dir, e))?;
    for (k, p) in ran.iter().enumerate() {
        if keep.contains(&k) {
            continue;
        }
        let Some(name) = p.file_name() else { continue };
        let dest = pruned_dir.join(name);
        std::fs::rename(p, &dest).map_err(|e| io(p, e))?;
    }
    Ok(CorpusSummary { before: files.len(), after: files.len() - (ran.len() - keep.len()), entries, unrun, pruned_dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cover_keeps_every_entry_at_its_highest_bucket_with_the_fewest_programs() {
        let progs = vec![
            (10, vec![(1, 1), (2, 1), (3, 1)]),
            (2, vec![(1, 1)]),
            (3, vec![(2, 1), (3, 1)]),
            (4, vec![(1, 2)]),
            (50, vec![(1, 1), (2, 1), (3, 1), (4, 1)]),
        ];
        // 4 entries: (1, bucket 2) only from #3, entry 4 only from #4, which also covers 2 and 3.
        assert_eq!(cover(&progs), vec![3, 4]);
        let same = vec![(5, vec![(7, 1)]), (3, vec![(7, 1)])];
        assert_eq!(cover(&same), vec![1], "the shorter of two equal programs");
        assert!(cover(&[]).is_empty());
    }
}
