//! `--kernel-src`'s profile read from the real sources of every known version (Debian's
//! tarballs, unpacked here only as far as the files the profile reads): each one gets its own
//! version's profile, with the behaviour the model has for it.

use cmafuzz::build::{sources, tree_profile};
use cmafuzz::targets;
use reference_impl::profile::Version;
use std::process::Command;

#[test]
fn every_known_versions_own_sources_get_its_profile() {
    for (target, want) in [
        ("arm32-6.1", Version::V6_1),
        ("arm32-6.12", Version::V6_12),
        ("arm32-7.2", Version::V7_2),
        ("arm32-7.3", Version::V7_3),
    ] {
        let t = targets::find(Some(target)).expect("target");
        let tar = sources::ensure(&t, &mut |l| eprintln!("{l}")).expect("the target's source tarball");
        let dir = tempfile::tempdir().expect("tempdir");
        let files = [
            "Makefile",
            "mm/cma.c",
            "mm/cma.h",
            "kernel/dma/pool.c",
            "arch/arm64/mm/pageattr.c",
            "include/linux/gfp.h",
        ];
        let st = Command::new("tar")
            .arg("-C")
            .arg(dir.path())
            .args(["--strip-components=1", "--wildcards", "-xJf"])
            .arg(&tar)
            .args(files.iter().map(|f| format!("*/{f}")))
            .status()
            .expect("tar runs");
        assert!(st.success(), "{}: tar failed", tar.display());
        let p = tree_profile::read(dir.path()).unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(p.version, want, "{target}: {}", p.describe());
        assert!(p.exact(), "{target}: {}", p.describe());
        assert_eq!(p.behaviour, want.behaviour(), "{target}: {}", p.describe());
    }
}
