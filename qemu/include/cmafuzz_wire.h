/* SPDX-License-Identifier: GPL-2.0 */
/*
 * cmafuzz wire format, version 7 (2 added CF_OP_PIN and CF_OP_UNPIN; 3 added
 * CF_OP_KMAP, the mapping table in every observation block, the memory-
 * attribute registers in the hello and CF_RUN_OBSERVE_EACH; 4 added the
 * agent's struct cf_agent_hello after the hello, CF_RUN_KCOV and the
 * struct cf_kcov trailer of a RESULT; 5 added CF_FRAME_PROGRESS; 6 reports
 * each area as its ranges with its activation state and available_count,
 * and the boot self-check's cf_hello.ops_ok; 7 added CF_OP_DMA_MAP and
 * cf_result.stale_refs).
 *
 * GENERATED from harness/src/guest/wire_def.rs, do not edit: change the
 * table there and run
 *   CMAFUZZ_BLESS=1 cargo test -p cmafuzz --test wire_header
 * which rewrites this file (the same test fails while it is stale).
 *
 * One definition shared by the in-kernel driver (qemu/driver/cmafuzz.c),
 * the guest agent (qemu/agent/agent.c) and the host (harness/src/guest/).
 * Everything is little-endian, fixed width and explicitly padded, so the
 * layout is the same on arm32, arm64 and x86-64.
 *
 * The host and the agent exchange frames over a virtio-serial port:
 *
 *   struct cf_frame_hdr, then hdr.len bytes of payload (hdr.len <= CF_MAX_FRAME)
 *
 * The agent sends CF_FRAME_HELLO once, then answers each CF_FRAME_RUN with
 * exactly one CF_FRAME_RESULT (or CF_FRAME_ERROR).  The payload of a RUN
 * frame is passed to the driver (ioctl CF_IOC_RUN), which writes the payload
 * of the RESULT frame.  So the agent only moves bytes; the driver parses and
 * bounds every field.  The one exception is KCOV coverage, which only the
 * agent can collect (it is per task): the agent takes CF_RUN_KCOV out of
 * cf_run.flags and appends a struct cf_kcov trailer to the RESULT.
 */
#ifndef CMAFUZZ_WIRE_H
#define CMAFUZZ_WIRE_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define CF_MAGIC		0x5a464d43u	/* "CMFZ" */
#define CF_VERSION		7u

/* Bounds.  The host rejects any frame or count above these. */
#define CF_MAX_FRAME		(4u << 20)	/* payload bytes of one frame */
#define CF_MAX_OPS		4096u		/* ops in one RUN frame */
#define CF_MAX_HANDLES		4096u		/* handle slots in the driver */
#define CF_MAX_PINS		64u		/* pages pinned at once */
#define CF_MAX_AREAS		16u		/* CMA areas reported */
#define CF_MAX_AREA_RANGES	8u		/* ranges of one area (CMA_MAX_RANGES) */
#define CF_NAME_LEN		64u		/* CMA_MAX_NAME */
#define CF_MAX_BITMAP_WORDS	32768u		/* u32 words of one area bitmap */
#define CF_MAX_MAPS		16384u		/* cf_map runs in one observation */
#define CF_MAX_KCOV		65536u		/* distinct PCs in a cf_kcov trailer */

/* Frame kinds. */
#define CF_FRAME_HELLO		1u	/* guest -> host, struct cf_hello */
#define CF_FRAME_RUN		2u	/* host -> guest, struct cf_run + ops */
#define CF_FRAME_RESULT		3u	/* guest -> host, struct cf_result_hdr ... */
#define CF_FRAME_ERROR		4u	/* guest -> host, UTF-8 text, no NUL */
#define CF_FRAME_PROGRESS	5u	/* guest -> host, struct cf_progress, during a RUN */

struct cf_frame_hdr {
	__u32 magic;
	__u16 version;
	__u16 kind;
	__u32 len;
	__u32 seq;		/* RESULT/ERROR echo the seq of their RUN */
};

