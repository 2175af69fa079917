// SPDX-License-Identifier: GPL-2.0
/*
 * cmafuzz guest agent: the static /init of the test initramfs.
 *
 * It only moves bytes: RUN frames from the host (virtio-serial port named
 * "cmafuzz") go to the driver (ioctl CF_IOC_RUN on /dev/cmafuzz), and the
 * driver's answer goes back as a RESULT frame.  The driver parses and bounds
 * every field of a RUN payload.  The one thing the agent adds is KCOV: for a
 * RUN with CF_RUN_KCOV it clears the bit, traces its own task's PCs around
 * the ioctl and appends the distinct ones as a struct cf_kcov trailer.
 *
 * With cmafuzz.local=PATH on the kernel command line it instead runs the RUN
 * payload in PATH (cmafuzz.repeat=N times, each followed by a RESET), prints
 * the results and a timing line on the console and powers off.  If PATH is a
 * directory, every file in it is such a payload: each round runs them all in
 * name order (after one untimed round), and only the timing line is printed.
 * A payload with a RESET in it carries its reset (what the host sends: the
 * program, OBSERVE, RESET, OBSERVE in one RUN); any other is followed by a
 * RESET and an OBSERVE in a RUN of their own.
 *
 * Build it static: $(CC) -static -O2 -Wall -Wextra -I qemu/include -o init
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "cmafuzz_wire.h"

#define PORT_NAME	"cmafuzz"
#define PORT_WAIT_MS	5000
#define POLL_MS		10
#define BUF_SIZE	CF_MAX_FRAME

/* include/uapi/linux/kcov.h */
#define KCOV_INIT_TRACE	_IOR('c', 1, unsigned long)
#define KCOV_ENABLE	_IO('c', 100)
#define KCOV_TRACE_PC	0
#define KCOV_PATH	"/sys/kernel/debug/kcov"
/*
 * Trace entries (not distinct PCs) of one run: the driver's page-table walk
 * of one observation alone runs thousands of basic blocks.
 */
#define KCOV_WORDS	(1u << 22)
/* Open-addressing set of the distinct PCs of one run, at most half full. */
#define PC_SET_BITS	17
#define PC_SET_SIZE	(1u << PC_SET_BITS)

static uint8_t in_buf[BUF_SIZE];
/*
 * The driver may fill BUF_SIZE; the KCOV trailer goes after it.  The frame
 * header goes before it, so a RESULT leaves in one write (one buffer to the
 * host, not two: each is a trip through qemu and a wake-up of the host).
 */
static uint8_t out_frame[sizeof(struct cf_frame_hdr) + BUF_SIZE +
			 sizeof(struct cf_kcov) + CF_MAX_KCOV * 8]
	__attribute__((aligned(8)));
#define out_buf (out_frame + sizeof(struct cf_frame_hdr))

static struct {
	int fd;			/* -1: the kernel has no KCOV */
	int ready;		/* traced, mapped, enabled */
	unsigned long *cover;	/* cover[0] = entries, then PCs */
	uint32_t gen;
	uint32_t set_gen[PC_SET_SIZE];
	unsigned long set_pc[PC_SET_SIZE];
} kcov = { .fd = -1 };

