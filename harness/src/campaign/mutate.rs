//! Structure-aware mutation of programs: insert / delete / duplicate / swap / splice ops, argument
//! tweaks towards the values CMA gets wrong (relative to the area the op names: its bit size,
//! base alignment, end and ranges' ends), moving an op to another of the target's areas, and
//! handle retargeting — with every handle kept valid.
//!
//! Handles are positional (the k-th allocating op defines `h=k`), so moving ops around would
//! silently change what every later `cma_release h=…` names. Edits therefore work on [`Node`]s,
//! where a release names its allocating op by a stable id, and the program is renumbered at the
//! end; a release whose allocation was deleted or now comes after it is pointed at another
//! earlier allocation (or dropped if there is none). The pure functions here take a [`Dice`], so
//! they are tested without LibAFL; [`mutators`] wraps them as LibAFL mutators.

use super::input::{ProgramInput, MAX_FUZZ_OPS};
use crate::generate::{op_area, op_area_mut, GenArea};
use libafl::corpus::Corpus;
use libafl::mutators::{MutationResult, Mutator};
use libafl::state::{HasCorpus, HasRand};
use libafl::Error;
use libafl_bolts::rands::Rand;
use libafl_bolts::Named;
use reference_impl::program::{AreaRef, Handle, Op, Program, MAX_ALIGN, MAX_COUNT, MAX_DMA_SIZE};
use reference_impl::units::{Bytes, Order, Pages};
use std::borrow::Cow;
use std::sync::Arc;

const PAGE: u64 = 4096;
/// Interesting page counts: 0, 1, pageblock (1024) ± 1, two pageblocks ± 1, the area (8192) ± 1.
pub const COUNTS: &[u64] = &[0, 1, 2, 3, 1023, 1024, 1025, 2047, 2048, 2049, 4095, 4096, 4097, 8191, 8192, 8193];
/// Page counts of DMA buffers around powers of two up to past `CONFIG_CMA_ALIGNMENT` (order 8
/// = 256 pages on every target), where the alignment stops growing with the size.
const DMA_PAGES: &[u64] = &[1, 2, 3, 4, 8, 16, 32, 64, 128, 255, 256, 257, 512, 1024];
/// Page offsets inside/around the area: its ends, pageblock edges, just past the boot pools.
const OFFSETS: &[i64] = &[-1, 0, 1, 63, 64, 65, 1023, 1024, 1025, 2048, 4096, 8191, 8192, 8193];

/// A source of randomness: LibAFL's state rand in the fuzzer, a seeded stream in tests.
pub trait Dice {
    fn next_u64(&mut self) -> u64;

    /// Uniform in `0..n` (`n == 0` gives 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next_u64() % den.max(1) < num
    }
}

fn pick<T: Copy>(d: &mut dyn Dice, xs: &[T]) -> T {
    xs[d.below(xs.len())]
}

/// splitmix64, for tests and for seeding the generator.
pub struct SplitMix(pub u64);

impl Dice for SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

struct RandDice<'a, R: Rand>(&'a mut R);

impl<R: Rand> Dice for RandDice<'_, R> {
    fn next_u64(&mut self) -> u64 {
        self.0.next()
    }
}

/// One op during editing. `target` is the id of the allocating node a `cma_release`/`dma_free`
/// names (`None`: it named a handle nothing defines before it).
#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub id: u32,
    pub target: Option<u32>,
}

/// The program as nodes with ids `base..`.
pub fn to_nodes(p: &Program, base: u32) -> Vec<Node> {
    let mut alloc_ids: Vec<u32> = Vec::new();
    let mut out = Vec::with_capacity(p.ops.len());
    for (i, op) in p.ops.iter().enumerate() {
        let id = base.wrapping_add(i as u32);
        let target = match op {
            Op::CmaRelease { h } | Op::DmaFree { h } | Op::DmaMap { h, .. } => alloc_ids.get(h.0 as usize).copied(),
            _ => None,
        };
        if op.allocates() {
            alloc_ids.push(id);
        }
        out.push(Node { op: op.clone(), id, target });
    }
    out
}

