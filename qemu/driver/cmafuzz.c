// SPDX-License-Identifier: GPL-2.0
/*
 * cmafuzz: in-kernel half of a differential tester for the CMA allocator
 * and ARM coherent DMA.
 *
 * Built in (obj-y) from mm/, because none of cma_alloc(), cma_release(),
 * cma_areas[] is exported to modules.  The harness copies this file to
 * mm/cmafuzz.c and cmafuzz_wire.h next to it.
 *
 * /dev/cmafuzz takes a RUN payload (struct cf_run + ops, see cmafuzz_wire.h),
 * executes the ops in order against the real kernel and returns one result
 * per op plus one observation block per OBSERVE op (or per op, with
 * CF_RUN_OBSERVE_EACH): every CMA bitmap and every kernel page-table leaf
 * that maps a CMA page or a page of a live buffer.  Every field of every op
 * is range checked; an op that could corrupt the kernel under test (freeing
 * pages nobody holds) is refused without calling the kernel.
 *
 * Allocations live in a global handle table that survives close(), pinned
 * pages in a small global table; RESET frees and unpins them all and empties
 * the unused PKMAP slots.
 */

#define pr_fmt(fmt) "cmafuzz: " fmt

#include <linux/bitmap.h>
#include <linux/cma.h>
#include <linux/dma-direct.h>
#include <linux/dma-mapping.h>
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/highmem.h>
#include <linux/init.h>
#include <linux/memblock.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/pageblock-flags.h>
#include <linux/pgtable.h>
#include <linux/platform_device.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/utsname.h>
#include <linux/version.h>
#include <linux/vmalloc.h>
#include <linux/vmstat.h>
#include <linux/workqueue.h>

#include <asm/fixmap.h>
#ifdef CONFIG_ARM64
#include <asm/sysreg.h>
#endif

#include "cma.h"

#include "cmafuzz_wire.h"

#ifndef CONFIG_CMA
#error "cmafuzz needs CONFIG_CMA"
#endif
#ifdef __BIG_ENDIAN
#error "the cmafuzz wire format is little-endian"
#endif
#if !defined(CONFIG_ARM) && !defined(CONFIG_ARM64)
#error "cmafuzz walks ARM page tables"
#endif

/*
 * ---- Kernel version compat: the one place that knows kernel versions ----
 *
 * v6.15 ("mm, cma: support multiple contiguous ranges, if requested",
 * Frank van der Linden): struct cma keeps its pages in ranges[nranges]
 * (struct cma_memrange, each with its own base_pfn, count and bitmap), gains
 * available_count and flags; a bitmap may be touched only once the area has
 * CMA_ACTIVATED.  Before: one base_pfn/count/bitmap per area.
 *
 * v6.17 ("mm/page_isolation: remove migratetype parameter from more
 * functions", Zi Yan): alloc_contig_range() takes acr_flags_t, and CMA pages
 * need ACR_FLAGS_CMA.  MIGRATE_CMA still compiles there and means "not for
 * CMA": every CMA pageblock is then refused with -EBUSY.
 *
 * Both versions come from the series' mailing-list dates, not from a 6.15-6.17
 * tree; a wrong gate fails the build (the fields or the flag are missing),
 * it never builds a driver that does something else.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 15, 0)
#define CF_CMA_MAX_RANGES	CMA_MAX_RANGES
#else
#define CF_CMA_MAX_RANGES	1
#endif

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 17, 0) && \
	!defined(CF_TEST_MIGRATETYPE_ON_ACR)
#define CF_ACR_CMA		ACR_FLAGS_CMA
#else
/*
 * CF_TEST_MIGRATETYPE_ON_ACR (set only by harness/tests/data/
 * selfcheck-migrate-cma.patch) rebuilds the pre-6.17 call on a newer kernel:
 * the mistake the boot self-check must catch.
 */
#if defined(ACR_FLAGS_CMA) && !defined(CF_TEST_MIGRATETYPE_ON_ACR)
#error "acr_flags_t before v6.17: move the CF_ACR_CMA gate"
#endif
#define CF_ACR_CMA		MIGRATE_CMA
#endif

/* One range of an area as the driver reads it; bitmap NULL unless live. */
struct cf_cmr {
	unsigned long base_pfn;
	unsigned long count;
	unsigned long *bitmap;
};

/* Has the area been activated (its bitmaps exist)? */
static bool cf_cma_live(const struct cma *cma)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 15, 0)
	return cma->count && test_bit(CMA_ACTIVATED, &cma->flags);
#else
	return cma->count && cma->bitmap;
#endif
}

static u32 cf_cma_nranges(const struct cma *cma)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 15, 0)
	return clamp_t(int, cma->nranges, 0, CMA_MAX_RANGES);
#else
	return 1;
#endif
}

static struct cf_cmr cf_cma_range(const struct cma *cma, u32 r)
{
	struct cf_cmr c;

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 15, 0)
	c.base_pfn = cma->ranges[r].base_pfn;
	c.count = cma->ranges[r].count;
	c.bitmap = cf_cma_live(cma) ? cma->ranges[r].bitmap : NULL;
#else
	c.base_pfn = cma->base_pfn;
	c.count = cma->count;
	c.bitmap = cf_cma_live(cma) ? cma->bitmap : NULL;
#endif
	return c;
}

/* available_count, where the kernel keeps one. */
static bool cf_cma_available(const struct cma *cma, unsigned long *avail)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 15, 0)
	*avail = cma->available_count;
	return true;
#else
	*avail = 0;
	return false;
#endif
}

/*
 * v6.18 ("dma-mapping: migrate to physical address-based API", Leon
 * Romanovsky; DMA_ATTR_MMIO came with it): dma_map_page_attrs() wraps
 * dma_map_phys(), whose DMA-API debug entries are dma_debug_phy, while
 * debug_dma_sync_single_for_cpu()/_for_device() still look them up as
 * dma_debug_single.  With no perfect fit, kernel/dma/debug.c
 * __hash_bucket_find() returns its best fit only if exactly one entry holds
 * the address, so a dma_map_page() of a dma_alloc buffer (whose coherent
 * entry holds it too) is reported as a sync of memory never mapped
 * (KNOWN-ISSUES.md KI-3).  There, a dma_alloc buffer is streamed through
 * dma_map_sgtable() only, whose sync looks up dma_debug_sg entries: the same
 * pages, directions and syncs, found by a perfect fit.
 */
#if defined(CONFIG_DMA_API_DEBUG) && defined(DMA_ATTR_MMIO)
#define CF_DEBUG_SYNC_SINGLE_LOOKS_UP_SINGLE	0
#else
#define CF_DEBUG_SYNC_SINGLE_LOOKS_UP_SINGLE	1
#endif

/* ---- end of the compat section ---- */

#ifdef CONFIG_CMA_ALIGNMENT
#define CF_CMA_ALIGNMENT	CONFIG_CMA_ALIGNMENT
#else
#define CF_CMA_ALIGNMENT	0
#endif

enum cf_hkind {
	CF_H_NONE = 0,
	CF_H_CMA,
	CF_H_DMA,
};

struct cf_handle {
	enum cf_hkind kind;
	u32 area;		/* cma: index into cma_areas[] */
	unsigned long pfn;	/* first pfn of the allocation */
	unsigned long pages;	/* pages of the allocation */
	/* cma: pages still held (a raw release can punch holes) */
	unsigned long *held;
	/* dma: what dma_free_attrs() needs back */
	void *cpu;
	dma_addr_t dma;
	size_t size;		/* requested size, not rounded */
	unsigned long attrs;
	gfp_t gfp;
};

/* A pfn range [start, end) whose mappings the observation reports. */
struct cf_range {
	unsigned long start;
	unsigned long end;
};

#define CF_MAX_RANGES		(CF_MAX_HANDLES + MAX_CMA_AREAS * CF_CMA_MAX_RANGES)

static DEFINE_MUTEX(cf_lock);
static struct cf_handle *cf_handles;
static struct platform_device *cf_pdev;
/* Pages taken by CF_OP_PIN, unordered; cf_pins[0..cf_npins) are live. */
static unsigned long cf_pins[CF_MAX_PINS];
static u32 cf_npins;
/* Scratch for one observation's pfns of interest, under cf_lock. */
static struct cf_range *cf_ranges;
/* The RESULT payload being built, CF_MAX_FRAME bytes, under cf_lock. */
static u8 *cf_out;
/* mm/highmem.c last_pkmap_nr as far as we know it (cmafuzz_wire.h). */
static u32 cf_pkmap_last = CF_PKMAP_UNKNOWN;
/* Op kinds whose boot self-check passed (cf_selfcheck()). */
static u32 cf_ops_ok;

/*
 * The generic atomic pools (arm64) refill themselves from a work item that
 * may take CMA pages.  Wait for it so that the CMA bitmap after an atomic
 * op does not depend on timing.
 */
static void cf_flush_pool_work(gfp_t gfp)
{
#ifdef CONFIG_DMA_COHERENT_POOL
	if (gfpflags_allow_blocking(gfp))
		return;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
	/*
	 * schedule_work() queues on system_percpu_wq there; the
	 * flush_workqueue() macro would warn at build time about flushing a
	 * system-wide queue.
	 */
	__flush_workqueue(system_percpu_wq);
#else
	flush_scheduled_work();
#endif
#endif
}