static void say(const char *fmt, ...)
{
	va_list ap;

	fputs("cmafuzz-agent: ", stdout);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

/*
 * Not nanosleep(): the harness kernels lack CONFIG_COMPAT_32BIT_TIME, and
 * glibc's arm32 nanosleep()/clock_nanosleep() then fail with ENOSYS.
 */
static void sleep_ms(int ms)
{
	poll(NULL, 0, ms);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static _Noreturn void power_off(void)
{
	fflush(stdout);
	sync();
	reboot(RB_POWER_OFF);
	say("reboot(RB_POWER_OFF): %s", strerror(errno));
	for (;;)
		pause();
}

static void mount_one(const char *src, const char *dir, const char *type)
{
	mkdir(dir, 0755);
	if (mount(src, dir, type, 0, NULL) < 0 && errno != EBUSY)
		say("mount %s on %s: %s", type, dir, strerror(errno));
}

/* The initramfs may lack /dev/console: then PID 1 starts without fds. */
static void setup_console(void)
{
	int fd;

	if (fcntl(1, F_GETFD) >= 0)
		return;
	fd = open("/dev/console", O_RDWR);
	if (fd < 0)
		return;
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	if (fd > 2)
		close(fd);
}

static int read_file(const char *path, char *buf, size_t cap)
{
	ssize_t n;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while (got + 1 < cap) {
		n = read(fd, buf + got, cap - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	close(fd);
	buf[got] = '\0';
	return (int)got;
}

/* Value of "key=" on the kernel command line, copied to val; 0 if found. */
static int cmdline_get(const char *key, char *val, size_t cap)
{
	static char cmdline[4096];
	size_t klen = strlen(key);
	char *p;

	if (read_file("/proc/cmdline", cmdline, sizeof(cmdline)) < 0)
		return -1;
	for (p = cmdline; *p; ) {
		size_t len;

		while (*p == ' ' || *p == '\n')
			p++;
		len = strcspn(p, "\n ");
		if (len > klen && !strncmp(p, key, klen) && p[klen] == '=') {
			size_t vlen = len - klen - 1;

			if (vlen >= cap)
				return -1;
			memcpy(val, p + klen + 1, vlen);
			val[vlen] = '\0';
			return 0;
		}
		p += len;
	}
	return -1;
}

static int read_exact(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	ssize_t n;

	while (len) {
		n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = 0;	/* EOF */
			return -1;
		}
		p += n;
		len -= n;
	}
	return 0;
}

static int write_all(int fd, const void *buf, size_t len, int retry)
{
	const uint8_t *p = buf;
	ssize_t n;

	while (len) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && retry && (errno == EAGAIN || errno == EPIPE ||
				       errno == ENOTCONN)) {
			sleep_ms(POLL_MS);
			continue;
		}
		if (n < 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

/*
 * One frame in one write where it fits: out_buf's payload has its header
 * room in front of it, a small payload is copied behind a header.
 */
static int send_frame(int port, uint16_t kind, uint32_t seq,
		      const void *payload, uint32_t len, int retry)
{
	struct cf_frame_hdr h = {
		.magic = CF_MAGIC,
		.version = CF_VERSION,
		.kind = kind,
		.len = len,
		.seq = seq,
	};
	uint8_t small[sizeof(h) + 1024];
	int rc;

	if (payload == out_buf) {
		memcpy(out_frame, &h, sizeof(h));
		rc = write_all(port, out_frame, sizeof(h) + len, retry);
	} else if (len <= sizeof(small) - sizeof(h)) {
		memcpy(small, &h, sizeof(h));
		memcpy(small + sizeof(h), payload, len);
		rc = write_all(port, small, sizeof(h) + len, retry);
	} else {
		rc = write_all(port, &h, sizeof(h), retry);
		if (!rc)
			rc = write_all(port, payload, len, retry);
	}
	if (rc < 0) {
		say("write to port: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int send_error(int port, uint32_t seq, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	say("error frame: %s", msg);
	return send_frame(port, CF_FRAME_ERROR, seq, msg, n, 0);
}

/* Open /dev/vportNpM whose sysfs name is PORT_NAME; -1 after the timeout. */
static int open_port(void)
{
	char path[300], name[64], dev[300];
	uint64_t deadline = now_ns() + PORT_WAIT_MS * 1000000ull;
	struct dirent *de;
	DIR *d;
	int fd;

	for (;;) {
		d = opendir("/sys/class/virtio-ports");
		while (d && (de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path),
				 "/sys/class/virtio-ports/%s/name", de->d_name);
			if (read_file(path, name, sizeof(name)) < 0)
				continue;
			name[strcspn(name, "\n")] = '\0';
			if (strcmp(name, PORT_NAME))
				continue;
			snprintf(dev, sizeof(dev), "/dev/%s", de->d_name);
			fd = open(dev, O_RDWR | O_CLOEXEC);
			if (fd >= 0) {
				closedir(d);
				return fd;
			}
			if (errno != ENOENT)
				say("open %s: %s", dev, strerror(errno));
		}
		if (d)
			closedir(d);
		if (now_ns() > deadline)
			return -1;
		sleep_ms(POLL_MS);
	}
}

static int do_run(int cf, const void *in, size_t in_len, size_t *out_len)
{
	struct cf_ioc_run r = {
		.in = (uintptr_t)in,
		.in_len = in_len,
		.out = (uintptr_t)out_buf,
		.out_cap = BUF_SIZE,
	};

	if (ioctl(cf, CF_IOC_RUN, &r) < 0)
		return -1;
	*out_len = r.out_len;
	return 0;
}

/* KCOV is offered when the kernel has it; it is set up on first use. */
/*
 * DMA-API debug prints only the first error of a boot (kernel/dma/debug.c
 * show_num_errors = 1): one suppressed report (KNOWN-ISSUES.md KI-2) would
 * hide every later one, a real bug's included, until the VM reboots.  Have it
 * print them all; a kernel without DMA-API debug has no such file.
 */
static void dma_debug_all_errors(void)
{
	int fd = open("/sys/kernel/debug/dma-api/all_errors", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (write(fd, "1", 1) != 1)
		say("dma-api/all_errors: %s", strerror(errno));
	close(fd);
}

static void kcov_probe(void)
{
	kcov.fd = open(KCOV_PATH, O_RDWR | O_CLOEXEC);
}

/* Trace this task from now on; 0 if coverage can be collected. */
static int kcov_start(void)
{
	void *p;

	if (kcov.ready)
		return 0;
	if (kcov.fd < 0)
		return -1;
	if (ioctl(kcov.fd, KCOV_INIT_TRACE, (unsigned long)KCOV_WORDS) < 0) {
		say("KCOV_INIT_TRACE: %s", strerror(errno));
		goto off;
	}
	p = mmap(NULL, KCOV_WORDS * sizeof(unsigned long),
		 PROT_READ | PROT_WRITE, MAP_SHARED, kcov.fd, 0);
	if (p == MAP_FAILED) {
		say("mmap kcov: %s", strerror(errno));
		goto off;
	}
	if (ioctl(kcov.fd, KCOV_ENABLE, KCOV_TRACE_PC) < 0) {
		say("KCOV_ENABLE: %s", strerror(errno));
		munmap(p, KCOV_WORDS * sizeof(unsigned long));
		goto off;
	}
	kcov.cover = p;
	kcov.ready = 1;
	return 0;
off:
	close(kcov.fd);
	kcov.fd = -1;
	return -1;
}

/* 1 if pc was not yet in this run's set (and adds it). */
static int pc_set_add(unsigned long pc)
{
	/*
	 * Kernel PCs are 2- or 4-byte aligned and close together, so their low
	 * bits spread them well enough: no multiply (costly on arm32 under TCG)
	 * in a loop that runs once per trace entry.
	 */
	uint32_t i = (uint32_t)(pc >> 1) & (PC_SET_SIZE - 1);

	for (;; i = (i + 1) & (PC_SET_SIZE - 1)) {
		if (kcov.set_gen[i] != kcov.gen) {
			kcov.set_gen[i] = kcov.gen;
			kcov.set_pc[i] = pc;
			return 1;
		}
		if (kcov.set_pc[i] == pc)
			return 0;
	}
}

/*
 * Appends the distinct PCs traced since the counter was reset to the result
 * in out_buf, bounded by CF_MAX_KCOV and CF_MAX_FRAME.
 */
static void kcov_append(size_t *out_len)
{
	unsigned long n = __atomic_load_n(&kcov.cover[0], __ATOMIC_RELAXED);
	struct cf_kcov k = { .magic = CF_KCOV_MAGIC };
	uint8_t *pcs = out_buf + *out_len + sizeof(k);
	size_t room, cap;
	unsigned long i;

	if (*out_len + sizeof(k) > BUF_SIZE)
		return;		/* no room for a trailer: the host sees none */
	room = (BUF_SIZE - *out_len - sizeof(k)) / 8;
	cap = room < CF_MAX_KCOV ? room : CF_MAX_KCOV;
	if (n >= KCOV_WORDS - 1) {
		n = KCOV_WORDS - 1;
		k.flags |= CF_KCOV_TRUNCATED;
	}
	if (!++kcov.gen) {	/* wrapped: forget every old generation */
		memset(kcov.set_gen, 0, sizeof(kcov.set_gen));
		kcov.gen = 1;
	}
	for (i = 0; i < n; i++) {
		unsigned long pc = kcov.cover[i + 1];
		uint64_t wide = pc;

		if (!pc_set_add(pc))
			continue;
		if (k.npcs == cap) {
			k.flags |= CF_KCOV_TRUNCATED;
			break;
		}
		memcpy(pcs + (size_t)k.npcs * 8, &wide, 8);
		k.npcs++;
	}
	memcpy(out_buf + *out_len, &k, sizeof(k));
	*out_len += sizeof(k) + (size_t)k.npcs * 8;
}

/* A RUN payload with CF_RUN_KCOV: runs it with coverage, appended. */
static int run_traced(int cf, uint8_t *in, size_t in_len, size_t *out_len)
{
	struct cf_run run;
	int want;

	if (in_len < sizeof(run))
		return do_run(cf, in, in_len, out_len);
	memcpy(&run, in, sizeof(run));
	want = !!(run.flags & CF_RUN_KCOV);
	run.flags &= ~CF_RUN_KCOV;
	memcpy(in, &run, sizeof(run));
	if (!want || kcov_start() < 0)
		return do_run(cf, in, in_len, out_len);
	__atomic_store_n(&kcov.cover[0], 0, __ATOMIC_RELAXED);
	if (do_run(cf, in, in_len, out_len) < 0)
		return -1;
	kcov_append(out_len);
	/* Local mode runs the same payload again. */
	run.flags |= CF_RUN_KCOV;
	memcpy(in, &run, sizeof(run));
	return 0;
}

/*
 * Progress reports during a RUN: a child process sends a CF_FRAME_PROGRESS
 * with the ops of the RUN the driver has completed every CF_PROGRESS_MS, so
 * the host's watchdog measures progress, not time.  A kernel that stops
 * answering stops the reports (it does not schedule) or their count (an op
 * that sleeps forever).  A child, not a thread: the test kernels have no
 * futexes.  Parent and child share one page (MAP_SHARED before the fork):
 * a RUN starts and ends with stores to it, no syscall and no wake-up of the
 * child, which looks every CF_PROGRESS_MS.  No report follows a RUN's
 * RESULT: the child raises @sending before it checks @running, the parent
 * clears @running before it checks @sending and waits while it is set
 * (sequentially consistent, so one of them sees the other's store).
 */
struct progress_shm {
	uint32_t running;	/* a RUN is in the driver */
	uint32_t sending;	/* the child is between its check and its report */
	uint32_t seq;		/* the RUN's frame seq */
	uint32_t pad;
	uint64_t start;		/* the driver's op count when the RUN began */
};

static struct progress_shm *prog;

static uint64_t driver_ops_done(int cf)
{
	uint64_t n = 0;

	if (ioctl(cf, CF_IOC_PROGRESS, &n) < 0)
		return 0;
	return n;
}

static void progress_child(int cf, int port)
{
	struct cf_progress p;

	for (;;) {
		sleep_ms(CF_PROGRESS_MS);
		__atomic_store_n(&prog->sending, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&prog->running, __ATOMIC_SEQ_CST)) {
			p.ops_done = driver_ops_done(cf) - prog->start;
			send_frame(port, CF_FRAME_PROGRESS, prog->seq, &p,
				   sizeof(p), 0);
		}
		__atomic_store_n(&prog->sending, 0, __ATOMIC_SEQ_CST);
	}
}

static void progress_start(int cf, int port)
{
	void *shm = mmap(NULL, sizeof(*prog), PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pid;

	if (shm == MAP_FAILED) {
		say("mmap of the progress page: %s: no progress reports",
		    strerror(errno));
		return;
	}
	prog = shm;
	pid = fork();
	if (pid == 0)
		progress_child(cf, port);
	if (pid < 0) {
		say("fork: %s: no progress reports", strerror(errno));
		munmap(shm, sizeof(*prog));
		prog = NULL;
	}
}

static void progress_begin(int cf, uint32_t seq)
{
	if (!prog)
		return;
	prog->start = driver_ops_done(cf);
	prog->seq = seq;
	__atomic_store_n(&prog->running, 1, __ATOMIC_SEQ_CST);
}

/* Returns once the child will send no more reports for this RUN. */
static void progress_end(void)
{
	if (!prog)
		return;
	__atomic_store_n(&prog->running, 0, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&prog->sending, __ATOMIC_SEQ_CST))
		sched_yield();
}

static void serve(int cf, int port)
{
	struct cf_ioc_hello hello;
	struct cf_agent_hello agent = { 0 };
	uint8_t hbuf[sizeof(hello.hello) + sizeof(agent)];
	struct cf_frame_hdr h;
	size_t out_len;
	int rc, err;

	if (ioctl(cf, CF_IOC_HELLO, &hello) < 0) {
		say("ioctl CF_IOC_HELLO: %s", strerror(errno));
		return;
	}
	kcov_probe();
	if (kcov.fd >= 0) {
		agent.flags |= CF_AGENT_KCOV;
		agent.max_kcov = CF_MAX_KCOV;
	}
	memcpy(hbuf, &hello.hello, sizeof(hello.hello));
	memcpy(hbuf + sizeof(hello.hello), &agent, sizeof(agent));
	if (send_frame(port, CF_FRAME_HELLO, 0, hbuf, sizeof(hbuf), 1) < 0)
		return;
	progress_start(cf, port);

	for (;;) {
		if (read_exact(port, &h, sizeof(h)) < 0) {
			if (errno)
				say("read from port: %s", strerror(errno));
			else
				say("host closed the port");
			return;
		}
		if (h.magic != CF_MAGIC || h.version != CF_VERSION ||
		    h.len > CF_MAX_FRAME) {
			send_error(port, h.seq,
				   "bad frame header: magic %#x version %u len %u",
				   h.magic, h.version, h.len);
			return;
		}
		if (read_exact(port, in_buf, h.len) < 0) {
			say("read frame payload: %s",
			    errno ? strerror(errno) : "EOF");
			return;
		}
		if (h.kind != CF_FRAME_RUN) {
			if (send_error(port, h.seq, "unexpected frame kind %u",
				       h.kind) < 0)
				return;
			continue;
		}
		progress_begin(cf, h.seq);
		rc = run_traced(cf, in_buf, h.len, &out_len);
		err = errno;
		progress_end();
		if (rc < 0)
			rc = send_error(port, h.seq, "CF_IOC_RUN: %s",
					strerror(err));
		else
			rc = send_frame(port, CF_FRAME_RESULT, h.seq, out_buf,
					out_len, 0);
		if (rc < 0)
			return;
	}
}

/* Print a RESULT payload; returns -1 if it is malformed. */
static int print_result(const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	struct cf_result_hdr rh;
	struct cf_result r;
	struct cf_obs_hdr oh;
	struct cf_area ar;
	struct cf_memrange mr;
	struct cf_map m;
	uint32_t i, a, w, word, used;
	char name[CF_NAME_LEN + 1];

	if ((size_t)(end - p) < sizeof(rh))
		return -1;
	memcpy(&rh, p, sizeof(rh));
	p += sizeof(rh);
	for (i = 0; i < rh.nresults; i++) {
		if ((size_t)(end - p) < sizeof(r))
			return -1;
		memcpy(&r, p, sizeof(r));
		p += sizeof(r);
		printf("cmafuzz-local: r %u st=%u pfn=%llu pages=%llu aux=%llu\n",
		       i, r.status, (unsigned long long)r.pfn,
		       (unsigned long long)r.pages, (unsigned long long)r.aux);
	}
	for (i = 0; i < rh.nobs; i++) {
		if ((size_t)(end - p) < sizeof(oh))
			return -1;
		memcpy(&oh, p, sizeof(oh));
		p += sizeof(oh);
		for (a = 0; a < oh.nareas; a++) {
			uint32_t r;

			if ((size_t)(end - p) < sizeof(ar))
				return -1;
			memcpy(&ar, p, sizeof(ar));
			p += sizeof(ar);
			if (ar.nranges > CF_MAX_AREA_RANGES)
				return -1;
			memcpy(name, ar.name, CF_NAME_LEN);
			name[CF_NAME_LEN] = '\0';
			name[strcspn(name, "\n")] = '\0';
			printf("cmafuzz-local: obs %u area %s count=%llu opb=%u flags=%#x available=%llu ranges=%u\n",
			       oh.op_index, name, (unsigned long long)ar.count,
			       ar.order_per_bit, ar.flags,
			       (unsigned long long)ar.available, ar.nranges);
			for (r = 0; r < ar.nranges; r++) {
				const uint8_t *words;
				int first = 1;

				if ((size_t)(end - p) < sizeof(mr))
					return -1;
				memcpy(&mr, p, sizeof(mr));
				p += sizeof(mr);
				if ((size_t)(end - p) / 4 < mr.nwords)
					return -1;
				words = p;
				p += (size_t)mr.nwords * 4;
				used = 0;
				for (w = 0; w < mr.nwords; w++) {
					memcpy(&word, words + 4 * w, 4);
					used += __builtin_popcount(word);
				}
				printf("cmafuzz-local: obs %u area %s range %u base=%llu count=%llu used=%u words=",
				       oh.op_index, name, r,
				       (unsigned long long)mr.base_pfn,
				       (unsigned long long)mr.count, used);
				for (w = 0; w < mr.nwords; w++) {
					memcpy(&word, words + 4 * w, 4);
					if (!word)
						continue;
					printf("%s%u:%x", first ? "" : ",", w, word);
					first = 0;
				}
				printf("\n");
			}
		}
		printf("cmafuzz-local: obs %u maps=%u flags=%#x pkmap_last=%d\n",
		       oh.op_index, oh.nmaps, oh.flags, (int)oh.pkmap_last);
		for (a = 0; a < oh.nmaps; a++) {
			if ((size_t)(end - p) < sizeof(m))
				return -1;
			memcpy(&m, p, sizeof(m));
			p += sizeof(m);
			printf("cmafuzz-local: obs %u map kind=%u level=%u attr=%u va=%#llx pfn=%#llx pages=%u\n",
			       oh.op_index, m.kind, m.level, m.attr,
			       (unsigned long long)m.va,
			       (unsigned long long)m.pfn, m.pages);
		}
	}
	fflush(stdout);
	return 0;
}

/* Reads a whole file into a malloc()ed buffer of at most cap bytes. */
static uint8_t *slurp(const char *path, size_t cap, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	size_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0 || (size_t)st.st_size > cap ||
	    !(buf = malloc(st.st_size ? st.st_size : 1))) {
		say("read %s: %s", path, fd < 0 ? strerror(errno) : "too big");
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	while (n < (size_t)st.st_size) {
		ssize_t got = read(fd, buf + n, st.st_size - n);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		n += got;
	}
	close(fd);
	*len = n;
	return buf;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/*
 * Every RUN payload in dir, repeat rounds, each followed by RESET + OBSERVE:
 * what the host does per program, without the host.  Only timed.  Payloads
 * with CF_RUN_KCOV are traced and their PCs collected as for the host.
 */
static void local_dir(int cf, const char *dir, unsigned long repeat)
{
	static const struct cf_op reset_ops[2] = {
		{ .kind = CF_OP_RESET }, { .kind = CF_OP_OBSERVE },
	};
	uint8_t reset_run[sizeof(struct cf_run) + sizeof(reset_ops)];
	struct cf_run rr = { .nops = 2 };
	struct dirent **ents;
	uint8_t **bufs;
	size_t *lens;
	int *own_reset;
	uint64_t t0 = 0, ns, ops = 0, runs = 0;
	unsigned long r;
	size_t out_len;
	int i, n, nbufs = 0;
	uint32_t j;

	memcpy(reset_run, &rr, sizeof(rr));
	memcpy(reset_run + sizeof(rr), reset_ops, sizeof(reset_ops));
	n = scandir(dir, &ents, NULL, by_name);
	if (n < 0) {
		say("scandir %s: %s", dir, strerror(errno));
		return;
	}
	bufs = calloc(n ? n : 1, sizeof(*bufs));
	lens = calloc(n ? n : 1, sizeof(*lens));
	own_reset = calloc(n ? n : 1, sizeof(*own_reset));
	if (!bufs || !lens || !own_reset) {
		say("out of memory");
		return;
	}
	for (i = 0; i < n; i++) {
		char path[512];
		struct cf_run hdr;

		if (ents[i]->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
		bufs[nbufs] = slurp(path, BUF_SIZE, &lens[nbufs]);
		if (!bufs[nbufs])
			return;
		if (lens[nbufs] < sizeof(hdr)) {
			say("%s: shorter than struct cf_run", path);
			return;
		}
		memcpy(&hdr, bufs[nbufs], sizeof(hdr));
		ops += hdr.nops;
		for (j = 0; j < hdr.nops &&
			    lens[nbufs] >= sizeof(hdr) + (j + 1) * sizeof(struct cf_op);
		     j++) {
			struct cf_op op;

			memcpy(&op, bufs[nbufs] + sizeof(hdr) + j * sizeof(op),
			       sizeof(op));
			if (op.kind == CF_OP_RESET)
				own_reset[nbufs] = 1;
		}
		nbufs++;
	}
	/*
	 * One untimed round first: under TCG the first run of any guest code
	 * pays for its translation, and the host's side is timed warm too.
	 */
	for (r = 0; r <= repeat; r++) {
		if (r == 1)
			t0 = now_ns();
		for (i = 0; i < nbufs; i++) {
			if (run_traced(cf, bufs[i], lens[i], &out_len) < 0 ||
			    (!own_reset[i] &&
			     do_run(cf, reset_run, sizeof(reset_run),
				    &out_len) < 0)) {
				say("CF_IOC_RUN on payload %d: %s", i,
				    strerror(errno));
				return;
			}
			if (r)
				runs += own_reset[i] ? 1 : 2;
		}
	}
	ns = now_ns() - t0;
	ops *= repeat;
	printf("cmafuzz-local: files=%d rounds=%lu runs=%llu ops=%llu ns=%llu ops_per_sec=%.0f\n",
	       nbufs, repeat, (unsigned long long)runs,
	       (unsigned long long)ops, (unsigned long long)ns,
	       ns ? (double)ops * 1e9 / (double)ns : 0.0);
	fflush(stdout);
}

static void local_mode(int cf, const char *path)
{
	static uint8_t reset_run[sizeof(struct cf_run) + sizeof(struct cf_op)];
	struct cf_run *rr = (struct cf_run *)reset_run;
	struct cf_op *rop = (struct cf_op *)(reset_run + sizeof(*rr));
	struct cf_run hdr;
	char val[32];
	unsigned long repeat = 1, i;
	uint64_t t0, ns, ops;
	struct stat st;
	size_t out_len;
	ssize_t n;
	int fd;

	if (!cmdline_get("cmafuzz.repeat", val, sizeof(val))) {
		repeat = strtoul(val, NULL, 0);
		if (!repeat)
			repeat = 1;
	}
	if (!stat(path, &st) && S_ISDIR(st.st_mode)) {
		local_dir(cf, path, repeat);
		return;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		say("open %s: %s", path, strerror(errno));
		return;
	}
	n = 0;
	for (;;) {
		ssize_t got = read(fd, in_buf + n, sizeof(in_buf) - n);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			say("read %s: %s", path, strerror(errno));
			close(fd);
			return;
		}
		n += got;
		if (got == 0 || (size_t)n == sizeof(in_buf))
			break;
	}
	close(fd);
	if (n < (ssize_t)sizeof(hdr)) {
		say("%s: shorter than struct cf_run", path);
		return;
	}
	memcpy(&hdr, in_buf, sizeof(hdr));
	rr->nops = 1;
	rop->kind = CF_OP_RESET;

	t0 = now_ns();
	for (i = 0; i < repeat; i++) {
		if (do_run(cf, in_buf, n, &out_len) < 0) {
			say("CF_IOC_RUN on %s: %s", path, strerror(errno));
			return;
		}
		if (i == 0) {
			ns = now_ns();
			if (print_result(out_buf, out_len) < 0)
				say("malformed result (%zu bytes)", out_len);
			t0 += now_ns() - ns;	/* printing is not measured */
		}
		if (do_run(cf, reset_run, sizeof(reset_run), &out_len) < 0) {
			say("CF_IOC_RUN (reset): %s", strerror(errno));
			return;
		}
	}
	ns = now_ns() - t0;
	ops = (uint64_t)repeat * (hdr.nops + 1);
	printf("cmafuzz-local: ops=%llu ns=%llu ops_per_sec=%.0f\n",
	       (unsigned long long)ops, (unsigned long long)ns,
	       ns ? (double)ops * 1e9 / (double)ns : 0.0);
	fflush(stdout);
}

int main(void)
{
	char path[256];
	int cf, port;

	mount_one("devtmpfs", "/dev", "devtmpfs");
	setup_console();
	mount_one("proc", "/proc", "proc");
	mount_one("sysfs", "/sys", "sysfs");
	mount_one("debugfs", "/sys/kernel/debug", "debugfs");
	dma_debug_all_errors();

	cf = open("/dev/cmafuzz", O_RDWR | O_CLOEXEC);
	if (cf < 0) {
		say("open /dev/cmafuzz: %s", strerror(errno));
		power_off();
	}

	if (!cmdline_get("cmafuzz.local", path, sizeof(path))) {
		kcov_probe();
		local_mode(cf, path);
		power_off();
	}

	port = open_port();
	if (port < 0) {
		say("no virtio-serial port named \"%s\" after %d ms",
		    PORT_NAME, PORT_WAIT_MS);
		power_off();
	}
	serve(cf, port);
	power_off();
}
