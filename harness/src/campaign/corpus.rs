//! Corpus hygiene, one rule for two front ends: keep the smallest set of programs (greedy set
//! cover, [`cover`]) that reaches every coverage entry the whole corpus reaches, in the
//! campaign's own terms: the entries of its `MaxMapFeedback` map at their highest hit-count
//! bucket, model-state features and KCOV alike ([`features`]).
//!
//! - `cmafuzz corpus minimize OUT` ([`minimize_corpus`]): each program of `OUT/corpus` runs once
//!   on one VM (KCOV on); the others are moved to `OUT/corpus.pruned/`, not deleted.
//! - A running campaign ([`cull`]): every queue entry carries the map entries it reached when it
//!   was added ([`QueueEntries`], recorded by [`QueueEntriesFeedback`]), so the client culls its
//!   queue without running anything again, whenever it has grown by half since the last cull
//!   ([`should_cull`]) and once more as it exits. A culled program is deleted from `OUT/corpus`
//!   (LibAFL's lock counter keeps the file while another client still holds it) and its name
//!   appended to `OUT/corpus.culled`: everything it reached, a kept program reaches too.
//!   Findings are not queue entries (they are the objective's, in `OUT/findings`), so a cull never
//!   touches one.

use super::features;
use super::input::ProgramInput;
use super::FuzzError;
use crate::backend::kernel::boot::KernelChoice;
use crate::diff::{BackendChoice, Execution, Executor};
use crate::findings::programs;
use crate::oracle::Suppressions;
use crate::targets::Target;
use libafl::corpus::{Corpus, Testcase};
use libafl::executors::ExitKind;
use libafl::feedbacks::{Feedback, StateInitializer};
use libafl::schedulers::RemovableScheduler;
use libafl::state::HasCorpus;
use libafl::Error;
use libafl::HasMetadata;
use libafl_bolts::tuples::{Handle, MatchNameRef};
use libafl_bolts::Named;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
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
/// most entries, the shorter on a tie. Then every kept program all of whose entries the others
/// kept reach is dropped, the longest first: greedy alone can keep an early pick that the later
/// ones make redundant, and the result must be its own cover (a cull's queue, minimized again,
/// loses nothing).
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
    let mut reached: BTreeMap<usize, usize> = BTreeMap::new();
    for &k in &keep {
        for &i in &useful[k] {
            *reached.entry(i).or_default() += 1;
        }
    }
    let mut order = keep.clone();
    order.sort_by_key(|&k| (std::cmp::Reverse(progs[k].0), std::cmp::Reverse(k)));
    for k in order {
        if useful[k].iter().all(|i| reached.get(i).is_some_and(|&n| n > 1)) {
            for i in &useful[k] {
                if let Some(n) = reached.get_mut(i) {
                    *n -= 1;
                }
            }
            keep.retain(|&x| x != k);
        }
    }
    keep.sort_unstable();
    keep
}

/// The map entries (index, hit-count bucket) a queue entry reached when it was added.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntries {
    pub entries: Vec<(u32, u8)>,
}

libafl_bolts::impl_serdeany!(QueueEntries);

/// The nonzero entries of a coverage map (its values are already buckets: the executor fills
/// them so, [`features::fill`]).
pub fn map_entries(map: &[u8]) -> Vec<(u32, u8)> {
    map.iter().enumerate().filter(|(_, v)| **v != 0).map(|(i, v)| (i as u32, *v)).collect()
}

/// Never interesting by itself: it attaches [`QueueEntries`] to every program the campaign adds
/// to its queue (seeds included), from the coverage map of that program's run.
pub struct QueueEntriesFeedback {
    map: Handle<super::executor::MapObs>,
}

impl QueueEntriesFeedback {
    pub fn new(map: Handle<super::executor::MapObs>) -> Self {
        QueueEntriesFeedback { map }
    }
}

impl Named for QueueEntriesFeedback {
    fn name(&self) -> &Cow<'static, str> {
        static NAME: Cow<'static, str> = Cow::Borrowed("queue-entries");
        &NAME
    }
}

impl<S> StateInitializer<S> for QueueEntriesFeedback {}

impl<EM, OT, S> Feedback<EM, ProgramInput, OT, S> for QueueEntriesFeedback
where
    OT: MatchNameRef,
{
    fn is_interesting(
        &mut self,
        _state: &mut S,
        _manager: &mut EM,
        _input: &ProgramInput,
        _observers: &OT,
        _exit_kind: &ExitKind,
    ) -> Result<bool, Error> {
        Ok(false)
    }

    fn append_metadata(
        &mut self,
        _state: &mut S,
        _manager: &mut EM,
        observers: &OT,
        testcase: &mut Testcase<ProgramInput>,
    ) -> Result<(), Error> {
        if let Some(obs) = observers.get(&self.map) {
            let map: &[u8] = &obs.as_ref()[..];
            testcase.add_metadata(QueueEntries { entries: map_entries(map) });
        }
        Ok(())
    }
}