/// The kind of handle an op names: `Some(Some(true))` a `cma_alloc`, `Some(Some(false))` a
/// `dma_alloc`, `Some(None)` either (`dma_map`); `None` when it names no handle.
fn wants_cma(op: &Op) -> Option<Option<bool>> {
    match op {
        Op::CmaRelease { .. } => Some(Some(true)),
        Op::DmaFree { .. } => Some(Some(false)),
        Op::DmaMap { .. } => Some(None),
        _ => None,
    }
}

/// Renumbers handles and repairs references: the inverse of [`to_nodes`] for untouched nodes.
/// Drops ops beyond [`MAX_FUZZ_OPS`].
pub fn from_nodes(nodes: Vec<Node>, d: &mut dyn Dice) -> Program {
    // (id, is_cma) of allocating nodes seen so far, in order: index = handle.
    let mut allocs: Vec<(u32, bool)> = Vec::new();
    let mut ops = Vec::with_capacity(nodes.len());
    for n in nodes.into_iter().take(MAX_FUZZ_OPS) {
        let mut op = n.op;
        if let Some(cma) = wants_cma(&op) {
            let h = match n.target.and_then(|t| allocs.iter().position(|(id, _)| *id == t)) {
                Some(h) => Some(h),
                None => retarget(&allocs, cma, d),
            };
            let Some(h) = h else { continue };
            let h = Handle(h as u32);
            op = match (op, cma) {
                (Op::DmaMap { dir, .. }, _) => Op::DmaMap { h, dir },
                (_, Some(true)) => Op::CmaRelease { h },
                _ => Op::DmaFree { h },
            };
        }
        if op.allocates() {
            allocs.push((n.id, matches!(op, Op::CmaAlloc { .. })));
        }
        ops.push(op);
    }
    Program { ops }
}

/// An earlier allocation to name: mostly one of the wanted kind, sometimes any (wrong-kind
/// handles are no-ops on both sides, and worth keeping as such).
fn retarget(allocs: &[(u32, bool)], cma: Option<bool>, d: &mut dyn Dice) -> Option<usize> {
    if allocs.is_empty() {
        return None;
    }
    let same: Vec<usize> =
        allocs.iter().enumerate().filter(|(_, (_, c))| cma.map_or(true, |w| *c == w)).map(|(i, _)| i).collect();
    if same.is_empty() || d.chance(1, 8) {
        Some(d.below(allocs.len()))
    } else {
        Some(same[d.below(same.len())])
    }
}

/// A fresh op drawn from the seeded generator's distribution over `space`'s areas (every kind
/// the kernel offers, every area, their corner values).
fn fresh_op(d: &mut dyn Dice, space: &Space) -> Op {
    loop {
        let p = if space.areas.is_empty() {
            crate::generate::program(d.next_u64())
        } else {
            crate::generate::program_for(d.next_u64(), &space.areas)
        };
        let p = crate::generate::without_kinds(p, &space.refused);
        if !p.ops.is_empty() {
            return p.ops[d.below(p.ops.len())].clone();
        }
    }
}

/// What the mutators draw from: the target's areas (as its kernel reports them) and the op
/// kinds its kernel refuses ([`crate::diff::Executor::refused_kinds`]), which they never insert.
#[derive(Debug, Clone, Default)]
pub struct Space {
    pub areas: Vec<GenArea>,
    pub refused: Vec<&'static str>,
}

impl Space {
    /// Every op kind offered.
    pub fn of(areas: Vec<GenArea>) -> Space {
        Space { areas, refused: Vec::new() }
    }
}

/// The target area an op names (`None`: it names none, or one the target lacks).
fn area_of<'a>(op: &Op, areas: &'a [GenArea]) -> Option<&'a GenArea> {
    match op_area(op)? {
        AreaRef::Name(n) => areas.iter().find(|a| &a.name == n),
        AreaRef::Index(i) => areas.get(*i as usize),
    }
}

fn next_id(nodes: &[Node]) -> u32 {
    nodes.iter().map(|n| n.id).max().map_or(0, |m| m.wrapping_add(1))
}

fn fresh_node(nodes: &[Node], op: Op) -> Node {
    Node { op, id: next_id(nodes), target: None }
}