static u32 cf_nareas(void)
{
	return min_t(u32, cma_area_count, CF_MAX_AREAS);
}

static u32 cf_area_nranges(const struct cma *cma)
{
	return min_t(u32, cf_cma_nranges(cma), CF_MAX_AREA_RANGES);
}

/* u32 words of one range's bitmap on the wire; 0 unless the area is live. */
static u32 cf_range_nwords(const struct cma *cma, const struct cf_cmr *c)
{
	unsigned long bits;

	if (!c->bitmap)
		return 0;
	bits = c->count >> cma->order_per_bit;
	return min_t(unsigned long, DIV_ROUND_UP(bits, 32), CF_MAX_BITMAP_WORDS);
}

/*
 * The pfn of page @off of @cma, its ranges' pages counted in order: an
 * offset below 0 counts back from the first range's base, one at or past
 * the area's count on from the last range's base.  Returns whether @off is
 * inside the area; then *@left is the pages from there to the end of its
 * range.  *@spfn is negative if the pfn would be.
 */
static bool cf_area_pfn(const struct cma *cma, s64 off, s64 *spfn,
			unsigned long *left)
{
	u32 n = cf_cma_nranges(cma), r = 0;
	struct cf_cmr c = { };
	s64 rel = off;

	*left = 0;
	if (n)
		c = cf_cma_range(cma, 0);
	while (cma->count && rel >= 0 && (u64)rel >= c.count && r + 1 < n) {
		rel -= c.count;
		c = cf_cma_range(cma, ++r);
	}
	if (check_add_overflow((s64)c.base_pfn, rel, spfn))
		*spfn = -1;
	if (!n || !cma->count || rel < 0 || (u64)rel >= c.count)
		return false;
	*left = c.count - rel;
	return true;
}

/*
 * Bytes of one observation block without its mapping table; the area table
 * is fixed after boot.
 */
static size_t cf_obs_fixed_size(void)
{
	size_t sz = sizeof(struct cf_obs_hdr);
	u32 i;

	u32 r;

	for (i = 0; i < cf_nareas(); i++) {
		const struct cma *cma = &cma_areas[i];

		sz += sizeof(struct cf_area);
		for (r = 0; r < cf_area_nranges(cma); r++) {
			struct cf_cmr c = cf_cma_range(cma, r);

			sz += sizeof(struct cf_memrange) +
			      (size_t)cf_range_nwords(cma, &c) * sizeof(u32);
		}
	}
	return sz;
}

static void cf_handle_clear(struct cf_handle *h)
{
	bitmap_free(h->held);
	memset(h, 0, sizeof(*h));
}

/*
 * Pages of [pfn, pfn + count) still referenced right after cma_release()
 * returned true (cf_result.stale_refs). A release must drop the reference
 * cma_alloc() gave each page: 6.x by __free_page(), 7.x by
 * put_page_testzero() before freeing the range frozen. A page left at
 * refcount 1 went back to the buddy allocator referenced (nothing checks
 * without CONFIG_DEBUG_VM); the model predicts 0.
 */
static unsigned long cf_stale_refs(unsigned long pfn, unsigned long count)
{
	unsigned long i, stale = 0;

	for (i = 0; i < count; i++)
		if (page_ref_count(pfn_to_page(pfn + i)) != 0)
			stale++;
	return stale;
}

/*
 * Release every maximal run of still-held pages; returns pages released.
 * @stale (may be NULL) counts the released pages left referenced.
 */
static unsigned long cf_release_held(struct cf_handle *h, bool *all_ok,
				     unsigned long *stale)
{
	struct cma *cma = &cma_areas[h->area];
	unsigned long n = h->pages, start, end, done = 0;

	*all_ok = true;
	for (start = find_first_bit(h->held, n); start < n;
	     start = find_next_bit(h->held, n, end)) {
		end = find_next_zero_bit(h->held, n, start);
		if (!cma_release(cma, pfn_to_page(h->pfn + start), end - start))
			*all_ok = false;
		else if (stale)
			*stale += cf_stale_refs(h->pfn + start, end - start);
		done += end - start;
	}
	return done;
}

static void cf_dma_free(struct cf_handle *h)
{
	dma_free_attrs(&cf_pdev->dev, h->size, h->cpu, h->dma, h->attrs);
	cf_flush_pool_work(h->gfp);
}

static void cf_op_cma_alloc(const struct cf_op *op, struct cf_result *r)
{
	struct cf_handle *h = &cf_handles[op->handle];
	struct cma *cma = &cma_areas[op->area];
	unsigned long count, *held = NULL;
	struct page *page;

	if (h->kind != CF_H_NONE || op->a > ULONG_MAX ||
	    op->b > CF_MAX_CMA_ALIGN) {
		r->status = CF_ST_BADOP;
		return;
	}
	count = op->a;
	/* cma_bitmap_pages_to_bits() would wrap to 0 for these */
	if (count > ULONG_MAX - ((1UL << cma->order_per_bit) - 1)) {
		r->status = CF_ST_BADOP;
		return;
	}

	page = cma_alloc(cma, count, op->b, true);
	if (!page) {
		r->status = CF_ST_FAILED;
		return;
	}
	r->status = CF_ST_OK;
	r->pfn = page_to_pfn(page);
	r->pages = count;

	if (count <= UINT_MAX)
		held = bitmap_zalloc(count, GFP_KERNEL);
	if (!held) {
		/* Only on OOM or a kernel that granted more than the area. */
		pr_err("cannot track %lu pages at pfn %lu, leaking them\n",
		       count, page_to_pfn(page));
		return;
	}
	bitmap_set(held, 0, count);
	h->kind = CF_H_CMA;
	h->area = op->area;
	h->pfn = page_to_pfn(page);
	h->pages = count;
	h->held = held;
}

static void cf_op_cma_release(const struct cf_op *op, struct cf_result *r)
{
	struct cf_handle *h = &cf_handles[op->handle];
	unsigned long stale = 0;
	bool ok;

	if (h->kind != CF_H_CMA) {
		r->status = CF_ST_NOOP;
		return;
	}
	r->pfn = h->pfn;
	r->pages = cf_release_held(h, &ok, &stale);
	r->stale_refs = stale;
	r->status = ok ? CF_ST_OK : CF_ST_FAILED;
	cf_handle_clear(h);
}

/* Is every page of [pfn, pfn + count) held by a live cma handle of @area? */
static bool cf_all_held(u32 area, unsigned long pfn, unsigned long count)
{
	unsigned long *cover, lo, hi, i;
	bool full;
	u32 k;

	if (count > UINT_MAX)
		return false;
	cover = bitmap_zalloc(count, GFP_KERNEL);
	if (!cover) {
		pr_warn("no memory to check a raw release, refusing it\n");
		return false;
	}
	for (k = 0; k < CF_MAX_HANDLES; k++) {
		struct cf_handle *h = &cf_handles[k];

		if (h->kind != CF_H_CMA || h->area != area)
			continue;
		lo = max(pfn, h->pfn);
		hi = min(pfn + count, h->pfn + h->pages);
		if (lo >= hi)
			continue;
		for (i = find_next_bit(h->held, hi - h->pfn, lo - h->pfn);
		     i < hi - h->pfn;
		     i = find_next_bit(h->held, hi - h->pfn, i + 1))
			__set_bit(h->pfn + i - pfn, cover);
	}
	full = bitmap_full(cover, count);
	bitmap_free(cover);
	return full;
}

/* Forget [pfn, pfn + count) in every handle of @area; empty handles die. */
static void cf_drop_held(u32 area, unsigned long pfn, unsigned long count)
{
	unsigned long lo, hi;
	u32 k;

	for (k = 0; k < CF_MAX_HANDLES; k++) {
		struct cf_handle *h = &cf_handles[k];

		if (h->kind != CF_H_CMA || h->area != area)
			continue;
		lo = max(pfn, h->pfn);
		hi = min(pfn + count, h->pfn + h->pages);
		if (lo >= hi)
			continue;
		bitmap_clear(h->held, lo - h->pfn, hi - lo);
		if (bitmap_empty(h->held, h->pages))
			cf_handle_clear(h);
	}
}

