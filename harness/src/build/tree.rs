//! Builds the kernel checked out in a persistent tree (a bisect's private git worktree), in
//! place: no copy of the source, `O=` a persistent output directory beside it, so `make`
//! rebuilds only what the last checkout changed, and ccache (paths relative to the common
//! parent of tree and output) shares objects with every other build of the same layout.
//! Outputs are published into the kernel cache like [`kernel::build`]'s, keyed by the tree's
//! identity (a git tree id), so a commit already built is a cache hit.

use crate::build::kernel::{self, BuildError, BuildRequest, KernelArtifacts};

pub use crate::build::kernel::InPlaceTree;

/// Builds what is checked out in `tree.src` (named by `identity`, e.g. `gittree:<id>`), with
/// `req.patches` applied and the driver installed into the tree: the caller restores the tree
/// afterwards (`git reset --hard`), since both write into it. `req.src` is ignored.
pub fn build_in_place(
    req: &BuildRequest,
    tree: &InPlaceTree,
    identity: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<KernelArtifacts, BuildError> {
    kernel::build_in_place_after(req, tree, identity, &mut |_, _| Ok(()), progress)
}