/// The structural edits a mutator can make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    Insert,
    Delete,
    Duplicate,
    Swap,
    Tweak,
    Retarget,
    InsertObserve,
    /// Move an op that names an area to another of the target's areas (its arguments made
    /// relative to the new one now and then).
    Area,
}

pub const EDITS: &[Edit] = &[
    Edit::Insert,
    Edit::Delete,
    Edit::Duplicate,
    Edit::Swap,
    Edit::Tweak,
    Edit::Retarget,
    Edit::InsertObserve,
    Edit::Area,
];

/// Applies `edit` to `p` over the target's `areas`; `false` when it could not apply (for
/// example deleting from a one-op program) and `p` is unchanged.
pub fn apply(p: &mut Program, edit: Edit, d: &mut dyn Dice, space: &Space) -> bool {
    let areas = &space.areas[..];
    let mut nodes = to_nodes(p, 0);
    let len = nodes.len();
    let ok = match edit {
        Edit::Insert | Edit::InsertObserve => {
            if len >= MAX_FUZZ_OPS {
                return false;
            }
            let op = if edit == Edit::Insert { fresh_op(d, space) } else { Op::Observe };
            let at = d.below(len + 1);
            let n = fresh_node(&nodes, op);
            nodes.insert(at, n);
            true
        }
        Edit::Delete => {
            if len <= 1 {
                return false;
            }
            // Sometimes a whole run, so long programs can shrink.
            let at = d.below(len);
            let run = if d.chance(1, 4) { 1 + d.below((len - at).min(8)) } else { 1 };
            let run = run.min(len - 1);
            nodes.drain(at..(at + run).min(len));
            true
        }
        Edit::Duplicate => {
            if len == 0 || len >= MAX_FUZZ_OPS {
                return false;
            }
            let from = d.below(len);
            let run = (1 + d.below(4)).min(len - from).min(MAX_FUZZ_OPS - len);
            let to = d.below(len + 1);
            let mut id = next_id(&nodes);
            let copies: Vec<Node> = nodes[from..from + run]
                .iter()
                .map(|n| {
                    let c = Node { op: n.op.clone(), id, target: n.target };
                    id = id.wrapping_add(1);
                    c
                })
                .collect();
            nodes.splice(to..to, copies);
            true
        }
        Edit::Swap => {
            if len < 2 {
                return false;
            }
            let a = d.below(len);
            let b = d.below(len);
            if a == b || nodes[a].op == nodes[b].op {
                return false;
            }
            nodes.swap(a, b);
            true
        }
        Edit::Tweak => {
            let tweakable: Vec<usize> = (0..len)
                .filter(|i| !matches!(nodes[*i].op, Op::Observe | Op::CmaRelease { .. } | Op::DmaFree { .. }))
                .collect();
            if tweakable.is_empty() {
                return false;
            }
            let i = tweakable[d.below(tweakable.len())];
            let before = nodes[i].op.clone();
            tweak(&mut nodes[i].op, d, areas);
            nodes[i].op != before
        }
        Edit::Area => {
            let named: Vec<usize> = (0..len).filter(|i| op_area(&nodes[*i].op).is_some()).collect();
            if named.is_empty() || areas.len() < 2 {
                return false;
            }
            let i = named[d.below(named.len())];
            let to = &areas[d.below(areas.len())];
            let before = nodes[i].op.clone();
            if let Some(a) = op_area_mut(&mut nodes[i].op) {
                *a = AreaRef::Name(to.name.clone());
            }
            if d.chance(1, 2) {
                tweak(&mut nodes[i].op, d, areas);
            }
            nodes[i].op != before
        }
        Edit::Retarget => {
            let refs: Vec<usize> = (0..len).filter(|i| wants_cma(&nodes[*i].op).is_some()).collect();
            if refs.is_empty() {
                return false;
            }
            let i = refs[d.below(refs.len())];
            let earlier: Vec<u32> = nodes[..i].iter().filter(|n| n.op.allocates()).map(|n| n.id).collect();
            if earlier.is_empty() {
                return false;
            }
            let t = earlier[d.below(earlier.len())];
            if nodes[i].target == Some(t) {
                return false;
            }
            nodes[i].target = Some(t);
            true
        }
    };
    if ok {
        *p = from_nodes(nodes, d);
        if p.ops.is_empty() {
            p.ops.push(Op::Observe);
        }
    }
    ok
}