static void cf_op_cma_release_raw(const struct cf_op *op, struct cf_result *r)
{
	struct cma *cma = &cma_areas[op->area];
	s64 off = (s64)op->a, spfn;
	unsigned long count, pfn, left;
	struct page *page = NULL;
	bool inside, bad_pfn, ok;

	if (op->b > ULONG_MAX) {
		r->status = CF_ST_BADOP;
		return;
	}
	count = op->b;
	inside = cf_area_pfn(cma, off, &spfn, &left);
	bad_pfn = spfn < 0 || (u64)spfn > ULONG_MAX;
	pfn = bad_pfn ? 0 : (unsigned long)spfn;
	r->pfn = spfn < 0 ? 0 : spfn;
	r->pages = count;

	if (!inside) {
		/* Outside the area: the kernel must refuse it by itself. */
		if (!bad_pfn && pfn_valid(pfn))
			page = pfn_to_page(pfn);
		ok = cma_release(cma, page, count);
		if (ok)
			pr_err("cma_release accepted pfn %lu outside %s\n",
			       pfn, cma->name);
		r->status = ok ? CF_ST_OK : CF_ST_FAILED;
		return;
	}

	page = pfn_to_page(pfn);
	if (count == 0) {
		ok = cma_release(cma, page, 0);
		r->status = ok ? CF_ST_OK : CF_ST_FAILED;
		return;
	}
	/* past the end of its range: 6.x would free pages beyond the area */
	if (count > left || !cf_all_held(op->area, pfn, count)) {
		r->status = CF_ST_REFUSED;
		return;
	}
	ok = cma_release(cma, page, count);
	r->status = ok ? CF_ST_OK : CF_ST_FAILED;
	if (ok)
		r->stale_refs = cf_stale_refs(pfn, count);
	cf_drop_held(op->area, pfn, count);
}

static void cf_op_dma_alloc(const struct cf_op *op, struct cf_result *r)
{
	struct cf_handle *h = &cf_handles[op->handle];
	struct device *dev = &cf_pdev->dev;
	unsigned long attrs = 0;
	dma_addr_t dma;
	size_t size;
	gfp_t gfp;
	void *cpu;

	if (h->kind != CF_H_NONE || (op->flags & ~CF_DMA_FLAGS_MASK) ||
	    op->a > CF_MAX_DMA_SIZE) {
		r->status = CF_ST_BADOP;
		return;
	}
	size = op->a;
	if (op->flags & CF_ATTR_WC)
		attrs |= DMA_ATTR_WRITE_COMBINE;
	if (op->flags & CF_ATTR_NOKMAP)
		attrs |= DMA_ATTR_NO_KERNEL_MAPPING;
	/*
	 * __GFP_NOWARN: a failed allocation is an outcome the model predicts,
	 * not a console report.  It changes no path (dma-direct, arm32
	 * __dma_alloc and cma_alloc() only pass it on as no_warn), and each
	 * warning it spares is a backtrace that costs the guest about 3 ms
	 * under TCG (arm64's "DMA pool exhausted" WARN, the page allocator's
	 * order WARN_ON_ONCE_GFP, cma_alloc()'s failure report).
	 */
	gfp = ((op->flags & CF_GFP_ATOMIC) ? GFP_ATOMIC : GFP_KERNEL) |
	      __GFP_NOWARN;

	cpu = dma_alloc_attrs(dev, size, &dma, gfp, attrs);
	cf_flush_pool_work(gfp);
	if (!cpu) {
		r->status = CF_ST_FAILED;
		return;
	}
	r->status = CF_ST_OK;
	r->pfn = PHYS_PFN(dma_to_phys(dev, dma));
	r->pages = PAGE_ALIGN(size) >> PAGE_SHIFT;
	if (attrs & DMA_ATTR_NO_KERNEL_MAPPING)
		r->aux = CF_CPU_COOKIE;
	else if (is_vmalloc_addr(cpu))
		r->aux = CF_CPU_VMALLOC;
	else if (virt_addr_valid(cpu))
		r->aux = CF_CPU_LINEAR;
	else
		r->aux = CF_CPU_OTHER;

	h->kind = CF_H_DMA;
	h->pfn = r->pfn;
	h->pages = r->pages;
	h->cpu = cpu;
	h->dma = dma;
	h->size = size;
	h->attrs = attrs;
	h->gfp = gfp;
}

static void cf_op_dma_free(const struct cf_op *op, struct cf_result *r)
{
	struct cf_handle *h = &cf_handles[op->handle];

	if (h->kind != CF_H_DMA) {
		r->status = CF_ST_NOOP;
		return;
	}
	r->pfn = h->pfn;
	r->pages = h->pages;
	cf_dma_free(h);
	cf_handle_clear(h);
	r->status = CF_ST_OK;
}

/*
 * CF_OP_DMA_MAP: streaming DMA on the pages a live handle holds, as a
 * driver does with a buffer it hands to a device.  A cma handle's
 * still-held runs (a raw release can punch holes) are one sg entry each; a
 * dma handle is one run.  Nothing stays mapped and no state changes, so the
 * op exercises dma_map_*, dma_sync_* and the architecture's cache
 * maintenance only.
 */

/* Runs of @h's held pages; *first and *end bound them (page offsets). */
static u32 cf_held_runs(const struct cf_handle *h, unsigned long *first,
			unsigned long *end, unsigned long *pages)
{
	unsigned long n = h->pages, start, stop;
	u32 runs = 0;

	*first = 0;
	*end = 0;
	*pages = 0;
	if (h->kind == CF_H_DMA) {
		*end = n;
		*pages = n;
		return n ? 1 : 0;
	}
	for (start = find_first_bit(h->held, n); start < n;
	     start = find_next_bit(h->held, n, stop)) {
		stop = find_next_zero_bit(h->held, n, start);
		if (!runs)
			*first = start;
		*end = stop;
		*pages += stop - start;
		runs++;
	}
	return runs;
}

/*
 * Map, sync for the cpu, sync for the device and unmap: the first run with
 * dma_map_page() (not a dma_alloc buffer on a DMA-API debug kernel that
 * cannot look its sync up, see the compat section), then every run with
 * dma_map_sgtable().  *direct is false if any dma address is not the page's
 * own (a bounce buffer was mapped).
 */
static int cf_dma_map_held(const struct cf_handle *h, u32 runs,
			   enum dma_data_direction dir, bool *direct)
{
	struct device *dev = &cf_pdev->dev;
	unsigned long n = h->pages, start = 0, stop = n, next = 0;
	struct scatterlist *sg;
	struct sg_table sgt;
	dma_addr_t dma;
	size_t len;
	int ret, i;

	*direct = true;
	ret = sg_alloc_table(&sgt, runs, GFP_KERNEL);
	if (ret)
		return ret;
	for_each_sgtable_sg(&sgt, sg, i) {
		if (h->kind == CF_H_CMA) {
			start = find_next_bit(h->held, n, next);
			stop = find_next_zero_bit(h->held, n, start);
			next = stop;
		}
		sg_set_page(sg, pfn_to_page(h->pfn + start),
			    (unsigned int)((stop - start) << PAGE_SHIFT), 0);
	}

	if (!CF_DEBUG_SYNC_SINGLE_LOOKS_UP_SINGLE && h->kind == CF_H_DMA)
		goto sgtable;
	sg = sgt.sgl;
	len = sg->length;
	dma = dma_map_page(dev, sg_page(sg), 0, len, dir);
	if (dma_mapping_error(dev, dma)) {
		ret = -EIO;
		goto free;
	}
	*direct = dma == phys_to_dma(dev, sg_phys(sg));
	dma_sync_single_for_cpu(dev, dma, len, dir);
	dma_sync_single_for_device(dev, dma, len, dir);
	dma_unmap_page(dev, dma, len, dir);

sgtable:
	ret = dma_map_sgtable(dev, &sgt, dir, 0);
	if (ret)
		goto free;
	for_each_sgtable_dma_sg(&sgt, sg, i)
		*direct &= sg_dma_address(sg) == phys_to_dma(dev, sg_phys(sg));
	dma_sync_sgtable_for_cpu(dev, &sgt, dir);
	dma_sync_sgtable_for_device(dev, &sgt, dir);
	dma_unmap_sgtable(dev, &sgt, dir, 0);
free:
	sg_free_table(&sgt);
	return ret;
}

static void cf_op_dma_map(const struct cf_op *op, struct cf_result *r)
{
	struct cf_handle *h = &cf_handles[op->handle];
	unsigned long first, end, pages;
	bool direct;
	u32 runs;

	if (op->a > CF_DIR_FROM_DEVICE) {
		r->status = CF_ST_BADOP;
		return;
	}
	if (h->kind == CF_H_NONE) {
		r->status = CF_ST_NOOP;
		return;
	}
	runs = cf_held_runs(h, &first, &end, &pages);
	if (!runs) {
		r->status = CF_ST_NOOP;
		return;
	}
	r->pfn = h->pfn + first;
	r->pages = pages;
	/* above the mask dma-direct would map a swiotlb bounce buffer */
	if (((u64)(h->pfn + end) << PAGE_SHIFT) - 1 >
	    dma_get_mask(&cf_pdev->dev)) {
		r->status = CF_ST_REFUSED;
		return;
	}
	if (cf_dma_map_held(h, runs, (enum dma_data_direction)op->a, &direct) ||
	    !direct)
		r->status = CF_ST_FAILED;
	else
		r->status = CF_ST_OK;
}

/*
 * The pfn base_pfn + off of a PIN/UNPIN op: true and *pfn set if off lies
 * in [0, count); r->pfn is set in any case (0 if negative).
 */
static bool cf_pin_pfn(const struct cf_op *op, struct cf_result *r,
		       unsigned long *pfn)
{
	unsigned long left;
	bool inside;
	s64 spfn;

	inside = cf_area_pfn(&cma_areas[op->area], (s64)op->a, &spfn, &left);
	r->pages = 1;
	r->pfn = spfn < 0 ? 0 : spfn;
	if (!inside)
		return false;
	*pfn = spfn;
	return true;
}