#define CF_ARCH_ARM32		1u
#define CF_ARCH_ARM32_LPAE	2u
#define CF_ARCH_ARM64		3u

struct cf_hello {
	__u32 version;		/* CF_VERSION */
	__u32 max_frame;	/* CF_MAX_FRAME */
	__u32 max_ops;		/* CF_MAX_OPS */
	__u32 max_handles;	/* CF_MAX_HANDLES */
	__u32 arch;		/* CF_ARCH_* */
	__u32 page_shift;
	__u32 cma_alignment;	/* CONFIG_CMA_ALIGNMENT */
	__u32 pb_order;		/* pageblock_order (a macro in the kernel) */
	__u64 max_low_pfn;	/* first pfn above lowmem (arm32 highmem start) */
	__u64 max_pfn;		/* end of RAM */
	char release[CF_NAME_LEN];	/* utsname()->release, NUL padded */
	/*
	 * The registers that give cf_map.attr its meaning, read from the CPU:
	 * arm32 classic (TEX remap): PRRR | (u64) NMRR << 32;
	 * arm32 LPAE: MAIR0 | (u64) MAIR1 << 32; arm64: MAIR_EL1.
	 */
	__u64 attr_regs;
	__u32 pkmap_slots;	/* LAST_PKMAP on arm32 highmem kernels, else 0 */
	/*
	 * 1 << CF_OP_* for every op kind the driver's boot self-check found
	 * doing what it means on this kernel; the host refuses programs with
	 * any other kind (the console's "cmafuzz: self-check:" lines say why).
	 */
	__u32 ops_ok;
};

/*
 * The HELLO payload is struct cf_hello (from the driver, CF_IOC_HELLO)
 * followed by struct cf_agent_hello: what the agent itself can do.
 */
#define CF_AGENT_KCOV		(1u << 0)	/* CF_RUN_KCOV is honoured */

struct cf_agent_hello {
	__u32 flags;		/* CF_AGENT_* */
	__u32 max_kcov;		/* CF_MAX_KCOV, or 0 without KCOV */
};

/* Op kinds. */
#define CF_OP_CMA_ALLOC		1u	/* area, handle, a = count, b = align */
#define CF_OP_CMA_RELEASE	2u	/* handle */
#define CF_OP_CMA_RELEASE_RAW	3u	/* area, a = (s64) offset, b = count */
#define CF_OP_DMA_ALLOC		4u	/* handle, flags = attrs | gfp, a = size */
#define CF_OP_DMA_FREE		5u	/* handle */
#define CF_OP_OBSERVE		6u	/* emit one observation block */
#define CF_OP_RESET		7u	/* free every handle, unpin every page */
#define CF_OP_PIN		8u	/* area, a = (s64) offset: make a page busy */
#define CF_OP_UNPIN		9u	/* area, a = (s64) offset */
#define CF_OP_KMAP		10u	/* area, a = (s64) offset: kmap+kunmap a free page */
#define CF_OP_DMA_MAP		11u	/* handle, a = CF_DIR_*: streaming map+sync+unmap */

/* cf_op.flags for CF_OP_DMA_ALLOC */
#define CF_ATTR_WC		(1u << 0)	/* DMA_ATTR_WRITE_COMBINE */
#define CF_ATTR_NOKMAP		(1u << 1)	/* DMA_ATTR_NO_KERNEL_MAPPING */
#define CF_GFP_ATOMIC		(1u << 8)	/* GFP_ATOMIC instead of GFP_KERNEL (either with __GFP_NOWARN) */
#define CF_DMA_FLAGS_MASK	(CF_ATTR_WC | CF_ATTR_NOKMAP | CF_GFP_ATOMIC)

/* The largest op arguments the driver takes; an op above them is CF_ST_BADOP. */
#define CF_MAX_DMA_SIZE		(1u << 30)	/* CF_OP_DMA_ALLOC a (bytes) */
#define CF_MAX_CMA_ALIGN	31u		/* CF_OP_CMA_ALLOC b: cma_alloc() shifts by it */