/// `p`'s first `cut` ops followed by `other`'s ops from `other_cut` on; references into the part
/// of `other` that was left out are repaired.
pub fn splice(p: &Program, other: &Program, d: &mut dyn Dice) -> Program {
    let cut = d.below(p.ops.len() + 1);
    let other_cut = d.below(other.ops.len() + 1);
    let mut nodes = to_nodes(p, 0);
    nodes.truncate(cut);
    let base = p.ops.len() as u32 + 1;
    nodes.extend(to_nodes(other, base).into_iter().skip(other_cut));
    let mut out = from_nodes(nodes, d);
    if out.ops.is_empty() {
        out.ops.push(Op::Observe);
    }
    out
}

fn tweak_count(c: u64, d: &mut dyn Dice, area: Option<&GenArea>) -> u64 {
    let v = match d.below(6) {
        0 => pick(d, COUNTS),
        1 => match area {
            Some(a) => pick(d, &a.interesting_counts()),
            None => pick(d, COUNTS),
        },
        5 => match area {
            // A multiple of the area's bit, or a bit more or less than `c`.
            Some(a) if d.chance(1, 2) => (1 + d.below(64) as u64) * a.bit_pages(),
            Some(a) if d.chance(1, 2) => c.saturating_add(a.bit_pages()),
            Some(a) => c.saturating_sub(a.bit_pages()),
            None => c.saturating_add(1),
        },
        2 => c.saturating_add(1),
        3 => c.saturating_sub(1),
        _ => {
            if d.chance(1, 2) {
                c.saturating_mul(2)
            } else {
                c / 2
            }
        }
    };
    v.min(MAX_COUNT)
}

fn tweak_align(a: u32, d: &mut dyn Dice, area: Option<&GenArea>) -> u32 {
    match d.below(5) {
        0 | 1 => d.below(14) as u32,
        4 => match area {
            Some(ar) => pick(d, &ar.interesting_aligns()).min(MAX_ALIGN),
            None => d.below(14) as u32,
        },
        2 => (a + 1).min(MAX_ALIGN),
        _ => a.saturating_sub(1),
    }
}

fn tweak_size(s: u64, d: &mut dyn Dice) -> u64 {
    let v = match d.below(5) {
        0..=2 => {
            let base = pick(d, DMA_PAGES) * PAGE;
            match d.below(4) {
                0 => base.saturating_sub(1),
                1 => base + 1,
                2 => base.saturating_sub(PAGE) + 1,
                _ => base,
            }
        }
        3 => {
            if d.chance(1, 2) {
                s.saturating_add(PAGE)
            } else {
                s.saturating_sub(PAGE)
            }
        }
        _ => {
            if d.chance(1, 2) {
                s.saturating_add(1)
            } else {
                s.saturating_sub(1)
            }
        }
    };
    v.min(MAX_DMA_SIZE)
}

fn tweak_off(o: i64, d: &mut dyn Dice, area: Option<&GenArea>) -> i64 {
    match (d.below(6), area) {
        (0, _) | (1, None) => pick(d, OFFSETS),
        (1, Some(a)) => pick(d, &a.interesting_offsets()),
        (2, _) => o.saturating_add(1),
        (3, _) => o.saturating_sub(1),
        (5, Some(a)) => {
            let bit = a.bit_pages() as i64;
            if d.chance(1, 2) {
                o.saturating_add(bit)
            } else {
                o.saturating_sub(bit)
            }
        }
        (_, Some(a)) => d.below(a.pages.max(1) as usize) as i64,
        _ => d.below(8192) as i64,
    }
}