/* Index of @pfn in cf_pins[], or -1. */
static int cf_pin_find(unsigned long pfn)
{
	u32 i;

	for (i = 0; i < cf_npins; i++)
		if (cf_pins[i] == pfn)
			return i;
	return -1;
}

/* Is @pfn's bit set in the bitmap of its range?  True outside a live range. */
static bool cf_bitmap_bit_set(struct cma *cma, unsigned long pfn)
{
	u32 r, n = cf_cma_nranges(cma);
	bool set = true;

	if (!cf_cma_live(cma))
		return true;
	spin_lock_irq(&cma->lock);
	for (r = 0; r < n; r++) {
		struct cf_cmr c = cf_cma_range(cma, r);

		if (c.bitmap && pfn >= c.base_pfn && pfn - c.base_pfn < c.count) {
			set = test_bit((pfn - c.base_pfn) >> cma->order_per_bit,
				       c.bitmap);
			break;
		}
	}
	spin_unlock_irq(&cma->lock);
	return set;
}

/*
 * Take one free page out of the buddy allocator the way cma_alloc() does,
 * without touching the CMA bitmap: the page is then busy for every later
 * alloc_contig_range() over it (cma-spec 2.5).  A page under a set bitmap
 * bit belongs to CMA (an allocation, a boot pool) and is refused, so that
 * the answer depends only on state the model sees; so are pinned pages and
 * pins beyond CF_MAX_PINS.
 */
static void cf_op_pin(const struct cf_op *op, struct cf_result *r)
{
	struct cma *cma = &cma_areas[op->area];
	unsigned long pfn;
	int ret;

	if (!cf_pin_pfn(op, r, &pfn) || cf_bitmap_bit_set(cma, pfn) ||
	    cf_pin_find(pfn) >= 0 || cf_npins >= CF_MAX_PINS) {
		r->status = CF_ST_REFUSED;
		return;
	}
	ret = alloc_contig_range(pfn, pfn + 1, CF_ACR_CMA, GFP_KERNEL);
	if (ret) {
		pr_info("pin: alloc_contig_range(%lu, %lu) returned %d\n",
			pfn, pfn + 1, ret);
		r->status = CF_ST_FAILED;
		return;
	}
	cf_pins[cf_npins++] = pfn;
	r->status = CF_ST_OK;
}

static void cf_unpin_at(u32 i)
{
	free_contig_range(cf_pins[i], 1);
	cf_pins[i] = cf_pins[--cf_npins];
}

static void cf_op_unpin(const struct cf_op *op, struct cf_result *r)
{
	unsigned long pfn;
	int i;

	if (!cf_pin_pfn(op, r, &pfn)) {
		r->status = CF_ST_NOOP;
		return;
	}
	i = cf_pin_find(pfn);
	if (i < 0) {
		r->status = CF_ST_NOOP;
		return;
	}
	cf_unpin_at(i);
	r->status = CF_ST_OK;
}

#ifdef CONFIG_HIGHMEM
static u32 cf_pkmap_slot(const void *addr)
{
	return ((unsigned long)addr - PKMAP_BASE) >> PAGE_SHIFT;
}

/*
 * What any earlier owner of a free highmem page may have left behind: take
 * the page like CF_OP_PIN, kmap() it, write to it, kunmap() it and give it
 * back.  kunmap() keeps the PKMAP PTE until the next pkmap flush
 * (cma-spec 5.6), so the page stays mapped cacheable while it is free.
 */
static void cf_kmap_pfn(unsigned long pfn, struct cf_result *r)
{
	struct page *page = pfn_to_page(pfn);
	bool had_slot;
	u8 *addr;
	int ret;

	ret = alloc_contig_range(pfn, pfn + 1, CF_ACR_CMA, GFP_KERNEL);
	if (ret) {
		pr_info("kmap: alloc_contig_range(%lu, %lu) returned %d\n",
			pfn, pfn + 1, ret);
		r->status = CF_ST_FAILED;
		return;
	}
	had_slot = page_address(page);
	addr = kmap(page);
	if (!had_slot)
		cf_pkmap_last = cf_pkmap_slot(addr);
	WRITE_ONCE(*addr, 0x5a);
	kunmap(page);
	free_contig_range(pfn, 1);
	r->status = CF_ST_OK;
}
#endif

static void cf_op_kmap(const struct cf_op *op, struct cf_result *r)
{
	struct cma *cma = &cma_areas[op->area];
	unsigned long pfn;

	if (!cf_pin_pfn(op, r, &pfn) || cf_bitmap_bit_set(cma, pfn) ||
	    cf_pin_find(pfn) >= 0) {
		r->status = CF_ST_REFUSED;
		return;
	}
#ifdef CONFIG_HIGHMEM
	if (pfn >= max_low_pfn) {
		cf_kmap_pfn(pfn, r);
		return;
	}
#endif
	/* lowmem, or no highmem at all: kmap() is page_address(), no slot */
	r->status = CF_ST_NOOP;
}

/*
 * Empty every unused PKMAP slot and learn where the kernel's slot cursor
 * stands: after the flush all slots are free, so a probe kmap() gets the
 * slot after last_pkmap_nr and becomes the new last_pkmap_nr.  The probe
 * page comes from highmem but never from CMA (GFP_HIGHUSER is unmovable).
 */
static void cf_pkmap_reset(void)
{
#ifdef CONFIG_HIGHMEM
	struct page *page;
	u32 slot;

	kmap_flush_unused();
	page = alloc_page(GFP_HIGHUSER);
	if (!page) {
		pr_warn("reset: no page for the pkmap probe\n");
		return;
	}
	if (!PageHighMem(page)) {
		/* No highmem zone: there are no PKMAP slots to track. */
		__free_page(page);
		return;
	}
	slot = cf_pkmap_slot(kmap(page));
	kunmap(page);
	__free_page(page);
	kmap_flush_unused();
	cf_pkmap_last = slot;
#endif
}

static void cf_op_reset(struct cf_result *r)
{
	unsigned long failed = 0;
	bool ok;
	u32 k;

	for (k = 0; k < CF_MAX_HANDLES; k++) {
		struct cf_handle *h = &cf_handles[k];

		if (h->kind == CF_H_CMA) {
			cf_release_held(h, &ok, NULL);
			if (!ok)
				failed++;
		} else if (h->kind == CF_H_DMA) {
			cf_dma_free(h);
		}
		if (h->kind != CF_H_NONE)
			cf_handle_clear(h);
	}
	while (cf_npins)
		cf_unpin_at(cf_npins - 1);
	if (failed)
		pr_err("reset: cma_release refused %lu handles\n", failed);
	cf_pkmap_reset();
	r->status = CF_ST_OK;
}

/*
 * The mapping table of one observation block.  The walkers visit kernel
 * page-table leaves in ascending va, one region (= one CF_MAP_* kind) at a
 * time and the regions in kind order, so runs come out sorted by (kind, va)
 * and each needs merging only with the one before it.
 */
struct cf_mapper {
	const struct cf_range *ranges;	/* pfns of interest, sorted, disjoint */
	u32 nranges;
	u8 kind;			/* CF_MAP_* of the region being walked */
	struct cf_map cur;		/* the open run, not yet written */
	bool have_cur;
	u8 *p, *end;			/* output cursor and bound */
	u32 nmaps;			/* runs written */
	u32 flags;			/* CF_OBS_* */
	bool nospace;			/* the runs did not fit before @end */
	bool stop;			/* nospace or CF_MAX_MAPS reached */
};

static int cf_range_cmp(const void *a, const void *b)
{
	const struct cf_range *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return 0;
}

/*
 * The pfns of interest: every page of every CMA area and of every live
 * buffer (CMA handles lie inside their area; DMA buffers may be buddy pages
 * anywhere).  Sorted and merged into disjoint ranges in cf_ranges[].
 */
static u32 cf_build_ranges(void)
{
	struct cf_range *r = cf_ranges;
	u32 n = 0, i, k;

	for (i = 0; i < cma_area_count; i++) {
		u32 j;

		if (!cma_areas[i].count)
			continue;
		for (j = 0; j < cf_cma_nranges(&cma_areas[i]) &&
			    n < CF_MAX_RANGES; j++) {
			struct cf_cmr c = cf_cma_range(&cma_areas[i], j);

			r[n].start = c.base_pfn;
			r[n].end = c.base_pfn + c.count;
			n++;
		}
	}
	for (k = 0; k < CF_MAX_HANDLES && n < CF_MAX_RANGES; k++) {
		const struct cf_handle *h = &cf_handles[k];

		if (h->kind != CF_H_DMA || !h->pages)
			continue;
		r[n].start = h->pfn;
		r[n].end = h->pfn + h->pages;
		n++;
	}
	sort(r, n, sizeof(*r), cf_range_cmp, NULL);
	for (i = 0, k = 0; i < n; i++) {
		if (k && r[i].start <= r[k - 1].end)
			r[k - 1].end = max(r[k - 1].end, r[i].end);
		else
			r[k++] = r[i];
	}
	return k;
}