struct cf_op {
	__u32 kind;
	__u32 area;		/* index into the kernel's cma_areas[] */
	__u32 handle;		/* slot defined (alloc) or used (free) */
	__u32 flags;
	__u64 a;
	__u64 b;
};

/* cf_run.flags */
#define CF_RUN_OBSERVE_EACH	(1u << 0)	/* an observation block after every op */
#define CF_RUN_FLAGS_MASK	CF_RUN_OBSERVE_EACH	/* what the driver accepts */
/*
 * For the agent, never seen by the driver (not in CF_RUN_FLAGS_MASK): collect
 * KCOV_TRACE_PC coverage of the agent's task around CF_IOC_RUN and append a
 * struct cf_kcov trailer to the RESULT.  An agent without CF_AGENT_KCOV in
 * its hello drops the bit and appends nothing.
 */
#define CF_RUN_KCOV		(1u << 31)

struct cf_run {
	__u32 nops;		/* <= CF_MAX_OPS */
	__u32 flags;		/* CF_RUN_* */
	/* struct cf_op ops[nops]; */
};

/*
 * CF_OP_KMAP (arm32 kernels with highmem): the free highmem page at
 * base_pfn + offset is taken like CF_OP_PIN takes it, kmap()ed, written,
 * kunmap()ed and given back: what any earlier owner of the page may have
 * done.  Its PKMAP slot stays until a pkmap flush.  Checked in this order:
 * outside the area, a set bitmap bit or a pinned page is REFUSED (on every
 * kernel, like CF_OP_PIN); then a page below the highmem start, or any page
 * on a kernel without highmem, is a NOOP.  A page alloc_contig_range()
 * cannot take is FAILED.  Answers pfn and pages = 1 like CF_OP_PIN.
 */

/*
 * CF_OP_PIN takes the free page at base_pfn + offset out of the buddy
 * allocator with alloc_contig_range(pfn, pfn + 1, MIGRATE_CMA, GFP_KERNEL)
 * (ACR_FLAGS_CMA since v6.17)
 * and holds it; the CMA bitmap does not change, so a cma_alloc() whose
 * window covers the page meets -EBUSY and retries.  Refused (kernel not
 * called) outside the area, on a page whose bitmap bit is set, on a pinned
 * page and beyond CF_MAX_PINS.  CF_OP_UNPIN gives a pinned page back with
 * free_contig_range(pfn, 1); any other page is a NOOP.  Both answer
 * pfn = base_pfn + offset (0 if that is negative) and pages = 1.
 */

/*
 * CF_OP_RESET also clears every unused PKMAP slot (kmap_flush_unused()), so
 * stale slots never leak from one program into the next.
 */

/*
 * CF_OP_DMA_MAP maps the pages a live handle holds (every page of a
 * dma_alloc buffer, every still-held run of a cma_alloc) for streaming DMA
 * on the driver's device: dma_map_page() of the first run, then
 * dma_map_sgtable() of all runs, each synced for the cpu and for the
 * device and unmapped again, in direction a.  Nothing stays changed.
 * Answers pfn = the first mapped page and pages = pages mapped.  A dead
 * handle or one holding no page is a NOOP; pages above the device's
 * 32-bit DMA mask (a bounce buffer would be mapped instead) are REFUSED;
 * a mapping error is FAILED.
 */
#define CF_DIR_BIDIRECTIONAL	0u	/* DMA_BIDIRECTIONAL */
#define CF_DIR_TO_DEVICE	1u	/* DMA_TO_DEVICE */
#define CF_DIR_FROM_DEVICE	2u	/* DMA_FROM_DEVICE */

/* cf_result.status */
#define CF_ST_OK		0u	/* the kernel call succeeded */
#define CF_ST_FAILED		1u	/* the kernel call returned NULL/false/error */
#define CF_ST_NOOP		2u	/* dead handle, unpinned page: not called */
#define CF_ST_REFUSED		3u	/* unsafe release or pin: kernel not called */
#define CF_ST_BADOP		4u	/* malformed op (bad kind, area, handle) */

