//! Reads a kernel console log for signs of trouble: panic, Oops, BUG and
//! WARN. (Soft lockups and RCU stalls are not parsed: the target kernels have
//! no soft-lockup detector, and a stall outlasts the op timeout, so a hung
//! guest is reported by the channel's timeout instead.) Each report has a title in the manner of
//! syzkaller's `pkg/report` (kind + the function it happened in), which is
//! stable across runs and so usable for de-duplication, and the excerpt of
//! the log it came from. Every pattern here has a real console log in
//! `harness/tests/data/console/` with the verdict it must give.

use serde::Serialize;

/// What kind of trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Panic,
    Oops,
    Bug,
    Warning,
    /// A `CONFIG_DMA_API_DEBUG` error report (`DMA-API: <driver> <device>: …`); the WARNING
    /// that carries it is part of it, not reported again.
    DmaApi,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Panic => "PANIC",
            Kind::Oops => "OOPS",
            Kind::Bug => "BUG",
            Kind::Warning => "WARNING",
            Kind::DmaApi => "DMA-API",
        }
    }
}

/// The error class of a DMA-API debug report: one per `err_printk()` message of
/// `kernel/dma/debug.c` (Linux 7.2; the same texts since 5.x). Signatures use [`Self::as_str`],
/// never the report's addresses or sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DmaApiError {
    PendingAllocations,
    FreeInvalidAddress,
    FreeNotAllocated,
    FreeDifferentSize,
    FreeWrongFunction,
    FreeDifferentCpuAddress,
    FreeDifferentSgCount,
    FreeDifferentDirection,
    FreeDifferentAttributes,
    MapErrorNotChecked,
    MapFromStack,
    MapFromKernelText,
    MapFromVmalloc,
    MapFromInvalidArea,
    MapResourceRam,
    SyncNotAllocated,
    SyncOutsideRange,
    SyncDifferentDirection,
    SyncReadOnlyForCpu,
    SyncWriteOnlyToDevice,
    SyncDifferentSgCount,
    SgSegmentTooLong,
    SgSegmentAcrossBoundary,
    CachelineOverlap,
    /// A `device driver …` report this table does not know (a newer kernel's message).
    Unclassified,
}

/// The message texts of `kernel/dma/debug.c` that identify each class (after the
/// `DMA-API: <driver> <device>: ` prefix), in the order they are tried.
const DMA_API_CLASSES: &[(&str, DmaApiError)] = &[
    ("has pending DMA allocations while released", DmaApiError::PendingAllocations),
    ("tries to free an invalid DMA memory address", DmaApiError::FreeInvalidAddress),
    ("tries to free DMA memory it has not allocated", DmaApiError::FreeNotAllocated),
    ("frees DMA memory with different size", DmaApiError::FreeDifferentSize),
    ("frees DMA memory with wrong function", DmaApiError::FreeWrongFunction),
    ("frees DMA memory with different CPU address", DmaApiError::FreeDifferentCpuAddress),
    ("frees DMA sg list with different entry count", DmaApiError::FreeDifferentSgCount),
    ("frees DMA memory with different direction", DmaApiError::FreeDifferentDirection),
    ("frees DMA memory with different attributes", DmaApiError::FreeDifferentAttributes),
    ("failed to check map error", DmaApiError::MapErrorNotChecked),
    ("maps memory from stack", DmaApiError::MapFromStack),
    ("maps memory from kernel text or rodata", DmaApiError::MapFromKernelText),
    ("maps memory from vmalloc area", DmaApiError::MapFromVmalloc),
    ("maps memory from invalid area", DmaApiError::MapFromInvalidArea),
    ("dma_map_resource called for RAM address", DmaApiError::MapResourceRam),
    ("to sync DMA memory it has not allocated", DmaApiError::SyncNotAllocated),
    ("DMA memory outside allocated range", DmaApiError::SyncOutsideRange),
    ("syncs DMA memory with different direction", DmaApiError::SyncDifferentDirection),
    ("syncs device read-only DMA memory for cpu", DmaApiError::SyncReadOnlyForCpu),
    ("syncs device write-only DMA memory to device", DmaApiError::SyncWriteOnlyToDevice),
    ("syncs DMA sg list with different entry count", DmaApiError::SyncDifferentSgCount),
    ("mapping sg segment longer than device claims", DmaApiError::SgSegmentTooLong),
    ("mapping sg segment across boundary", DmaApiError::SgSegmentAcrossBoundary),
    ("overlapping mappings", DmaApiError::CachelineOverlap),
];

