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
 * per op plus one snapshot of every CMA bitmap per OBSERVE op.  Every field
 * of every op is range checked; an op that could corrupt the kernel under
 * test (freeing pages nobody holds) is refused without calling the kernel.
 *
 * Allocations live in a global handle table that survives close(), pinned
 * pages in a small global table; RESET frees and unpins them all.
 */

#define pr_fmt(fmt) "cmafuzz: " fmt

#include <linux/bitmap.h>
#include <linux/cma.h>
#include <linux/dma-direct.h>
#include <linux/dma-mapping.h>
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/init.h>
#include <linux/memblock.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/pageblock-flags.h>
#include <linux/platform_device.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/utsname.h>
#include <linux/version.h>
#include <linux/vmalloc.h>
#include <linux/vmstat.h>
#include <linux/workqueue.h>

#include "cma.h"

#include "cmafuzz_wire.h"

#ifndef CONFIG_CMA
#error "cmafuzz needs CONFIG_CMA"
#endif
#ifdef __BIG_ENDIAN
#error "the cmafuzz wire format is little-endian"
#endif

#ifdef CONFIG_CMA_ALIGNMENT
#define CF_CMA_ALIGNMENT	CONFIG_CMA_ALIGNMENT
#else
#define CF_CMA_ALIGNMENT	0
#endif

/* Largest CF_OP_DMA_ALLOC size accepted; more only exercises the OOM path. */
#define CF_MAX_DMA_SIZE		(1ULL << 30)
/* cma_alloc() shifts by align: keep it far from the width of a long. */
#define CF_MAX_CMA_ALIGN	31

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

static DEFINE_MUTEX(cf_lock);
static struct cf_handle *cf_handles;
static struct platform_device *cf_pdev;
/* Pages taken by CF_OP_PIN, unordered; cf_pins[0..cf_npins) are live. */
static unsigned long cf_pins[CF_MAX_PINS];
static u32 cf_npins;

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

static u32 cf_area_nwords(const struct cma *cma)
{
	unsigned long bits;

	if (!cma->count || !cma->bitmap)
		return 0;
	bits = cma_bitmap_maxno((struct cma *)cma);
	return min_t(unsigned long, DIV_ROUND_UP(bits, 32), CF_MAX_BITMAP_WORDS);
}

/* Bytes of one observation block; the area table is fixed after boot. */
static size_t cf_obs_size(void)
{
	size_t sz = sizeof(struct cf_obs_hdr);
	u32 i;

	for (i = 0; i < cf_nareas(); i++)
		sz += sizeof(struct cf_area) +
		      (size_t)cf_area_nwords(&cma_areas[i]) * sizeof(u32);
	return sz;
}

static void cf_handle_clear(struct cf_handle *h)
{
	bitmap_free(h->held);
	memset(h, 0, sizeof(*h));
}