static void cf_map_flush(struct cf_mapper *m)
{
	if (!m->have_cur || m->stop)
		return;
	m->have_cur = false;
	if (m->nmaps >= CF_MAX_MAPS) {
		m->flags |= CF_OBS_MAPS_TRUNCATED;
		m->stop = true;
		return;
	}
	if (m->end - m->p < sizeof(m->cur)) {
		m->nospace = true;
		m->stop = true;
		return;
	}
	memcpy(m->p, &m->cur, sizeof(m->cur));
	m->p += sizeof(m->cur);
	m->nmaps++;
}

/* Add @n pages at @va -> @pfn, all of interest, to the table. */
static void cf_map_add(struct cf_mapper *m, u8 level, u8 attr,
		       unsigned long va, unsigned long pfn, unsigned long n)
{
	struct cf_map *c = &m->cur;

	if (m->have_cur && c->kind == m->kind && c->level == level &&
	    c->attr == attr &&
	    c->va + ((u64)c->pages << PAGE_SHIFT) == va &&
	    c->pfn + c->pages == pfn && n <= U32_MAX - c->pages) {
		c->pages += n;
		return;
	}
	cf_map_flush(m);
	if (m->stop)
		return;
	memset(c, 0, sizeof(*c));
	c->va = va;
	c->pfn = pfn;
	c->pages = n;
	c->kind = m->kind;
	c->level = level;
	c->attr = attr;
	m->have_cur = true;
}

/*
 * A present leaf maps the @n pages at @va to @pfn.. (the caller has clipped
 * it to the window being walked): add the parts that are of interest.
 */
static void cf_map_leaf(struct cf_mapper *m, u8 level, u8 attr,
			unsigned long va, unsigned long pfn, unsigned long n)
{
	unsigned long end = pfn + n, a, b;
	u32 lo = 0, hi = m->nranges, mid;

	/* first range that ends above @pfn */
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (m->ranges[mid].end <= pfn)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < m->nranges && m->ranges[lo].start < end && !m->stop;
	     lo++) {
		a = max(pfn, m->ranges[lo].start);
		b = min(end, m->ranges[lo].end);
		cf_map_add(m, level, attr, va + ((a - pfn) << PAGE_SHIFT), a,
			   b - a);
	}
}

#if defined(CONFIG_ARM) && !defined(CONFIG_ARM_LPAE)

/* The next @size boundary after @va, or @end if that comes first. */
static unsigned long cf_addr_end(unsigned long va, unsigned long end,
				 unsigned long size)
{
	unsigned long next = (va + size) & ~(size - 1);

	return next - 1 < end - 1 ? next : end;
}

/*
 * arm32 2-level: memory type n = TEX[0]:C:B of a hardware descriptor, TEX[0]
 * at bit @tex0 (12 in sections and large pages, 6 in small pages).
 */
static u8 cf_arm_attr(u32 d, unsigned int tex0)
{
	return ((d >> tex0) & 1) << 2 | ((d >> 3) & 1) << 1 | ((d >> 2) & 1);
}

/*
 * The second-level table of one 1 MiB L1 entry: read the hardware table the
 * L1 entry points at (Linux keeps its own PTEs 2048 bytes before it, with
 * software bits the MMU never sees).
 */
static void cf_walk_l2(struct cf_mapper *m, u32 l1, unsigned long va,
		       unsigned long end)
{
	const u32 *hw = phys_to_virt(l1 & ~0x3ffu);
	unsigned long pfn;
	u32 d;

	for (; va < end && !m->stop; va += PAGE_SIZE) {
		d = READ_ONCE(hw[(va >> PAGE_SHIFT) & 0xff]);
		if (d & 2) {		/* small page */
			pfn = d >> PAGE_SHIFT;
			cf_map_leaf(m, CF_LVL_PTE, cf_arm_attr(d, 6), va, pfn,
				    1);
		} else if (d & 1) {	/* 64 KiB large page: unused by Linux */
			pfn = ((d & 0xffff0000u) >> PAGE_SHIFT) +
			      ((va >> PAGE_SHIFT) & 0xf);
			cf_map_leaf(m, CF_LVL_PTE, cf_arm_attr(d, 12), va, pfn,
				    1);
		}
	}
}

static void cf_walk(struct cf_mapper *m, unsigned long va, unsigned long end)
{
	unsigned long next, pfn;
	pmd_t *pmdp;
	u32 l1;

	for (; va < end && !m->stop; va = next) {
		next = cf_addr_end(va, end, SECTION_SIZE);
		/* pmd_off_k() gives the first of a pair of 1 MiB entries */
		pmdp = pmd_off_k(va) + ((va >> SECTION_SHIFT) & 1);
		l1 = pmd_val(READ_ONCE(*pmdp));
		switch (l1 & 3) {
		case 1:
			cf_walk_l2(m, l1, va, next);
			break;
		case 2:
			if (l1 & PMD_SECT_SUPER) {
				/* 16 MiB; PA[35:32] in bits 23:20 */
				pfn = (l1 >> PAGE_SHIFT) & 0xff000;
				pfn |= (unsigned long)((l1 >> 20) & 0xf)
				       << (32 - PAGE_SHIFT);
				pfn += (va & ~SUPERSECTION_MASK) >> PAGE_SHIFT;
			} else {
				pfn = (l1 & SECTION_MASK) >> PAGE_SHIFT;
				pfn += (va & ~SECTION_MASK) >> PAGE_SHIFT;
			}
			cf_map_leaf(m, CF_LVL_SECTION, cf_arm_attr(l1, 12), va,
				    pfn, (next - va) >> PAGE_SHIFT);
			break;
		}
	}
}

#else /* LPAE or arm64: long descriptors, AttrIndx in bits 4:2 */

#ifdef CONFIG_ARM64
#define CF_LVL_BLOCK2M		CF_LVL_PMD
#else
#define CF_LVL_BLOCK2M		CF_LVL_SECTION
#endif

static u8 cf_attr_indx(u64 d)
{
	return (d >> 2) & 7;
}

static void cf_walk_pte(struct cf_mapper *m, pmd_t *pmdp, unsigned long va,
			unsigned long end)
{
	pte_t *ptep = pte_offset_kernel(pmdp, va);
	pte_t pte;
	u64 d;

	for (; va < end && !m->stop; va += PAGE_SIZE, ptep++) {
		pte = ptep_get(ptep);
		d = pte_val(pte);
		if ((d & 3) == 3)	/* page descriptor */
			cf_map_leaf(m, CF_LVL_PTE, cf_attr_indx(d), va,
				    pte_pfn(pte), 1);
	}
}

static void cf_walk_pmd(struct cf_mapper *m, pud_t *pudp, unsigned long va,
			unsigned long end)
{
	pmd_t *pmdp = pmd_offset(pudp, va);
	unsigned long next, pfn;
	pmd_t pmd;
	u64 d;

	for (; va < end && !m->stop; va = next, pmdp++) {
		next = pmd_addr_end(va, end);
		pmd = READ_ONCE(*pmdp);
		d = pmd_val(pmd);
		if ((d & 3) == 1) {	/* 2 MiB block */
			pfn = pmd_pfn(pmd) + ((va & ~PMD_MASK) >> PAGE_SHIFT);
			cf_map_leaf(m, CF_LVL_BLOCK2M, cf_attr_indx(d), va, pfn,
				    (next - va) >> PAGE_SHIFT);
		} else if ((d & 3) == 3) {
			cf_walk_pte(m, pmdp, va, next);
		}
	}
}

static void cf_walk_pud(struct cf_mapper *m, p4d_t *p4dp, unsigned long va,
			unsigned long end)
{
	pud_t *pudp = pud_offset(p4dp, va);
	unsigned long next;
	pud_t pud;
	u64 d;

	for (; va < end && !m->stop; va = next, pudp++) {
		next = pud_addr_end(va, end);
		pud = READ_ONCE(*pudp);
		d = pud_val(pud);
		if ((d & 3) == 3) {
			cf_walk_pmd(m, pudp, va, next);
#ifdef CONFIG_ARM64
		} else if ((d & 3) == 1) {	/* 1 GiB block */
			cf_map_leaf(m, CF_LVL_PUD, cf_attr_indx(d), va,
				    pud_pfn(pud) +
				    ((va & ~PUD_MASK) >> PAGE_SHIFT),
				    (next - va) >> PAGE_SHIFT);
#endif
		}
	}
}

static void cf_walk_p4d(struct cf_mapper *m, pgd_t *pgdp, unsigned long va,
			unsigned long end)
{
	p4d_t *p4dp = p4d_offset(pgdp, va);
	unsigned long next;
	p4d_t p4d;

	for (; va < end && !m->stop; va = next, p4dp++) {
		next = p4d_addr_end(va, end);
		p4d = READ_ONCE(*p4dp);
		if (p4d_none(p4d) || p4d_bad(p4d))
			continue;
		cf_walk_pud(m, p4dp, va, next);
	}
}