impl DmaApiError {
    pub fn as_str(self) -> &'static str {
        match self {
            DmaApiError::PendingAllocations => "pending-allocations",
            DmaApiError::FreeInvalidAddress => "free-invalid-address",
            DmaApiError::FreeNotAllocated => "free-not-allocated",
            DmaApiError::FreeDifferentSize => "free-different-size",
            DmaApiError::FreeWrongFunction => "free-wrong-function",
            DmaApiError::FreeDifferentCpuAddress => "free-different-cpu-address",
            DmaApiError::FreeDifferentSgCount => "free-different-sg-count",
            DmaApiError::FreeDifferentDirection => "free-different-direction",
            DmaApiError::FreeDifferentAttributes => "free-different-attributes",
            DmaApiError::MapErrorNotChecked => "map-error-not-checked",
            DmaApiError::MapFromStack => "map-from-stack",
            DmaApiError::MapFromKernelText => "map-from-kernel-text",
            DmaApiError::MapFromVmalloc => "map-from-vmalloc",
            DmaApiError::MapFromInvalidArea => "map-from-invalid-area",
            DmaApiError::MapResourceRam => "map-resource-ram",
            DmaApiError::SyncNotAllocated => "sync-not-allocated",
            DmaApiError::SyncOutsideRange => "sync-outside-range",
            DmaApiError::SyncDifferentDirection => "sync-different-direction",
            DmaApiError::SyncReadOnlyForCpu => "sync-read-only-for-cpu",
            DmaApiError::SyncWriteOnlyToDevice => "sync-write-only-to-device",
            DmaApiError::SyncDifferentSgCount => "sync-different-sg-count",
            DmaApiError::SgSegmentTooLong => "sg-segment-too-long",
            DmaApiError::SgSegmentAcrossBoundary => "sg-segment-across-boundary",
            DmaApiError::CachelineOverlap => "cacheline-overlap",
            DmaApiError::Unclassified => "unclassified",
        }
    }
}

/// The class of a console line that is a DMA-API debug error report, or `None` (not one, or
/// one of the informational lines such as `DMA-API: preallocated 65536 debug entries`).
pub fn dma_api_error(line: &str) -> Option<DmaApiError> {
    let rest = body(line).strip_prefix("DMA-API: ")?;
    if let Some((_, class)) = DMA_API_CLASSES.iter().find(|(needle, _)| rest.contains(needle)) {
        return Some(*class);
    }
    rest.contains(": device driver ").then_some(DmaApiError::Unclassified)
}

/// One problem found in the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub kind: Kind,
    /// `"WARNING in __alloc_pages"`, `"PANIC: cmafuzz test fixture: …"`.
    pub title: String,
    /// The function named by the report, where there is one.
    pub function: Option<String>,
    /// Up to 40 lines of the log starting at the report.
    pub excerpt: String,
    /// The error class of a [`Kind::DmaApi`] report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dma_api: Option<DmaApiError>,
}

/// Strips the `[    1.234567] ` printk timestamp.
fn body(line: &str) -> &str {
    let l = line.trim_end_matches('\r');
    if let Some(rest) = l.strip_prefix('[') {
        if let Some(end) = rest.find("] ") {
            if rest[..end].trim().parse::<f64>().is_ok() {
                return &rest[end + 2..];
            }
        }
    }
    l
}

/// `../src/mm/cma.c:446` → `mm/cma.c`: no line numbers or build-dir prefixes in titles.
fn strip_line(loc: &str) -> String {
    let file = loc.split(':').next().unwrap_or(loc);
    file.trim_start_matches("../src/").trim_start_matches("./").to_string()
}

/// `func+0x10/0x20` → `func`.
fn func_of(sym: &str) -> Option<String> {
    let s = sym.trim();
    let name = s.split('+').next()?.trim();
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    ok.then(|| name.to_string())
}

/// The function from an Oops's program counter line: arm32 `PC is at f+0x…`,
/// arm64 `pc : f+0x…/0x…`.
fn oops_function(lines: &[&str]) -> Option<String> {
    lines.iter().take(60).find_map(|l| {
        let b = body(l);
        b.strip_prefix("PC is at ").or_else(|| b.strip_prefix("pc : ")).and_then(func_of)
    })
}