/// Moves one argument of `op` towards an interesting value, relative to the area it names
/// when that is one of `areas`.
pub fn tweak(op: &mut Op, d: &mut dyn Dice, areas: &[GenArea]) {
    let area = area_of(op, areas);
    match op {
        Op::CmaAlloc { count, align, .. } => {
            if d.chance(1, 2) {
                *count = Pages(tweak_count(count.0, d, area));
            } else {
                *align = Order(tweak_align(align.0, d, area));
            }
        }
        Op::CmaReleaseRaw { off, count, .. } => {
            if d.chance(1, 2) {
                *count = Pages(tweak_count(count.0, d, area));
            } else {
                *off = tweak_off(*off, d, area);
            }
        }
        Op::DmaAlloc { size, attrs, gfp } => match d.below(5) {
            0 => attrs.wc = !attrs.wc,
            1 => attrs.nokmap = !attrs.nokmap,
            2 => {
                *gfp = match gfp {
                    reference_impl::program::Gfp::Kernel => reference_impl::program::Gfp::Atomic,
                    reference_impl::program::Gfp::Atomic => reference_impl::program::Gfp::Kernel,
                }
            }
            _ => *size = Bytes(tweak_size(size.0, d)),
        },
        Op::Pin { off, .. } | Op::Unpin { off, .. } | Op::Kmap { off, .. } => *off = tweak_off(*off, d, area),
        Op::DmaMap { dir, .. } => *dir = crate::generate::dir_of(d.next_u64()),
        Op::CmaRelease { .. } | Op::DmaFree { .. } | Op::Observe => {}
    }
}

/// One mutator per edit, as a LibAFL mutator.
#[derive(Debug, Clone)]
pub struct EditMutator {
    edit: Edit,
    name: Cow<'static, str>,
    space: Arc<Space>,
}

impl EditMutator {
    pub fn new(edit: Edit, space: Arc<Space>) -> Self {
        let name = match edit {
            Edit::Insert => "prog-insert",
            Edit::Delete => "prog-delete",
            Edit::Duplicate => "prog-duplicate",
            Edit::Swap => "prog-swap",
            Edit::Tweak => "prog-tweak",
            Edit::Retarget => "prog-retarget",
            Edit::InsertObserve => "prog-insert-observe",
            Edit::Area => "prog-area",
        };
        EditMutator { edit, name: Cow::Borrowed(name), space }
    }
}

impl Named for EditMutator {
    fn name(&self) -> &Cow<'static, str> {
        &self.name
    }
}

impl<S: HasRand> Mutator<ProgramInput, S> for EditMutator {
    fn mutate(&mut self, state: &mut S, input: &mut ProgramInput) -> Result<MutationResult, Error> {
        let mut d = RandDice(state.rand_mut());
        Ok(if apply(&mut input.0, self.edit, &mut d, &self.space) {
            MutationResult::Mutated
        } else {
            MutationResult::Skipped
        })
    }

    fn post_exec(&mut self, _state: &mut S, _new: Option<libafl::corpus::CorpusId>) -> Result<(), Error> {
        Ok(())
    }
}

/// Splices the input with another corpus entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpliceMutator;

impl Named for SpliceMutator {
    fn name(&self) -> &Cow<'static, str> {
        static NAME: Cow<'static, str> = Cow::Borrowed("prog-splice");
        &NAME
    }
}

impl<S: HasRand + HasCorpus<ProgramInput>> Mutator<ProgramInput, S> for SpliceMutator {
    fn mutate(&mut self, state: &mut S, input: &mut ProgramInput) -> Result<MutationResult, Error> {
        let count = state.corpus().count();
        if count == 0 {
            return Ok(MutationResult::Skipped);
        }
        let nth = RandDice(state.rand_mut()).below(count);
        let id = state.corpus().nth(nth);
        let other = state.corpus().cloned_input_for_id(id)?;
        let mut d = RandDice(state.rand_mut());
        let out = splice(&input.0, &other.0, &mut d);
        if out == input.0 {
            return Ok(MutationResult::Skipped);
        }
        input.0 = out;
        Ok(MutationResult::Mutated)
    }

    fn post_exec(&mut self, _state: &mut S, _new: Option<libafl::corpus::CorpusId>) -> Result<(), Error> {
        Ok(())
    }
}