static void cf_walk(struct cf_mapper *m, unsigned long va, unsigned long end)
{
	pgd_t *pgdp = pgd_offset_k(va);
	unsigned long next;
	pgd_t pgd;

	for (; va < end && !m->stop; va = next, pgdp++) {
		next = pgd_addr_end(va, end);
		pgd = READ_ONCE(*pgdp);
		if (pgd_none(pgd) || pgd_bad(pgd))
			continue;
		cf_walk_p4d(m, pgdp, va, next);
	}
}

#endif

static void cf_walk_region(struct cf_mapper *m, u8 kind, unsigned long start,
			   unsigned long end)
{
	m->kind = kind;
	cf_walk(m, PAGE_ALIGN(start), end & PAGE_MASK);
}

/*
 * The linear map holds nothing but __va(pfn) for lowmem pfns, so walk just
 * the VAs of the pfns of interest.  Not [PAGE_OFFSET, high_memory): an
 * arm64 kernel built for 52-bit VAs that runs with 48 (6.12 with LPA2 on a
 * CPU without it) has its linear map well above PAGE_OFFSET, and the
 * addresses below would wrap around the top-level table.
 */
static void cf_walk_linear(struct cf_mapper *m)
{
	unsigned long lo, hi;
	u32 i;

	m->kind = CF_MAP_LIN;
	for (i = 0; i < m->nranges && !m->stop; i++) {
		lo = m->ranges[i].start;
		hi = min(m->ranges[i].end, max_low_pfn);
		if (lo >= hi)
			break;		/* sorted: the rest is highmem */
		cf_walk(m, (unsigned long)pfn_to_kaddr(lo),
			(unsigned long)pfn_to_kaddr(hi));
	}
}

/*
 * Write the mapping table at @p, at most up to @end; returns the number of
 * runs, or -ENOSPC.  Full walks of the vmalloc, PKMAP and fixmap areas find
 * every alias of a pfn of interest, not just the ones the DMA code made;
 * the linear map cannot hold any but the obvious one.
 */
static int cf_maps(u8 **p, u8 *end, u32 *flags)
{
	struct cf_mapper m = {
		.ranges = cf_ranges,
		.nranges = cf_build_ranges(),
		.p = *p,
		.end = end,
	};

	cf_walk_linear(&m);
	cf_walk_region(&m, CF_MAP_VMAP, VMALLOC_START, VMALLOC_END);
#ifdef CONFIG_HIGHMEM
	cf_walk_region(&m, CF_MAP_PKMAP, PKMAP_BASE,
		       PKMAP_BASE + LAST_PKMAP * PAGE_SIZE);
#endif
#ifdef CONFIG_ARM64
	cf_walk_region(&m, CF_MAP_FIXMAP, FIXADDR_START, FIXADDR_TOP);
#else
	cf_walk_region(&m, CF_MAP_FIXMAP, FIXADDR_START, FIXADDR_END);
#endif
	cf_map_flush(&m);
	if (m.nospace)
		return -ENOSPC;
	*p = m.p;
	*flags = m.flags;
	return m.nmaps;
}

/*
 * Append one observation block at @p, at most up to @end; returns the byte
 * after it, or NULL if it does not fit.
 */
static u8 *cf_observe(u8 *p, u8 *end, u32 op_index)
{
	struct cf_obs_hdr oh = {
		.op_index = op_index,
		.nareas = cf_nareas(),
		.cma_free_pages = global_zone_page_state(NR_FREE_CMA_PAGES),
		.pkmap_last = cf_pkmap_last,
	};
	u8 *hdr = p;
	u32 i, w, nwords;
	int nmaps;

	if (end - p < sizeof(oh))
		return NULL;
	p += sizeof(oh);
	for (i = 0; i < oh.nareas; i++) {
		struct cma *cma = &cma_areas[i];
		struct cf_area ar = { };
		bool live = cf_cma_live(cma);
		unsigned long avail;
		u32 word, r;

		if (end - p < sizeof(ar))
			return NULL;
		memcpy(ar.name, cma->name,
		       strnlen(cma->name, min_t(size_t, CF_NAME_LEN,
						sizeof(cma->name))));
		ar.count = cma->count;
		ar.order_per_bit = cma->order_per_bit;
		ar.nranges = cf_area_nranges(cma);
		if (live)
			ar.flags |= CF_AREA_ACTIVATED;
		/* one lock covers every range's bitmap and available_count */
		if (live)
			spin_lock_irq(&cma->lock);
		if (cf_cma_available(cma, &avail)) {
			ar.available = avail;
			ar.flags |= CF_AREA_AVAILABLE;
		}
		memcpy(p, &ar, sizeof(ar));
		p += sizeof(ar);
		for (r = 0; r < ar.nranges; r++) {
			struct cf_cmr c = cf_cma_range(cma, r);
			struct cf_memrange mr = {
				.base_pfn = c.base_pfn,
				.count = c.count,
				.nwords = cf_range_nwords(cma, &c),
			};

			nwords = mr.nwords;
			if (end - p < sizeof(mr) + (size_t)nwords * sizeof(u32)) {
				p = NULL;
				break;
			}
			memcpy(p, &mr, sizeof(mr));
			p += sizeof(mr);
			for (w = 0; w < nwords; w++) {
				unsigned long l = c.bitmap[w / (BITS_PER_LONG / 32)];

				word = (u32)(l >> (32 * (w % (BITS_PER_LONG / 32))));
				memcpy(p, &word, sizeof(word));
				p += sizeof(word);
			}
		}
		if (live)
			spin_unlock_irq(&cma->lock);
		if (!p)
			return NULL;
	}

	nmaps = cf_maps(&p, end, &oh.flags);
	if (nmaps < 0)
		return NULL;
	oh.nmaps = nmaps;
	memcpy(hdr, &oh, sizeof(oh));
	return p;
}

/* Field checks common to all ops; the op handlers check their own values. */
static bool cf_op_valid(const struct cf_op *op)
{
	switch (op->kind) {
	case CF_OP_CMA_ALLOC:
		return op->area < cma_area_count &&
		       op->handle < CF_MAX_HANDLES && !op->flags;
	case CF_OP_CMA_RELEASE_RAW:
	case CF_OP_PIN:
	case CF_OP_UNPIN:
	case CF_OP_KMAP:
		return op->area < cma_area_count && !op->flags;
	case CF_OP_CMA_RELEASE:
	case CF_OP_DMA_FREE:
		return op->handle < CF_MAX_HANDLES && !op->flags;
	case CF_OP_DMA_ALLOC:
		return op->handle < CF_MAX_HANDLES;
	case CF_OP_DMA_MAP:
		return op->handle < CF_MAX_HANDLES && !op->flags && !op->b;
	case CF_OP_OBSERVE:
	case CF_OP_RESET:
		return !op->flags;
	default:
		return false;
	}
}

static void cf_run_op(const struct cf_op *op, struct cf_result *r)
{
	r->kind = op->kind;
	if (!cf_op_valid(op)) {
		r->status = CF_ST_BADOP;
		return;
	}
	switch (op->kind) {
	case CF_OP_CMA_ALLOC:
		cf_op_cma_alloc(op, r);
		break;
	case CF_OP_CMA_RELEASE:
		cf_op_cma_release(op, r);
		break;
	case CF_OP_CMA_RELEASE_RAW:
		cf_op_cma_release_raw(op, r);
		break;
	case CF_OP_DMA_ALLOC:
		cf_op_dma_alloc(op, r);
		break;
	case CF_OP_DMA_FREE:
		cf_op_dma_free(op, r);
		break;
	case CF_OP_PIN:
		cf_op_pin(op, r);
		break;
	case CF_OP_UNPIN:
		cf_op_unpin(op, r);
		break;
	case CF_OP_KMAP:
		cf_op_kmap(op, r);
		break;
	case CF_OP_DMA_MAP:
		cf_op_dma_map(op, r);
		break;
	case CF_OP_OBSERVE:
		/* the block itself is written by the caller */
		r->status = CF_ST_OK;
		break;
	case CF_OP_RESET:
		cf_op_reset(r);
		break;
	}
}

/* Does op @op (already run into @r) end with an observation block? */
static bool cf_observes(const struct cf_op *op, const struct cf_result *r,
			u32 run_flags)
{
	if (run_flags & CF_RUN_OBSERVE_EACH)
		return true;
	return op->kind == CF_OP_OBSERVE && r->status == CF_ST_OK;
}

/*
 * Ops completed since boot, read by CF_IOC_PROGRESS without cf_lock while a
 * RUN holds it: the host's watchdog measures progress, not total time.
 */
static atomic64_t cf_ops_done = ATOMIC64_INIT(0);

/*
 * Run the ops into cf_out (@cap bytes); returns the payload length or
 * -ENOSPC if an observation block does not fit.  The fixed part of the
 * answer was checked before, so only the mapping tables can overflow; the
 * ops up to that point have run, the rest are not run.
 */