/// Every report in `log`, in order. A panic that follows an Oops or BUG is
/// part of it and not reported again.
pub fn scan(log: &str) -> Vec<Report> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out: Vec<Report> = Vec::new();
    // The line each report of `out` starts at.
    let mut at: Vec<usize> = Vec::new();
    let excerpt = |i: usize| lines[i..(i + 40).min(lines.len())].join("\n");
    for (i, line) in lines.iter().enumerate() {
        let b = body(line);
        let found = if let Some(rest) = b.strip_prefix("Kernel panic - not syncing: ") {
            if out.iter().any(|r| matches!(r.kind, Kind::Oops | Kind::Bug)) {
                None
            } else {
                let msg = rest.trim();
                Some((Kind::Panic, format!("PANIC: {msg}"), None))
            }
        } else if b.starts_with("Internal error: Oops") || b.starts_with("Unable to handle kernel") {
            // The Oops line that follows "Unable to handle…" or "kernel BUG at…" is the same event.
            if out.last().is_some_and(|r| matches!(r.kind, Kind::Oops | Kind::Bug) && r.excerpt.contains(b)) {
                None
            } else {
                let f = oops_function(&lines[i..]);
                let what = if b.contains("NULL pointer") { "null-ptr-deref" } else { "Oops" };
                let title = match &f {
                    Some(f) => format!("OOPS: {what} in {f}"),
                    None => format!("OOPS: {what}"),
                };
                Some((Kind::Oops, title, f))
            }
        } else if let Some(rest) = b.strip_prefix("kernel BUG at ") {
            let f = oops_function(&lines[i..]);
            // By function, not file:line, so the title survives unrelated patches.
            let title = match &f {
                Some(f) => format!("BUG in {f}"),
                None => format!("BUG at {}", strip_line(rest.trim_end_matches('!').trim())),
            };
            Some((Kind::Bug, title, f))
        } else if let Some(rest) = b.strip_prefix("WARNING: ") {
            // "WARNING: CPU: 0 PID: 1 at mm/page_alloc.c:5634 __alloc_pages+0x1d4/0x2b0"
            // or a bare "WARNING: <message>" (lockdep and friends).
            match rest.split_once(" at ") {
                Some((_, loc)) if rest.starts_with("CPU:") => {
                    let mut parts = loc.split_whitespace();
                    let file = parts.next().unwrap_or("?").to_string();
                    let f = parts.next().and_then(func_of);
                    let title = match &f {
                        Some(f) => format!("WARNING in {f}"),
                        None => format!("WARNING at {}", strip_line(&file)),
                    };
                    Some((Kind::Warning, title, f))
                }
                // 7.x: "WARNING: ../src/mm/page_alloc.c:5336 at __alloc_frozen_pages_noprof+0xb1c/0xc74, CPU#0: init/1"
                Some((file, loc)) if loc.contains(", CPU#") => {
                    let f = loc.split(',').next().and_then(func_of);
                    let title = match &f {
                        Some(f) => format!("WARNING in {f}"),
                        None => format!("WARNING at {}", strip_line(file.trim())),
                    };
                    Some((Kind::Warning, title, f))
                }
                _ => Some((Kind::Warning, format!("WARNING: {}", rest.trim()), None)),
            }
        } else if let Some(rest) = b.strip_prefix("BUG: ") {
            // "BUG: Bad page state in process …", "BUG: sleeping function called from invalid context at …"
            let what = rest.split(" in process").next().unwrap_or(rest);
            let what = what.split(" at ").next().unwrap_or(what).trim();
            Some((Kind::Bug, format!("BUG: {what}"), None))
        } else {
            None
        };
        if let Some((kind, title, function)) = found {
            out.push(Report { kind, title, function, excerpt: excerpt(i), dma_api: None });
            at.push(i);
        } else if let Some(class) = dma_api_error(line) {
            // err_printk() is WARN(1, "DMA-API: …"): the message comes just before the WARNING
            // header (__warn_printk) or just after it (warn_slowpath_fmt). That WARNING is this
            // report, found below.
            let e = (i.saturating_sub(DMA_API_WARN_LINES)..i).find(|j| body(lines[*j]).starts_with("WARNING: "));
            let title = format!("DMA-API: {}", class.as_str());
            out.push(Report {
                kind: Kind::DmaApi,
                title,
                function: None,
                excerpt: excerpt(e.unwrap_or(i)),
                dma_api: Some(class),
            });
            at.push(i);
        }
    }
    // Drop the WARNING each DMA-API report was printed with (one event, one report).
    let dma: Vec<usize> = out.iter().zip(&at).filter(|(r, _)| r.kind == Kind::DmaApi).map(|(_, i)| *i).collect();
    let mut line_of = at.iter();
    out.retain(|r| {
        let i = line_of.next().copied().unwrap_or(0);
        r.kind != Kind::Warning || !dma.iter().any(|d| i.abs_diff(*d) <= DMA_API_WARN_LINES)
    });
    out
}