/* Release every maximal run of still-held pages; returns pages released. */
static unsigned long cf_release_held(struct cf_handle *h, bool *all_ok)
{
	struct cma *cma = &cma_areas[h->area];
	unsigned long n = h->pages, start, end, done = 0;

	*all_ok = true;
	for (start = find_first_bit(h->held, n); start < n;
	     start = find_next_bit(h->held, n, end)) {
		end = find_next_zero_bit(h->held, n, start);
		if (!cma_release(cma, pfn_to_page(h->pfn + start), end - start))
			*all_ok = false;
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
	bool ok;

	if (h->kind != CF_H_CMA) {
		r->status = CF_ST_NOOP;
		return;
	}
	r->pfn = h->pfn;
	r->pages = cf_release_held(h, &ok);
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
	unsigned long count, pfn;
	struct page *page = NULL;
	bool neg, bad_pfn, ok;

	if (op->b > ULONG_MAX) {
		r->status = CF_ST_BADOP;
		return;
	}
	count = op->b;
	neg = check_add_overflow((s64)cma->base_pfn, off, &spfn) || spfn < 0;
	bad_pfn = neg || (u64)spfn > ULONG_MAX;
	pfn = bad_pfn ? 0 : (unsigned long)spfn;
	r->pfn = neg ? 0 : spfn;
	r->pages = count;

	if (off < 0 || (u64)off >= cma->count) {
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
	if (count > cma->count - (u64)off ||
	    !cf_all_held(op->area, pfn, count)) {
		r->status = CF_ST_REFUSED;
		return;
	}
	ok = cma_release(cma, page, count);
	r->status = ok ? CF_ST_OK : CF_ST_FAILED;
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
	gfp = (op->flags & CF_GFP_ATOMIC) ? GFP_ATOMIC : GFP_KERNEL;

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
 * The pfn base_pfn + off of a PIN/UNPIN op: true and *pfn set if off lies
 * in [0, count); r->pfn is set in any case (0 if negative).
 */
static bool cf_pin_pfn(const struct cf_op *op, struct cf_result *r,
		       unsigned long *pfn)
{
	struct cma *cma = &cma_areas[op->area];
	s64 off = (s64)op->a, spfn;

	r->pages = 1;
	if (check_add_overflow((s64)cma->base_pfn, off, &spfn) || spfn < 0)
		r->pfn = 0;
	else
		r->pfn = spfn;
	if (off < 0 || (u64)off >= cma->count)
		return false;
	*pfn = cma->base_pfn + (unsigned long)off;
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

static bool cf_bitmap_bit_set(struct cma *cma, unsigned long pfn)
{
	unsigned long bit = (pfn - cma->base_pfn) >> cma->order_per_bit;
	bool set;

	spin_lock_irq(&cma->lock);
	set = test_bit(bit, cma->bitmap);
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
	ret = alloc_contig_range(pfn, pfn + 1, MIGRATE_CMA, GFP_KERNEL);
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

static void cf_op_reset(struct cf_result *r)
{
	unsigned long failed = 0;
	bool ok;
	u32 k;

	for (k = 0; k < CF_MAX_HANDLES; k++) {
		struct cf_handle *h = &cf_handles[k];

		if (h->kind == CF_H_CMA) {
			cf_release_held(h, &ok);
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
	r->status = CF_ST_OK;
}

/* Append one observation block at @p; returns the byte after it. */
static u8 *cf_observe(u8 *p, u8 *end, u32 op_index)
{
	struct cf_obs_hdr oh = {
		.op_index = op_index,
		.nareas = cf_nareas(),
		.cma_free_pages = global_zone_page_state(NR_FREE_CMA_PAGES),
	};
	u32 i, w, nwords;

	memcpy(p, &oh, sizeof(oh));
	p += sizeof(oh);
	for (i = 0; i < oh.nareas; i++) {
		struct cma *cma = &cma_areas[i];
		struct cf_area ar = { };
		u32 word;

		nwords = cf_area_nwords(cma);
		if (p + sizeof(ar) + (size_t)nwords * sizeof(u32) > end) {
			/* cannot happen: sized by cf_obs_size() */
			WARN_ON_ONCE(1);
			nwords = 0;
		}
		memcpy(ar.name, cma->name,
		       strnlen(cma->name, min_t(size_t, CF_NAME_LEN,
						sizeof(cma->name))));
		ar.base_pfn = cma->base_pfn;
		ar.count = cma->count;
		ar.order_per_bit = cma->order_per_bit;
		ar.nwords = nwords;
		memcpy(p, &ar, sizeof(ar));
		p += sizeof(ar);

		spin_lock_irq(&cma->lock);
		for (w = 0; w < nwords; w++) {
			unsigned long l = cma->bitmap[w / (BITS_PER_LONG / 32)];

			word = (u32)(l >> (32 * (w % (BITS_PER_LONG / 32))));
			memcpy(p, &word, sizeof(word));
			p += sizeof(word);
		}
		spin_unlock_irq(&cma->lock);
	}
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
		return op->area < cma_area_count && !op->flags;
	case CF_OP_CMA_RELEASE:
	case CF_OP_DMA_FREE:
		return op->handle < CF_MAX_HANDLES && !op->flags;
	case CF_OP_DMA_ALLOC:
		return op->handle < CF_MAX_HANDLES;
	case CF_OP_OBSERVE:
	case CF_OP_RESET:
		return !op->flags;
	default:
		return false;
	}
}

static long cf_ioctl_run(struct cf_ioc_run __user *uarg)
{
	struct cf_result_hdr rh = { };
	struct cf_ioc_run arg;
	struct cf_result *res;
	struct cf_op *ops = NULL;
	struct cf_run run;
	size_t need;
	u8 *out, *p;
	u32 i, nobs = 0;
	long ret = 0;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.in_len < sizeof(run) || arg.in_len > CF_MAX_FRAME)
		return -EINVAL;
	if (copy_from_user(&run, u64_to_user_ptr(arg.in), sizeof(run)))
		return -EFAULT;
	if (run.nops > CF_MAX_OPS || run.flags ||
	    arg.in_len != sizeof(run) + (u64)run.nops * sizeof(*ops))
		return -EINVAL;
	if (run.nops) {
		ops = vmemdup_user(u64_to_user_ptr(arg.in + sizeof(run)),
				   run.nops * sizeof(*ops));
		if (IS_ERR(ops))
			return PTR_ERR(ops);
	}
	for (i = 0; i < run.nops; i++)
		if (ops[i].kind == CF_OP_OBSERVE && cf_op_valid(&ops[i]))
			nobs++;

	/* Size the whole answer first: never run ops we cannot report. */
	need = sizeof(rh) + (size_t)run.nops * sizeof(*res) +
	       (size_t)nobs * cf_obs_size();
	if (need > arg.out_cap || need > CF_MAX_FRAME) {
		ret = -ENOSPC;
		goto free_ops;
	}
	out = kvzalloc(need, GFP_KERNEL);
	if (!out) {
		ret = -ENOMEM;
		goto free_ops;
	}
	res = (struct cf_result *)(out + sizeof(rh));
	p = out + sizeof(rh) + (size_t)run.nops * sizeof(*res);

	mutex_lock(&cf_lock);
	for (i = 0; i < run.nops; i++) {
		const struct cf_op *op = &ops[i];
		struct cf_result *r = &res[i];

		r->kind = op->kind;
		if (!cf_op_valid(op)) {
			r->status = CF_ST_BADOP;
			continue;
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
		case CF_OP_OBSERVE:
			p = cf_observe(p, out + need, i);
			rh.nobs++;
			r->status = CF_ST_OK;
			break;
		case CF_OP_RESET:
			cf_op_reset(r);
			break;
		}
		cond_resched();
	}
	mutex_unlock(&cf_lock);

	rh.nresults = run.nops;
	WARN_ON_ONCE(rh.nobs != nobs);
	memcpy(out, &rh, sizeof(rh));
	if (copy_to_user(u64_to_user_ptr(arg.out), out, p - out) ||
	    put_user((u64)(p - out), &uarg->out_len))
		ret = -EFAULT;
	kvfree(out);
free_ops:
	kvfree(ops);
	return ret;
}

static u32 cf_pageblock_order(void)
{
	return pageblock_order;
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
	if (copy_to_user(uarg, &arg, sizeof(arg)))
		return -EFAULT;
	return 0;
}

static long cf_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	switch (cmd) {
	case CF_IOC_RUN:
		return cf_ioctl_run((struct cf_ioc_run __user *)arg);
	case CF_IOC_HELLO:
		return cf_ioctl_hello((struct cf_ioc_hello __user *)arg);
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
	if (!cf_handles)
		return -ENOMEM;

	/* No DT node, no dma_ops: a non-coherent device on the direct path. */
	cf_pdev = platform_device_register_simple("cmafuzz-dma", -1, NULL, 0);
	if (IS_ERR(cf_pdev)) {
		ret = PTR_ERR(cf_pdev);
		goto free_handles;
	}
	ret = dma_coerce_mask_and_coherent(&cf_pdev->dev, DMA_BIT_MASK(32));
	if (ret)
		goto unregister_pdev;

	ret = misc_register(&cf_misc);
	if (ret)
		goto unregister_pdev;

	pr_info("ready, %u areas\n", cma_area_count);
	return 0;

unregister_pdev:
	platform_device_unregister(cf_pdev);
free_handles:
	vfree(cf_handles);
	pr_err("init failed: %d\n", ret);
	return ret;
}
late_initcall(cmafuzz_init);