/// Queue entries below which a campaign does not cull.
pub const CULL_FLOOR: usize = 64;

/// Whether a queue of `now` entries, `kept` after the last cull, is due for one: it has grown
/// by half (and is above [`CULL_FLOOR`]). The queue stays within 1.5 times its covering set (plus
/// the floor), and the culls cost a bounded share of the campaign however long it runs.
pub fn should_cull(now: usize, kept: usize) -> bool {
    now >= CULL_FLOOR && now > kept + kept / 2
}

/// What one cull did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Culled {
    pub before: usize,
    pub after: usize,
}

/// Culls the queue of `state` to [`cover`] of its entries' [`QueueEntries`] (a program
/// without them, which should not happen, is kept). Removed programs leave the scheduler too
/// (`on_remove`), their files go from `OUT/corpus` and their names are appended to `log`.
pub fn cull<S, CS>(state: &mut S, scheduler: &mut CS, log: &Path) -> Result<Culled, Error>
where
    S: HasCorpus<ProgramInput>,
    CS: RemovableScheduler<ProgramInput, S>,
{
    let before = state.corpus().count();
    let mut ids = Vec::new();
    let mut progs = Vec::new();
    for id in state.corpus().ids() {
        let tc = state.corpus().get(id)?.borrow();
        let Ok(m) = tc.metadata::<QueueEntries>() else { continue };
        let ops = tc.input().as_ref().map_or(usize::MAX, |p| p.0.ops.len());
        progs.push((ops, m.entries.iter().map(|&(i, b)| (i as usize, b)).collect::<Vec<_>>()));
        ids.push(id);
    }
    let keep: BTreeSet<usize> = cover(&progs).into_iter().collect();
    let mut names = String::new();
    // From the back, as LibAFL's own corpus minimizer removes.
    for (k, id) in ids.iter().enumerate().rev() {
        if keep.contains(&k) {
            continue;
        }
        let tc = state.corpus_mut().remove(*id)?;
        if let Some(n) = tc.file_path().as_ref().and_then(|p| p.file_name()) {
            names.push_str(&n.to_string_lossy());
            names.push('\n');
        }
        scheduler.on_remove(state, *id, &Some(tc))?;
    }
    // The scheduler's current entry may have gone: it starts again from the first.
    *state.corpus_mut().current_mut() = None;
    if !names.is_empty() {
        let r = std::fs::OpenOptions::new().create(true).append(true).open(log).and_then(|mut f| {
            f.write_all(names.as_bytes())?;
            f.flush()
        });
        if let Err(e) = r {
            eprintln!("cmafuzz fuzz: cannot append to {}: {e}", log.display());
        }
    }
    Ok(Culled { before, after: state.corpus().count() })
}

/// Minimizes `OUT/corpus` ([`cover`]) on `target`'s kernel (or, with `backend` `Model`, on
/// the model alone, for a campaign run so).
pub fn minimize_corpus(
    out: &Path,
    target: &Target,
    kernel: &KernelChoice,
    backend: BackendChoice,
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
    let mut ex = Executor::start(target, backend, kernel, sup, &mut |l| eprintln!("{l}"))?;
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

    #[test]
    fn a_cover_keeps_no_program_the_other_kept_ones_make_redundant() {
        // Greedy takes 0 first (three new entries), then needs 1, 2 and 3 for entries 4-6,
        // which between them reach 1-3 too: 0 goes.
        let e = |v: &[usize]| v.iter().map(|&i| (i, 1u8)).collect::<Vec<_>>();
        let progs = vec![(1, e(&[1, 2, 3])), (1, e(&[1, 4])), (1, e(&[2, 5])), (1, e(&[3, 6]))];
        assert_eq!(cover(&progs), vec![1, 2, 3]);
        let again: Vec<_> = cover(&progs).into_iter().map(|k| progs[k].clone()).collect();
        assert_eq!(cover(&again).len(), again.len(), "a cover is its own cover");
    }

    #[test]
    fn a_queue_is_culled_once_it_has_grown_by_half_above_the_floor() {
        assert!(!should_cull(CULL_FLOOR - 1, 0));
        assert!(should_cull(CULL_FLOOR, 0));
        assert!(!should_cull(149, 100));
        assert!(should_cull(151, 100));
        assert_eq!(map_entries(&[0, 3, 0, 1]), vec![(1, 3), (3, 1)]);
    }
}