static long cf_run_ops(const struct cf_op *ops, u32 nops, u32 run_flags,
		       size_t cap)
{
	struct cf_result_hdr rh = { .nresults = nops };
	struct cf_result *res;
	u8 *p, *end = cf_out + cap;
	u32 i;

	memset(cf_out, 0, sizeof(rh) + (size_t)nops * sizeof(*res));
	res = (struct cf_result *)(cf_out + sizeof(rh));
	p = cf_out + sizeof(rh) + (size_t)nops * sizeof(*res);
	for (i = 0; i < nops; i++) {
		cf_run_op(&ops[i], &res[i]);
		if (cf_observes(&ops[i], &res[i], run_flags)) {
			p = cf_observe(p, end, i);
			if (!p) {
				pr_warn("op %u: observation does not fit in %zu bytes\n",
					i, cap);
				return -ENOSPC;
			}
			rh.nobs++;
		}
		atomic64_inc(&cf_ops_done);
		cond_resched();
	}
	memcpy(cf_out, &rh, sizeof(rh));
	return p - cf_out;
}

static long cf_ioctl_progress(u64 __user *uarg)
{
	return put_user((u64)atomic64_read(&cf_ops_done), uarg);
}

static long cf_ioctl_run(struct cf_ioc_run __user *uarg)
{
	struct cf_ioc_run arg;
	struct cf_op *ops = NULL;
	struct cf_run run;
	size_t need, cap;
	u32 i, nobs = 0;
	long ret, len;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.in_len < sizeof(run) || arg.in_len > CF_MAX_FRAME)
		return -EINVAL;
	if (copy_from_user(&run, u64_to_user_ptr(arg.in), sizeof(run)))
		return -EFAULT;
	if (run.nops > CF_MAX_OPS || (run.flags & ~CF_RUN_FLAGS_MASK) ||
	    arg.in_len != sizeof(run) + (u64)run.nops * sizeof(*ops))
		return -EINVAL;
	if (run.nops) {
		ops = vmemdup_user(u64_to_user_ptr(arg.in + sizeof(run)),
				   run.nops * sizeof(*ops));
		if (IS_ERR(ops))
			return PTR_ERR(ops);
	}
	if (run.flags & CF_RUN_OBSERVE_EACH)
		nobs = run.nops;
	else
		for (i = 0; i < run.nops; i++)
			if (ops[i].kind == CF_OP_OBSERVE &&
			    cf_op_valid(&ops[i]))
				nobs++;

	/*
	 * Never start ops whose answer cannot fit without its mapping
	 * tables; those are checked as they are written.
	 */
	cap = min_t(u64, arg.out_cap, CF_MAX_FRAME);
	need = sizeof(struct cf_result_hdr) +
	       (size_t)run.nops * sizeof(struct cf_result) +
	       (size_t)nobs * cf_obs_fixed_size();
	if (need > cap) {
		ret = -ENOSPC;
		goto free_ops;
	}

	mutex_lock(&cf_lock);
	len = cf_run_ops(ops, run.nops, run.flags, cap);
	if (len < 0)
		ret = len;
	else if (copy_to_user(u64_to_user_ptr(arg.out), cf_out, len) ||
		 put_user((u64)len, &uarg->out_len))
		ret = -EFAULT;
	else
		ret = 0;
	mutex_unlock(&cf_lock);
free_ops:
	kvfree(ops);
	return ret;
}

static u32 cf_pageblock_order(void)
{
	return pageblock_order;
}

/* The registers that give a descriptor's memory-type index its meaning. */
static u64 cf_attr_regs(void)
{
#ifdef CONFIG_ARM64
	return read_sysreg(mair_el1);
#else
	u32 lo, hi;

	/* PRRR and NMRR; the same encodings are MAIR0 and MAIR1 under LPAE */
	asm volatile("mrc p15, 0, %0, c10, c2, 0" : "=r" (lo));
	asm volatile("mrc p15, 0, %0, c10, c2, 1" : "=r" (hi));
	return lo | (u64)hi << 32;
#endif
}

static long cf_ioctl_hello(struct cf_ioc_hello __user *uarg)
{
	struct cf_ioc_hello arg = { };
	struct cf_hello *h = &arg.hello;

	h->version = CF_VERSION;
	h->max_frame = CF_MAX_FRAME;
	h->max_ops = CF_MAX_OPS;
	h->max_handles = CF_MAX_HANDLES;
#if defined(CONFIG_ARM64)
	h->arch = CF_ARCH_ARM64;
#elif defined(CONFIG_ARM_LPAE)
	h->arch = CF_ARCH_ARM32_LPAE;
#else
	h->arch = CF_ARCH_ARM32;
#endif
	h->page_shift = PAGE_SHIFT;
	h->cma_alignment = CF_CMA_ALIGNMENT;
	h->pb_order = cf_pageblock_order();
	h->max_low_pfn = max_low_pfn;
	h->max_pfn = max_pfn;
	strscpy_pad(h->release, utsname()->release, sizeof(h->release));
	h->attr_regs = cf_attr_regs();
#ifdef CONFIG_HIGHMEM
	h->pkmap_slots = LAST_PKMAP;
#endif
	h->ops_ok = cf_ops_ok;
	if (copy_to_user(uarg, &arg, sizeof(arg)))
		return -EFAULT;
	return 0;
}

/*
 * The boot self-check: each op kind does what it means on this kernel, or
 * the hello says it does not (cf_hello.ops_ok) and the host refuses programs
 * that use it.  Run once before /dev/cmafuzz exists, on the default area
 * (dev_get_cma_area(NULL)); everything it takes it gives back, so the areas
 * are as boot left them.  Kernel changes that keep an op compiling but change
 * what it does (v6.17's acr_flags_t, where MIGRATE_CMA means "not CMA") end
 * here, not in a silent divergence.
 */

#define CF_OK(kind)	(1u << (kind))

static void cf_check_fail(u32 kind, const char *what, const char *why)
{
	pr_warn("self-check: %s does not work on this kernel: %s\n", what, why);
	cf_ops_ok &= ~CF_OK(kind);
}

/* The first pfn of a one-page cma_alloc(), released again; 0 if none. */
static unsigned long cf_check_first_free(struct cma *cma)
{
	struct page *page = cma_alloc(cma, 1, 0, true);
	unsigned long pfn;

	if (!page)
		return 0;
	pfn = page_to_pfn(page);
	cma_release(cma, page, 1);
	return pfn;
}

static void cf_check_cma(struct cma *cma)
{
	unsigned long pfn, f, again;
	struct page *page;
	int ret;

	/* cma_alloc: two pages, order-1 aligned, inside the area, bits set */
	page = cma_alloc(cma, 2, 1, true);
	if (!page) {
		cf_check_fail(CF_OP_CMA_ALLOC, "cma_alloc",
			      "cma_alloc(2 pages) of a fresh area failed");
		cf_ops_ok &= ~(CF_OK(CF_OP_CMA_RELEASE) |
			       CF_OK(CF_OP_CMA_RELEASE_RAW) | CF_OK(CF_OP_PIN) |
			       CF_OK(CF_OP_UNPIN) | CF_OK(CF_OP_KMAP));
		return;
	}
	pfn = page_to_pfn(page);
	if (!cf_bitmap_bit_set(cma, pfn) || !cf_bitmap_bit_set(cma, pfn + 1))
		cf_check_fail(CF_OP_CMA_ALLOC, "cma_alloc",
			      "the pages it returned are not set in the area's bitmap");
	/* cma_release_raw: the tail page alone, the head stays held */
	if (!cma_release(cma, pfn_to_page(pfn + 1), 1) ||
	    cf_bitmap_bit_set(cma, pfn + 1) || !cf_bitmap_bit_set(cma, pfn))
		cf_check_fail(CF_OP_CMA_RELEASE_RAW, "cma_release_raw",
			      "releasing the tail page of a held pair did not clear exactly its bit");
	if (!cma_release(cma, page, 1) || cf_bitmap_bit_set(cma, pfn))
		cf_check_fail(CF_OP_CMA_RELEASE, "cma_release",
			      "cma_release() of a held page did not clear its bit");

	/* pin: a pinned free page makes cma_alloc() retry past it */
	f = cf_check_first_free(cma);
	if (!f) {
		cf_check_fail(CF_OP_PIN, "pin", "no free page to pin");
		cf_check_fail(CF_OP_UNPIN, "unpin", "pin does not work");
		return;
	}
	ret = alloc_contig_range(f, f + 1, CF_ACR_CMA, GFP_KERNEL);
	if (ret) {
		pr_warn("self-check: alloc_contig_range(%lu, %lu) returned %d on a free CMA page\n",
			f, f + 1, ret);
		cf_check_fail(CF_OP_PIN, "pin",
			      "alloc_contig_range() cannot take a free CMA page");
		cf_check_fail(CF_OP_UNPIN, "unpin", "pin does not work");
		cf_check_fail(CF_OP_KMAP, "kmap",
			      "alloc_contig_range() cannot take a free CMA page");
		return;
	}
	again = cf_check_first_free(cma);
	if (cf_bitmap_bit_set(cma, f) || !again || again == f)
		cf_check_fail(CF_OP_PIN, "pin",
			      "a pinned free page did not make cma_alloc() retry past it");
	free_contig_range(f, 1);
	if (cf_check_first_free(cma) != f)
		cf_check_fail(CF_OP_UNPIN, "unpin",
			      "an unpinned page is not cma_alloc()'s first free page again");

#ifdef CONFIG_HIGHMEM
	/* kmap of a free highmem page leaves its PKMAP slot behind */
	if (f >= max_low_pfn) {
		struct cf_result r = { };

		cf_kmap_pfn(f, &r);
		if (r.status != CF_ST_OK || !page_address(pfn_to_page(f)))
			cf_check_fail(CF_OP_KMAP, "kmap",
				      "kmap()+kunmap() of a free highmem page left no PKMAP slot");
		kmap_flush_unused();
		cf_pkmap_last = CF_PKMAP_UNKNOWN;
	}
#endif
	/* lowmem (or no highmem): kmap is page_address(), a NOOP by definition */
}