/* cf_result.aux for a successful CF_OP_DMA_ALLOC: what cpu_addr is */
#define CF_CPU_LINEAR		1u	/* lowmem linear-map address */
#define CF_CPU_VMALLOC		2u	/* vmalloc/remap address */
#define CF_CPU_COOKIE		3u	/* DMA_ATTR_NO_KERNEL_MAPPING cookie */
#define CF_CPU_OTHER		4u

struct cf_result {
	__u32 status;		/* CF_ST_* */
	__u32 kind;		/* echo of cf_op.kind */
	__u64 pfn;		/* first pfn of an allocation or pin, else 0 */
	__u64 pages;		/* pages of an allocation or pin, else 0 */
	__u64 aux;		/* CF_CPU_* for DMA allocations, else 0 */
	/*
	 * CF_OP_CMA_RELEASE / CF_OP_CMA_RELEASE_RAW that cma_release() accepted: pages of
	 * the released range whose refcount was not 0 right after it returned (a
	 * release must drop the reference cma_alloc() gave each page); else 0.
	 */
	__u64 stale_refs;
};

struct cf_result_hdr {
	__u32 nresults;		/* == nops of the RUN */
	__u32 nobs;		/* observation blocks that follow the results */
	/* struct cf_result results[nresults]; */
	/* nobs x (struct cf_obs_hdr, nareas x (struct cf_area + ranges),
	 *         nmaps x struct cf_map) */
};

#define CF_PROGRESS_MS		1000u	/* the agent's progress period during a RUN */
struct cf_progress {
	__u64 ops_done;		/* ops of this RUN completed so far (CF_IOC_PROGRESS) */
};

/* cf_obs_hdr.flags */
#define CF_OBS_MAPS_TRUNCATED	(1u << 0)	/* more than CF_MAX_MAPS runs */

struct cf_obs_hdr {
	/*
	 * index of the OBSERVE op (or, with CF_RUN_OBSERVE_EACH, of the
	 * op just run)
	 */
	__u32 op_index;
	__u32 nareas;		/* <= CF_MAX_AREAS */
	__u64 cma_free_pages;	/* NR_FREE_CMA_PAGES */
	__u32 nmaps;		/* <= CF_MAX_MAPS */
	__u32 flags;		/* CF_OBS_* */
	/*
	 * arm32 highmem: the PKMAP slot the kernel assigned last
	 * (mm/highmem.c last_pkmap_nr), as the driver knows it: learnt by a
	 * probe kmap at CF_OP_RESET and from the address every CF_OP_KMAP gets;
	 * CF_PKMAP_UNKNOWN before the first reset and without highmem.
	 */
	__u32 pkmap_last;
	__u32 reserved;		/* 0 */
};

#define CF_PKMAP_UNKNOWN	0xffffffffu

/*
 * The optional last part of a RESULT payload, after the observation blocks,
 * present when the RUN had CF_RUN_KCOV and the agent has CF_AGENT_KCOV: the
 * distinct kernel PCs the agent's task executed during CF_IOC_RUN, in order
 * of first appearance, each widened to 64 bits.  CF_KCOV_TRUNCATED: some
 * were dropped (the kernel's trace buffer filled up, more than CF_MAX_KCOV
 * distinct PCs, or the frame would exceed CF_MAX_FRAME).
 */
#define CF_KCOV_MAGIC		0x564f434bu	/* "KCOV" */
#define CF_KCOV_TRUNCATED	(1u << 0)

struct cf_kcov {
	__u32 magic;		/* CF_KCOV_MAGIC */
	__u32 npcs;		/* <= CF_MAX_KCOV */
	__u32 flags;		/* CF_KCOV_* */
	__u32 reserved;		/* 0 */
	/* __u64 pcs[npcs]; */
};

/*
 * An area is reported as its ranges (7.x struct cma_memrange; a 6.x area is
 * one range).  Op offsets (CF_OP_CMA_RELEASE_RAW, PIN, UNPIN, KMAP) count the
 * area's pages over its ranges in order: offset o is page o - (pages of the
 * ranges before) of the range that holds it; below 0 counts back from the
 * first range's base, at or past the count on from the last range's base.  A
 * raw release that runs past the end of its range is REFUSED.
 */
