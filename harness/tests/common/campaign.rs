//! What the campaign tests (`fuzz.rs`, `minimize.rs`, `queue.rs`) read from a campaign's `OUT`
//! and how they wait for its process.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// The queue's program files in `OUT/corpus` (not LibAFL's hidden `.<hash>.prog` lock files).
pub fn corpus_files(out: &Path) -> BTreeSet<String> {
    std::fs::read_dir(out.join("corpus"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".prog") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// The exit status of `child`, which must come within `limit` (`what` names the wait in the
/// failure); polled, so the test reads the child's state, not a clock.
pub fn exit_within(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        assert!(t.elapsed() < limit, "{what}: not exited within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