/// Every program mutator over `space`, as a tuple for `HavocScheduledMutator`.
/// Tweaks are listed twice: most bugs sit at one corner value of one argument.
pub fn mutators(
    space: Arc<Space>,
) -> libafl_bolts::tuples::tuple_list_type!(
    EditMutator,
    EditMutator,
    EditMutator,
    EditMutator,
    EditMutator,
    EditMutator,
    EditMutator,
    EditMutator,
    EditMutator,
    SpliceMutator
) {
    libafl_bolts::tuples::tuple_list!(
        EditMutator::new(Edit::Insert, space.clone()),
        EditMutator::new(Edit::Delete, space.clone()),
        EditMutator::new(Edit::Duplicate, space.clone()),
        EditMutator::new(Edit::Swap, space.clone()),
        EditMutator::new(Edit::Tweak, space.clone()),
        EditMutator::new(Edit::Tweak, space.clone()),
        EditMutator::new(Edit::Retarget, space.clone()),
        EditMutator::new(Edit::InsertObserve, space.clone()),
        EditMutator::new(Edit::Area, space),
        SpliceMutator
    )
}

/// `p` with every handle naming an earlier allocation (references to nothing are retargeted or
/// dropped): what the generator hands the fuzzer.
pub fn valid(p: Program, d: &mut dyn Dice) -> Program {
    let mut out = from_nodes(to_nodes(&p, 0), d);
    if out.ops.is_empty() {
        out.ops.push(Op::Observe);
    }
    out
}