static void cf_check_dma(struct cma *cma)
{
	struct device *dev = &cf_pdev->dev;
	unsigned long pfn;
	dma_addr_t dma;
	void *cpu;
	u32 r;

	/*
	 * No kernel mapping: the check must leave the memory types as boot made
	 * them. A free path that forgets to restore the linear map (the
	 * arm32-lowmem-free-keeps-uncached bug) would otherwise leave boot's own
	 * pages uncached, and every program after boot would be blamed for it.
	 * Where the buffer comes from is the same with or without the mapping.
	 */
	cpu = dma_alloc_attrs(dev, 2 * PAGE_SIZE, &dma, GFP_KERNEL,
			      DMA_ATTR_NO_KERNEL_MAPPING);
	if (!cpu) {
		cf_check_fail(CF_OP_DMA_ALLOC, "dma_alloc",
			      "dma_alloc_attrs(8 KiB, GFP_KERNEL) failed");
		cf_check_fail(CF_OP_DMA_FREE, "dma_free", "dma_alloc does not work");
		return;
	}
	pfn = PHYS_PFN(dma_to_phys(dev, dma));
	if (cma && cf_cma_live(cma)) {
		bool in = false;

		for (r = 0; r < cf_cma_nranges(cma); r++) {
			struct cf_cmr c = cf_cma_range(cma, r);

			in |= pfn >= c.base_pfn && pfn - c.base_pfn < c.count;
		}
		if (!in || !cf_bitmap_bit_set(cma, pfn))
			cf_check_fail(CF_OP_DMA_ALLOC, "dma_alloc",
				      "a blocking 8 KiB allocation did not come from the default CMA area");
	}
	dma_free_attrs(dev, 2 * PAGE_SIZE, cpu, dma, DMA_ATTR_NO_KERNEL_MAPPING);
	if (cma && cf_cma_live(cma) && cf_bitmap_bit_set(cma, pfn))
		cf_check_fail(CF_OP_DMA_FREE, "dma_free",
			      "dma_free_attrs() left the buffer's CMA bit set");
}

/*
 * dma_map: every direction maps a two-page buffer at its own dma address
 * (no bounce buffer) and leaves it as it was: a dma_alloc buffer and, with
 * a default area, a cma_alloc pair whose bits stay set.
 */
static void cf_check_dma_map_one(struct cf_handle *h, const char *what)
{
	enum dma_data_direction dir;
	unsigned long first, end, pages;
	bool direct;
	u32 runs = cf_held_runs(h, &first, &end, &pages);

	for (dir = DMA_BIDIRECTIONAL; dir <= DMA_FROM_DEVICE; dir++) {
		if (cf_dma_map_held(h, runs, dir, &direct)) {
			pr_warn("self-check: dma_map of a %s failed (dir %d)\n",
				what, dir);
			cf_check_fail(CF_OP_DMA_MAP, "dma_map",
				      "streaming map of a held buffer failed");
		} else if (!direct) {
			pr_warn("self-check: dma_map of a %s bounced (dir %d)\n",
				what, dir);
			cf_check_fail(CF_OP_DMA_MAP, "dma_map",
				      "streaming map did not map the buffer's own pages");
		}
	}
}

static void cf_check_dma_map(struct cma *cma)
{
	struct device *dev = &cf_pdev->dev;
	struct cf_handle h = { };
	struct page *page;
	unsigned long held = 0;

	h.cpu = dma_alloc_attrs(dev, 2 * PAGE_SIZE, &h.dma, GFP_KERNEL,
				DMA_ATTR_NO_KERNEL_MAPPING);
	if (!h.cpu) {
		cf_check_fail(CF_OP_DMA_MAP, "dma_map",
			      "no dma_alloc buffer to map");
		return;
	}
	h.kind = CF_H_DMA;
	h.pfn = PHYS_PFN(dma_to_phys(dev, h.dma));
	h.pages = 2;
	cf_check_dma_map_one(&h, "dma_alloc buffer");
	dma_free_attrs(dev, 2 * PAGE_SIZE, h.cpu, h.dma,
		       DMA_ATTR_NO_KERNEL_MAPPING);

	if (!cma || !cf_cma_live(cma))
		return;
	page = cma_alloc(cma, 2, 0, true);
	if (!page)
		return;	/* cf_check_cma() has said why */
	memset(&h, 0, sizeof(h));
	h.kind = CF_H_CMA;
	h.pfn = page_to_pfn(page);
	h.pages = 2;
	bitmap_set(&held, 0, 2);
	h.held = &held;
	cf_check_dma_map_one(&h, "cma_alloc pair");
	if (!cf_bitmap_bit_set(cma, h.pfn) ||
	    !cf_bitmap_bit_set(cma, h.pfn + 1))
		cf_check_fail(CF_OP_DMA_MAP, "dma_map",
			      "a streaming map changed the area's bitmap");
	cma_release(cma, page, 2);
}

static void cf_selfcheck(void)
{
	struct cma *cma = dev_get_cma_area(NULL);

	cf_ops_ok = CF_OK(CF_OP_CMA_ALLOC) | CF_OK(CF_OP_CMA_RELEASE) |
		    CF_OK(CF_OP_CMA_RELEASE_RAW) | CF_OK(CF_OP_DMA_ALLOC) |
		    CF_OK(CF_OP_DMA_FREE) | CF_OK(CF_OP_OBSERVE) |
		    CF_OK(CF_OP_RESET) | CF_OK(CF_OP_PIN) | CF_OK(CF_OP_UNPIN) |
		    CF_OK(CF_OP_KMAP) | CF_OK(CF_OP_DMA_MAP);
	if (cma && cf_cma_live(cma))
		cf_check_cma(cma);
	else
		pr_info("self-check: no default CMA area, the CMA ops have none to act on\n");
	cf_check_dma(cma);
	cf_check_dma_map(cma);
	pr_info("self-check: ops_ok %#x\n", cf_ops_ok);
}

static long cf_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	switch (cmd) {
	case CF_IOC_RUN:
		return cf_ioctl_run((struct cf_ioc_run __user *)arg);
	case CF_IOC_HELLO:
		return cf_ioctl_hello((struct cf_ioc_hello __user *)arg);
	case CF_IOC_PROGRESS:
		return cf_ioctl_progress((u64 __user *)arg);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations cf_fops = {
	.owner		= THIS_MODULE,
	.unlocked_ioctl	= cf_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.llseek		= noop_llseek,
};

static struct miscdevice cf_misc = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "cmafuzz",
	.fops	= &cf_fops,
	.mode	= 0600,
};

static int __init cmafuzz_init(void)
{
	int ret;

	cf_handles = vzalloc(array_size(CF_MAX_HANDLES, sizeof(*cf_handles)));
	cf_ranges = vmalloc(array_size(CF_MAX_RANGES, sizeof(*cf_ranges)));
	cf_out = vmalloc(CF_MAX_FRAME);
	if (!cf_handles || !cf_ranges || !cf_out) {
		ret = -ENOMEM;
		goto free_handles;
	}

	/* No DT node, no dma_ops: a non-coherent device on the direct path. */
	cf_pdev = platform_device_register_simple("cmafuzz-dma", -1, NULL, 0);
	if (IS_ERR(cf_pdev)) {
		ret = PTR_ERR(cf_pdev);
		goto free_handles;
	}
	ret = dma_coerce_mask_and_coherent(&cf_pdev->dev, DMA_BIT_MASK(32));
	if (ret)
		goto unregister_pdev;
	/*
	 * A held run is one segment of any length; the 64 KiB default would
	 * make DMA-API debug report every longer one (check_sg_segment).
	 * Nothing else on the direct path reads it.
	 */
	dma_set_max_seg_size(&cf_pdev->dev, UINT_MAX);

	BUILD_BUG_ON(CF_CMA_MAX_RANGES > CF_MAX_AREA_RANGES);
	cf_selfcheck();

	ret = misc_register(&cf_misc);
	if (ret)
		goto unregister_pdev;

	pr_info("ready, %u areas\n", cma_area_count);
	return 0;

unregister_pdev:
	platform_device_unregister(cf_pdev);
free_handles:
	vfree(cf_out);
	vfree(cf_ranges);
	vfree(cf_handles);
	pr_err("init failed: %d\n", ret);
	return ret;
}
late_initcall(cmafuzz_init);
