//! A fake VM for host-side fault-injection tests, never instead of the real path: a thread on
//! the other end of a socket pair speaks the agent's protocol over one CMA area with an empty
//! bitmap (its mapping tables always "truncated", so only outcomes and bitmaps are judged), and
//! answers every op as the driver does for an op that succeeds. A RUN holding a `cma_alloc` of
//! [`HANG_COUNT`] pages hangs the way a kernel does that keeps scheduling but completes no op:
//! progress reports keep coming with a count that no longer moves, and no RESULT.

use super::{Instance, Launcher, VmError, VmSpec};
use crate::guest::wire::{self, FrameHdr, Hello, RunResult, WireArea, WireObs, WireResult};
use crate::guest::Channel;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The `cma_alloc` count the fake guest hangs on (the real fixture's, too).
pub const HANG_COUNT: u64 = 4246;

/// The fake's one area: arm32-6.1's default area at boot (its atomic pool holds the first 64
/// pages).
pub fn area() -> WireArea {
    let mut words = vec![0; 256];
    words[0] = u32::MAX;
    words[1] = u32::MAX;
    WireArea {
        name: "reserved".into(),
        count: 8192,
        available: None,
        order_per_bit: 0,
        activated: true,
        ranges: vec![wire::WireRange { base_pfn: 0x7e000, count: 8192, words }],
    }
}

/// Boots fake guests and counts the boots.
#[derive(Clone, Default)]
pub struct FakeLauncher {
    pub boots: Arc<AtomicU32>,
}

impl Launcher for FakeLauncher {
    fn boot(&self, spec: &VmSpec) -> Result<Box<dyn Instance>, VmError> {
        let (host, guest) = UnixStream::pair().map_err(|source| VmError::Io { what: "socketpair".into(), source })?;
        let hello = hello();
        let mut g = guest;
        let h = FrameHdr { kind: wire::FRAME_HELLO, len: 0, seq: 0 };
        send(&mut g, h, &hello.encode()).map_err(|source| VmError::Io { what: "fake hello".into(), source })?;
        std::thread::spawn(move || serve(g));
        let mut chan = Channel::new(host, spec.watchdog);
        let hello = chan.read_hello(spec.boot_timeout)?;
        self.boots.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FakeVm { chan, hello }))
    }
}

struct FakeVm {
    chan: Channel,
    hello: Hello,
}

impl Instance for FakeVm {
    fn chan(&mut self) -> &mut Channel {
        &mut self.chan
    }
    fn hello(&self) -> &Hello {
        &self.hello
    }
    fn boot_time(&self) -> Duration {
        Duration::ZERO
    }
    fn pid(&self) -> Option<u32> {
        None
    }
    fn console(&self) -> String {
        String::new()
    }
    fn console_tail(&self, _n: usize) -> String {
        String::new()
    }
    fn new_console(&mut self, _all: bool) -> String {
        String::new()
    }
}

fn hello() -> Hello {
    Hello {
        version: wire::VERSION.into(),
        max_frame: wire::MAX_FRAME,
        max_ops: wire::MAX_OPS,
        max_handles: wire::MAX_HANDLES,
        arch: wire::ARCH_ARM32,
        page_shift: 12,
        cma_alignment: 8,
        pageblock_order: 10,
        max_low_pfn: 0x70000,
        max_pfn: 0x80000,
        release: "fake".into(),
        attr_regs: 0,
        pkmap_slots: 0,
        ops_ok: u32::MAX,
        agent_flags: 0,
        max_kcov: 0,
    }
}

fn send(s: &mut UnixStream, mut h: FrameHdr, payload: &[u8]) -> std::io::Result<()> {
    h.len = payload.len() as u32;
    let mut f = h.encode().to_vec();
    f.extend_from_slice(payload);
    s.write_all(&f)
}

/// Answers RUN frames until the host goes away.
fn serve(mut s: UnixStream) {
    loop {
        let mut hb = [0u8; wire::FRAME_HDR_SIZE];
        if s.read_exact(&mut hb).is_err() {
            return;
        }
        let Ok(h) = FrameHdr::decode(&hb) else { return };
        let mut p = vec![0u8; h.len as usize];
        if s.read_exact(&mut p).is_err() {
            return;
        }
        let Ok((_, ops)) = wire::decode_run(&p) else { return };
        let reply = FrameHdr { kind: wire::FRAME_RESULT, len: 0, seq: h.seq };
        if let Some(at) = ops.iter().position(|o| o.kind == wire::OP_CMA_ALLOC && o.a == HANG_COUNT) {
            // Scheduling, but stuck: the count stays at the ops done before the hung one.
            let stuck = FrameHdr { kind: wire::FRAME_PROGRESS, len: 0, seq: h.seq };
            while send(&mut s, stuck, &wire::encode_progress(at as u64)).is_ok() {
                std::thread::sleep(Duration::from_millis(20));
            }
            return;
        }
        let results = ops
            .iter()
            .map(|o| WireResult { status: wire::ST_OK, kind: o.kind, pfn: 0, pages: 0, aux: 0, stale_refs: 0 })
            .collect();
        let observations = ops
            .iter()
            .enumerate()
            .filter(|(_, o)| o.kind == wire::OP_OBSERVE)
            .map(|(i, _)| WireObs {
                op_index: i as u32,
                cma_free_pages: 8192,
                areas: vec![area()],
                maps: vec![],
                flags: wire::OBS_MAPS_TRUNCATED,
                pkmap_last: wire::PKMAP_UNKNOWN,
            })
            .collect();
        let r = RunResult { results, observations, kcov: None };
        if send(&mut s, reply, &wire::encode_result(&r)).is_err() {
            return;
        }
    }
}