/// Handles of `p` that name nothing defined before them: empty for every program the
/// mutators produce.
pub fn dangling_handles(p: &Program) -> Vec<usize> {
    let mut defined = 0u32;
    let mut bad = Vec::new();
    for (i, op) in p.ops.iter().enumerate() {
        if let Op::CmaRelease { h } | Op::DmaFree { h } | Op::DmaMap { h, .. } = op {
            if h.0 >= defined {
                bad.push(i);
            }
        }
        if op.allocates() {
            defined += 1;
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prog(text: &str) -> Program {
        Program::parse(text).expect("test program parses")
    }

    #[test]
    fn untouched_nodes_give_back_the_same_program() {
        for seed in 0..100 {
            let p = crate::generate::program(seed);
            // Only programs whose handles are already valid survive unchanged.
            if !dangling_handles(&p).is_empty() {
                continue;
            }
            assert_eq!(from_nodes(to_nodes(&p, 0), &mut SplitMix(seed)), p, "seed {seed}");
        }
    }

    #[test]
    fn deleting_an_allocation_renumbers_later_handles() {
        let p =
            prog("cma_alloc area=reserved count=1 align=0\ncma_alloc area=reserved count=2 align=0\ncma_release h=1\n");
        let mut nodes = to_nodes(&p, 0);
        nodes.remove(0);
        let q = from_nodes(nodes, &mut SplitMix(1));
        assert_eq!(q, prog("cma_alloc area=reserved count=2 align=0\ncma_release h=0\n"));
    }

    #[test]
    fn a_release_moved_before_its_allocation_is_retargeted_or_dropped() {
        let p = prog("cma_alloc area=reserved count=2 align=0\ncma_release h=0\n");
        let mut nodes = to_nodes(&p, 0);
        nodes.swap(0, 1);
        let q = from_nodes(nodes, &mut SplitMix(1));
        // No allocation precedes the release any more: it goes.
        assert_eq!(q, prog("cma_alloc area=reserved count=2 align=0\n"));
    }

    #[test]
    fn splice_keeps_references_into_the_kept_suffix() {
        let a = prog("dma_alloc size=4096 attrs=none gfp=kernel\n");
        let b = prog("cma_alloc area=reserved count=5 align=0\ncma_release h=0\n");
        // Dice that always says 0 after the two cuts: cut a at its end (1), b at 0.
        struct Seq(Vec<u64>);
        impl Dice for Seq {
            fn next_u64(&mut self) -> u64 {
                if self.0.is_empty() {
                    0
                } else {
                    self.0.remove(0)
                }
            }
        }
        let out = splice(&a, &b, &mut Seq(vec![1, 0]));
        assert_eq!(
            out,
            prog(
                "dma_alloc size=4096 attrs=none gfp=kernel\ncma_alloc area=reserved count=5 align=0\ncma_release h=1\n"
            )
        );
    }

    #[test]
    fn tweaks_reach_the_corner_counts_and_aligns() {
        let mut d = SplitMix(7);
        let mut counts = std::collections::BTreeSet::new();
        let mut aligns = std::collections::BTreeSet::new();
        for _ in 0..5000 {
            let mut op = Op::CmaAlloc {
                area: reference_impl::program::AreaRef::Name("reserved".into()),
                count: Pages(16),
                align: Order(4),
            };
            tweak(&mut op, &mut d, &[GenArea::reserved()]);
            if let Op::CmaAlloc { count, align, .. } = op {
                counts.insert(count.0);
                aligns.insert(align.0);
            }
        }
        for c in [0, 1, 1023, 1024, 1025, 8191, 8192, 8193] {
            assert!(counts.contains(&c), "count {c} never reached");
        }
        assert!((0..=13).all(|a| aligns.contains(&a)), "{aligns:?}");
    }

    #[test]
    fn inserted_ops_are_never_of_a_kind_the_kernel_refuses() {
        let space = Space { areas: vec![GenArea::reserved()], refused: vec!["dma_map", "pin"] };
        let mut d = SplitMix(5);
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let mut p = prog("observe\n");
            apply(&mut p, Edit::Insert, &mut d, &space);
            kinds.extend(p.ops.iter().map(Op::kind));
        }
        assert!(!kinds.contains("dma_map") && !kinds.contains("pin"), "{kinds:?}");
        assert!(kinds.contains("cma_alloc") && kinds.contains("kmap"), "the others still come: {kinds:?}");
    }

    #[test]
    fn mutations_move_ops_to_every_area_and_use_its_bit_size() {
        let areas = vec![
            GenArea::reserved(),
            GenArea {
                name: "hugetlb0".into(),
                pages: 262144,
                order_per_bit: 9,
                base_pfn: 0xbfe00,
                range_ends: vec![262144],
            },
        ];
        let mut d = SplitMix(11);
        let mut named = std::collections::BTreeSet::new();
        let mut bit_counts = 0;
        for i in 0..3000 {
            let mut p = prog("cma_alloc area=reserved count=16 align=0\npin area=reserved off=3\n");
            let edit = if i % 2 == 0 { Edit::Area } else { Edit::Tweak };
            apply(&mut p, edit, &mut d, &Space::of(areas.clone()));
            apply(&mut p, Edit::Tweak, &mut d, &Space::of(areas.clone()));
            for op in &p.ops {
                if let Some(AreaRef::Name(n)) = op_area(op) {
                    named.insert(n.clone());
                }
                if let Op::CmaAlloc { area: AreaRef::Name(n), count, .. } = op {
                    if n == "hugetlb0" && count.0 % 512 != 0 && (count.0 + 1) % 512 < 3 {
                        bit_counts += 1;
                    }
                }
            }
        }
        assert_eq!(named.len(), 2, "{named:?}");
        assert!(bit_counts > 0, "no count one off a 512-page bit on hugetlb0");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn mutated_programs_have_valid_handles_and_round_trip_through_text(
            seed in any::<u64>(),
            other in any::<u64>(),
            edits in proptest::collection::vec(0usize..=EDITS.len(), 1..12),
        ) {
            let mut d = SplitMix(seed);
            let areas = vec![GenArea::reserved(), GenArea { name: "hugetlb0".into(), pages: 262144, order_per_bit: 9, base_pfn: 0xbfe00, range_ends: vec![262144] }];
            let mut p = valid(crate::generate::program_for(seed, &areas), &mut d);
            let q = crate::generate::program_for(other, &areas);
            for e in edits {
                if e == EDITS.len() {
                    p = splice(&p, &q, &mut d);
                } else {
                    apply(&mut p, EDITS[e], &mut d, &Space::of(areas.clone()));
                }
                prop_assert!(!p.ops.is_empty());
                prop_assert!(p.ops.len() <= MAX_FUZZ_OPS);
                prop_assert_eq!(dangling_handles(&p), Vec::<usize>::new(), "{}", p.to_text());
                let reparsed = Program::parse(&p.to_text());
                prop_assert_eq!(reparsed.as_ref(), Ok(&p));
            }
        }
    }
}