/// How far from its `WARNING:` header a DMA-API message may be (the `cut here` line between).
const DMA_API_WARN_LINES: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_7x_warning_header_names_its_function() {
        let r = scan(
            "[    1.0] WARNING: ../src/mm/page_alloc.c:5336 at __alloc_frozen_pages_noprof+0xb1c/0xc74, CPU#0: init/1\n",
        );
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].title, "WARNING in __alloc_frozen_pages_noprof");
    }

    #[test]
    fn timestamps_are_stripped_but_other_brackets_kept() {
        assert_eq!(body("[    0.124257] WARNING: x"), "WARNING: x");
        assert_eq!(body("[not a time] WARNING"), "[not a time] WARNING");
    }

    #[test]
    fn locations_lose_line_numbers_and_build_prefixes() {
        assert_eq!(strip_line("../src/mm/cma.c:446"), "mm/cma.c");
        assert_eq!(strip_line("mm/page_alloc.c"), "mm/page_alloc.c");
    }

    #[test]
    fn symbol_offsets_are_cut_from_function_names() {
        assert_eq!(func_of("__alloc_pages+0x1d4/0x2b0").as_deref(), Some("__alloc_pages"));
        assert_eq!(func_of("+0x10"), None);
    }

    // The form of Linux 7.2 kernel/dma/debug.c err_printk() (WARN(1, "DMA-API: %s %s: " …)):
    // arm32 prints the WARNING header, then the message (warn_slowpath_fmt); arm64 the
    // message, then the header (__warn_printk + __WARN_FLAGS).
    const DMA_ARM32: &str = "[    5.1] ------------[ cut here ]------------\n\
        [    5.1] WARNING: ../src/kernel/dma/debug.c:1008 at check_unmap+0x3c4/0x8b8, CPU#0: agent/61\n\
        [    5.1] DMA-API: cmafuzz cmafuzz: device driver frees DMA memory with different size [device address=0x000000007e043000] [map size=8192 bytes] [unmap size=4097 bytes]\n\
        [    5.1] CPU: 0 UID: 0 PID: 61 Comm: agent\n";
    const DMA_ARM64: &str = "[    5.1] ------------[ cut here ]------------\n\
        [    5.1] DMA-API: cmafuzz cmafuzz: device driver tries to free DMA memory it has not allocated [device address=0x000000007dc43000] [size=4096 bytes]\n\
        [    5.1] WARNING: ../src/kernel/dma/debug.c:980 at check_unmap+0x10c/0x8f0, CPU#0: agent/61\n";

    #[test]
    fn a_dma_api_report_is_one_report_typed_by_its_error_class() {
        for (log, class) in [(DMA_ARM32, DmaApiError::FreeDifferentSize), (DMA_ARM64, DmaApiError::FreeNotAllocated)] {
            let r = scan(log);
            assert_eq!(r.len(), 1, "the WARNING that carries it is not a second report: {r:?}");
            assert_eq!(r[0].kind, Kind::DmaApi);
            assert_eq!(r[0].dma_api, Some(class));
            assert_eq!(r[0].title, format!("DMA-API: {}", class.as_str()));
            assert!(r[0].excerpt.contains("WARNING: "), "the excerpt starts at the WARNING: {}", r[0].excerpt);
        }
    }

    #[test]
    fn dma_api_information_lines_are_not_reports_and_unknown_errors_are_unclassified() {
        let boot = "[    0.1] DMA-API: preallocated 65536 debug entries\n[    0.1] DMA-API: debugging enabled by kernel config\n";
        assert!(scan(boot).is_empty());
        assert_eq!(
            dma_api_error("DMA-API: cmafuzz cmafuzz: device driver does something new [x=1]"),
            Some(DmaApiError::Unclassified)
        );
        // A WARNING far from any DMA-API line stays a warning.
        let log = format!(
            "[    1.0] WARNING: ../src/mm/cma.c:980 at find_cma_memrange+0x1/0x2, CPU#0: agent/1\n\n\n\n\n{DMA_ARM32}"
        );
        let kinds: Vec<Kind> = scan(&log).iter().map(|r| r.kind).collect();
        assert_eq!(kinds, vec![Kind::Warning, Kind::DmaApi]);
    }

    #[test]
    fn a_clean_boot_log_has_no_report() {
        let log = "[    0.0] Booting Linux\n[    0.2] cma: Reserved 32 MiB at 0x7e000000\n[    0.3] Run /init as init process\n";
        assert!(scan(log).is_empty());
    }
}