/* cf_area.flags */
#define CF_AREA_ACTIVATED	(1u << 0)	/* bitmaps exist (7.x CMA_ACTIVATED) */
#define CF_AREA_AVAILABLE	(1u << 1)	/* the kernel keeps available_count (7.x) */

struct cf_area {
	char name[CF_NAME_LEN];	/* NUL padded, may lack the NUL if 64 long */
	__u64 count;		/* pages of all ranges; 0 = area disabled */
	__u64 available;	/* available_count if CF_AREA_AVAILABLE, else 0 */
	__u32 order_per_bit;
	__u32 nranges;		/* <= CF_MAX_AREA_RANGES */
	__u32 flags;		/* CF_AREA_* */
	__u32 reserved;		/* 0 */
	/* nranges x (struct cf_memrange + words) */
};

struct cf_memrange {
	__u64 base_pfn;
	__u64 count;		/* pages of this range */
	/*
	 * u32 bitmap words that follow: ceil((count >> order_per_bit) / 32)
	 * if CF_AREA_ACTIVATED, else 0
	 */
	__u32 nwords;
	__u32 reserved;		/* 0 */
	/* __u32 words[nwords]; bit i of the range = bit i%32 of words[i/32] */
};

/*
 * The mapping table: every present kernel page-table leaf (PTE, section,
 * block) that maps a pfn of interest, found by walking init_mm's page
 * tables (the hardware descriptors, not software shadows) over the linear
 * map, the vmalloc area, the PKMAP area and the fixmap.  The pfns of interest
 * are every page of every CMA area and every page of every live buffer the
 * driver holds.  Consecutive pages with the same kind, level and attr whose
 * va and pfn both advance by one page are merged into one run; runs are
 * sorted by (kind, va).
 */
#define CF_MAP_LIN		1u	/* linear map of lowmem (page_address) */
#define CF_MAP_VMAP		2u	/* [VMALLOC_START, VMALLOC_END) */
#define CF_MAP_PKMAP		3u	/* arm32 persistent kmap slots */
#define CF_MAP_FIXMAP		4u	/* fixmap, incl. kmap_atomic slots */

#define CF_LVL_PTE		1u	/* 4 KiB page */
#define CF_LVL_SECTION		2u	/* arm32 1 MiB section / LPAE 2 MiB block */
#define CF_LVL_PMD		3u	/* arm64 2 MiB block */
#define CF_LVL_PUD		4u	/* arm64 1 GiB block */

struct cf_map {
	__u64 va;		/* virtual address of the first page */
	__u64 pfn;		/* first pfn */
	__u32 pages;		/* run length in pages, >= 1 */
	__u8 kind;		/* CF_MAP_* */
	__u8 level;		/* CF_LVL_* */
	/*
	 * The memory-type index from the hardware descriptor: arm32 classic
	 * n = TEX[0]:C:B (decoded with PRRR/NMRR), LPAE and arm64 AttrIndx
	 * (decoded with MAIR).  cf_hello.attr_regs holds those registers.
	 */
	__u8 attr;
	__u8 reserved;		/* 0 */
};

/* The driver's ioctl, on /dev/cmafuzz (misc device). */
struct cf_ioc_run {
	__u64 in;		/* user pointer: struct cf_run + ops */
	__u64 in_len;
	__u64 out;		/* user pointer: result payload buffer */
	__u64 out_cap;
	__u64 out_len;		/* written by the driver */
};

struct cf_ioc_hello {
	struct cf_hello hello;
};

#define CF_IOC_MAGIC		'C'
#define CF_IOC_RUN		_IOWR(CF_IOC_MAGIC, 1, struct cf_ioc_run)
#define CF_IOC_HELLO		_IOR(CF_IOC_MAGIC, 2, struct cf_ioc_hello)
#define CF_IOC_PROGRESS		_IOR(CF_IOC_MAGIC, 3, __u64)

#endif /* CMAFUZZ_WIRE_H */
