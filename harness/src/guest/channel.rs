//! The guest channel: framed requests to the agent over the virtio-serial
//! unix socket. Every read has a deadline and every length is bounded by
//! the wire format; a garbled or silent guest is an error value, never a
//! panic or an unbounded wait.

use super::wire::{self, FrameHdr, Hello, RunResult, WireError, WireOp};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GuestError {
    /// Nothing arrived in time: the guest hangs or died without closing.
    #[error("the guest did not answer {what} within {secs:.1} s")]
    Timeout { what: &'static str, secs: f64 },
    /// The guest closed the channel.
    #[error("the guest closed the channel (it crashed, panicked or powered off)")]
    Disconnected,
    /// The guest sent bytes that are not a valid frame or payload.
    #[error("garbled guest frame: {0}")]
    Wire(#[from] WireError),
    /// The agent reported an error.
    #[error("the guest agent reported: {0}")]
    Agent(String),
    /// A valid frame of the wrong kind or sequence.
    #[error("unexpected guest frame: {0}")]
    Protocol(String),
    #[error("guest channel i/o: {0}")]
    Io(std::io::Error),
}

/// Where a channel's RUNs spent their time (for `cmafuzz bench`): counted, never acted on.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ChannelTimes {
    pub runs: u64,
    /// Encoding and writing the RUN frames.
    pub send: Duration,
    /// From the RUN written to the RESULT's header read: the guest's work, its reading of the
    /// RUN and writing of the RESULT, and the progress frames in between.
    pub answer: Duration,
    /// Reading the RESULT's payload after its header.
    pub receive: Duration,
    /// Decoding the RESULT payload.
    pub decode: Duration,
    /// Bytes of RESULT payload.
    pub result_bytes: u64,
}

impl ChannelTimes {
    /// Adds `o`'s figures to these.
    pub fn add(&mut self, o: &ChannelTimes) {
        self.runs += o.runs;
        self.send += o.send;
        self.answer += o.answer;
        self.receive += o.receive;
        self.decode += o.decode;
        self.result_bytes += o.result_bytes;
    }

    /// What came after `earlier` (an earlier reading of the same counters).
    pub fn since(&self, earlier: &ChannelTimes) -> ChannelTimes {
        ChannelTimes {
            runs: self.runs.saturating_sub(earlier.runs),
            send: self.send.saturating_sub(earlier.send),
            answer: self.answer.saturating_sub(earlier.answer),
            receive: self.receive.saturating_sub(earlier.receive),
            decode: self.decode.saturating_sub(earlier.decode),
            result_bytes: self.result_bytes.saturating_sub(earlier.result_bytes),
        }
    }
}

/// The host end of the channel.
pub struct Channel {
    stream: UnixStream,
    seq: u32,
    watchdog: Duration,
    /// Ops of the current (or last) RUN the agent reported done.
    done: u64,
    /// When the agent's last progress report of the current (or last) RUN came.
    last_report: Option<Instant>,
    /// Time spent per stage of its RUNs.
    pub times: ChannelTimes,
}

impl Channel {
    /// `watchdog`: how long a RUN may go without completing an op (the agent reports each RUN's
    /// progress every `CF_PROGRESS_MS`) before the guest counts as hung.
    pub fn new(stream: UnixStream, watchdog: Duration) -> Channel {
        Channel { stream, seq: 0, watchdog, done: 0, last_report: None, times: ChannelTimes::default() }
    }

    /// Reads exactly `buf.len()` bytes before `deadline`.
    fn read_exact_by(&mut self, buf: &mut [u8], deadline: Instant, what: &'static str) -> Result<(), GuestError> {
        let total = deadline.saturating_duration_since(Instant::now());
        let mut got = 0;
        while got < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(GuestError::Timeout { what, secs: total.as_secs_f64() });
            }
            self.stream.set_read_timeout(Some(left)).map_err(GuestError::Io)?;
            match self.stream.read(&mut buf[got..]) {
                Ok(0) => return Err(GuestError::Disconnected),
                Ok(n) => got += n,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return Err(GuestError::Timeout { what, secs: total.as_secs_f64() })
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Err(GuestError::Disconnected),
                Err(e) => return Err(GuestError::Io(e)),
            }
        }
        Ok(())
    }

    fn read_frame(&mut self, deadline: Instant, what: &'static str) -> Result<(FrameHdr, Vec<u8>), GuestError> {
        self.read_frame_timed(deadline, what).map(|(h, p, _)| (h, p))
    }

    /// `read_frame`, also returning when the header had arrived.
    fn read_frame_timed(
        &mut self,
        deadline: Instant,
        what: &'static str,
    ) -> Result<(FrameHdr, Vec<u8>, Instant), GuestError> {
        let mut hb = [0u8; wire::FRAME_HDR_SIZE];
        self.read_exact_by(&mut hb, deadline, what)?;
        let at = Instant::now();
        let hdr = FrameHdr::decode(&hb)?;
        // hdr.len is bounded by MAX_FRAME in decode.
        let mut payload = vec![0u8; hdr.len as usize];
        self.read_exact_by(&mut payload, deadline, what)?;
        Ok((hdr, payload, at))
    }

    /// Waits for the agent's hello.
    pub fn read_hello(&mut self, within: Duration) -> Result<Hello, GuestError> {
        let (hdr, payload) = self.read_frame(Instant::now() + within, "hello")?;
        match hdr.kind {
            wire::FRAME_HELLO => Ok(Hello::decode(&payload)?),
            wire::FRAME_ERROR => Err(GuestError::Agent(String::from_utf8_lossy(&payload).into_owned())),
            k => Err(GuestError::Protocol(format!("frame kind {k} before hello"))),
        }
    }

    /// The ops of the current or last RUN the agent reported done (by its last progress report,
    /// so a RUN that failed may have done more).
    pub fn ops_done(&self) -> u64 {
        self.done
    }

    /// Whether the agent was still reporting when the current or last RUN ended (a report
    /// within three report periods): then a RUN that timed out was stuck at op `ops_done()`,
    /// not in a guest that stopped scheduling, whose last report may be stale.
    pub fn reported_to_the_end(&self) -> bool {
        let period = Duration::from_millis(u64::from(wire::PROGRESS_MS));
        self.last_report.is_some_and(|t| t.elapsed() < 3 * period)
    }

    /// Sends one RUN and waits for its RESULT, however long the RUN, as long as the guest keeps
    /// completing ops: a RUN that completes none for the watchdog time is a timeout (a hang).
    pub fn run(&mut self, ops: &[WireOp]) -> Result<RunResult, GuestError> {
        self.run_flags(ops, 0)
    }

    /// `run` with `CF_RUN_*` flags (`CF_RUN_OBSERVE_EACH`: an observation after every op).
    pub fn run_flags(&mut self, ops: &[WireOp], flags: u32) -> Result<RunResult, GuestError> {
        let start = Instant::now();
        let payload = wire::encode_run_flags(ops, flags)?;
        self.seq = self.seq.wrapping_add(1);
        let hdr = FrameHdr { kind: wire::FRAME_RUN, len: payload.len() as u32, seq: self.seq };
        let mut frame = hdr.encode().to_vec();
        frame.extend_from_slice(&payload);
        self.stream.set_write_timeout(Some(self.watchdog)).map_err(GuestError::Io)?;
        self.stream.write_all(&frame).map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => GuestError::Disconnected,
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                GuestError::Timeout { what: "a run request (write)", secs: self.watchdog.as_secs_f64() }
            }
            _ => GuestError::Io(e),
        })?;
        // Progress, not total time: the deadline moves on whenever the RUN's op count does.
        let mut last_progress = Instant::now();
        let sent = last_progress;
        self.done = 0;
        self.last_report = None;
        let (rh, rp, header_at) = loop {
            let (h, p, at) = self.read_frame_timed(last_progress + self.watchdog, "a run request (no op completed)")?;
            if h.kind != wire::FRAME_PROGRESS {
                break (h, p, at);
            }
            let n = wire::decode_progress(&p)?;
            if h.seq == self.seq {
                self.last_report = Some(Instant::now());
                if n > self.done {
                    self.done = n;
                    last_progress = Instant::now();
                }
            }
        };
        if rh.seq != self.seq {
            return Err(GuestError::Protocol(format!("result seq {} for request {}", rh.seq, self.seq)));
        }
        let received = Instant::now();
        let t = &mut self.times;
        t.runs += 1;
        t.send += sent - start;
        t.answer += header_at - sent;
        t.receive += received - header_at;
        t.result_bytes += rp.len() as u64;
        match rh.kind {
            wire::FRAME_RESULT => {
                let r = wire::decode_result(&rp, ops.len());
                self.times.decode += received.elapsed();
                Ok(r?)
            }
            wire::FRAME_ERROR => Err(GuestError::Agent(String::from_utf8_lossy(&rp).into_owned())),
            k => Err(GuestError::Protocol(format!("frame kind {k} in answer to a run"))),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Fault injection against a fake guest on a socket pair: these test the
    //! host's defences, not the guest (the real guest is tested in tests/).
    use super::*;

    fn pair() -> (Channel, UnixStream) {
        let (a, b) = UnixStream::pair().expect("socketpair");
        (Channel::new(a, Duration::from_millis(300)), b)
    }

    fn frame(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = FrameHdr { kind, len: payload.len() as u32, seq }.encode().to_vec();
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn silent_guest_times_out() {
        let (mut ch, _peer) = pair();
        let e = ch.run(&[WireOp { kind: wire::OP_OBSERVE, ..Default::default() }]).expect_err("no answer");
        assert!(matches!(e, GuestError::Timeout { .. }), "{e}");
    }

    #[test]
    fn closed_guest_is_disconnected() {
        let (mut ch, peer) = pair();
        drop(peer);
        let e = ch.read_hello(Duration::from_secs(1)).expect_err("closed");
        assert!(matches!(e, GuestError::Disconnected), "{e}");
    }

    #[test]
    fn garbage_bytes_are_a_wire_error() {
        let (mut ch, mut peer) = pair();
        peer.write_all(&[0xAB; 64]).expect("write");
        let e = ch.read_hello(Duration::from_secs(1)).expect_err("garbage");
        assert!(matches!(e, GuestError::Wire(WireError::BadMagic(_))), "{e}");
    }

    #[test]
    fn truncated_frame_times_out_instead_of_blocking() {
        let (mut ch, mut peer) = pair();
        let f = frame(wire::FRAME_HELLO, 0, &[0u8; wire::HELLO_SIZE]);
        peer.write_all(&f[..40]).expect("write");
        let e = ch.read_hello(Duration::from_millis(300)).expect_err("truncated");
        assert!(matches!(e, GuestError::Timeout { .. }), "{e}");
    }

    #[test]
    fn agent_error_frame_is_reported_with_its_text() {
        let (mut ch, mut peer) = pair();
        peer.write_all(&frame(wire::FRAME_ERROR, 0, b"no /dev/cmafuzz")).expect("write");
        let e = ch.read_hello(Duration::from_secs(1)).expect_err("error frame");
        assert!(e.to_string().contains("no /dev/cmafuzz"), "{e}");
    }

    #[test]
    fn result_with_wrong_seq_is_a_protocol_error() {
        let (mut ch, mut peer) = pair();
        let mut body = 1u32.to_le_bytes().to_vec();
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&[0u8; wire::RESULT_SIZE]);
        peer.write_all(&frame(wire::FRAME_RESULT, 77, &body)).expect("write");
        let e = ch.run(&[WireOp { kind: wire::OP_OBSERVE, ..Default::default() }]).expect_err("seq");
        assert!(matches!(e, GuestError::Protocol(_)), "{e}");
    }

    /// A fake guest that, for the first RUN, sends `reports` progress frames `every` apart with
    /// the op counts `count(i)`, then (if `answer`) a one-op RESULT.
    fn slow_guest(
        mut peer: UnixStream,
        reports: u64,
        every: Duration,
        count: fn(u64) -> u64,
        answer: bool,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut hdr = [0u8; wire::FRAME_HDR_SIZE];
            if peer.read_exact(&mut hdr).is_err() {
                return;
            }
            let Ok(h) = FrameHdr::decode(&hdr) else { return };
            let mut payload = vec![0u8; h.len as usize];
            if peer.read_exact(&mut payload).is_err() {
                return;
            }
            for i in 0..reports {
                std::thread::sleep(every);
                if peer.write_all(&frame(wire::FRAME_PROGRESS, h.seq, &count(i).to_le_bytes())).is_err() {
                    return;
                }
            }
            if answer {
                let mut body = 1u32.to_le_bytes().to_vec();
                body.extend_from_slice(&0u32.to_le_bytes());
                body.extend_from_slice(&[0u8; wire::RESULT_SIZE]);
                let _ = peer.write_all(&frame(wire::FRAME_RESULT, h.seq, &body));
            }
        })
    }

    #[test]
    fn a_run_that_keeps_completing_ops_outlives_the_watchdog() {
        // Watchdog 300 ms; the guest takes 12 x 100 ms but reports a new op each time.
        let (mut ch, peer) = pair();
        let g = slow_guest(peer, 12, Duration::from_millis(100), |i| i + 1, true);
        let t = Instant::now();
        let r = ch.run(&[WireOp { kind: wire::OP_RESET, ..Default::default() }]);
        assert!(r.is_ok(), "{:?}", r.err());
        assert!(t.elapsed() >= Duration::from_millis(1200), "the RESULT came after the reports");
        g.join().expect("guest");
    }

    #[test]
    fn a_run_whose_op_count_stops_is_a_timeout_within_the_watchdog_despite_reports() {
        // The guest still reports (it schedules) but completes no op: an op that sleeps forever.
        let (mut ch, peer) = pair();
        let _g = slow_guest(peer, 100, Duration::from_millis(50), |_| 2, false);
        let t = Instant::now();
        let e = ch.run(&[WireOp { kind: wire::OP_RESET, ..Default::default() }]).expect_err("stuck");
        assert!(matches!(e, GuestError::Timeout { .. }), "{e}");
        let took = t.elapsed();
        assert!(took < Duration::from_millis(1500), "the watchdog is 300 ms from the last op, took {took:?}");
    }

    #[test]
    fn a_progress_report_of_another_run_is_not_progress() {
        let (mut ch, mut peer) = pair();
        for _ in 0..3 {
            peer.write_all(&frame(wire::FRAME_PROGRESS, 999, &7u64.to_le_bytes())).expect("write");
        }
        let e = ch.run(&[WireOp { kind: wire::OP_RESET, ..Default::default() }]).expect_err("no answer");
        assert!(matches!(e, GuestError::Timeout { .. }), "{e}");
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let (mut ch, mut peer) = pair();
        let mut h = FrameHdr { kind: wire::FRAME_HELLO, len: 0, seq: 0 }.encode();
        h[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        peer.write_all(&h).expect("write");
        let e = ch.read_hello(Duration::from_secs(1)).expect_err("too big");
        assert!(matches!(e, GuestError::Wire(WireError::TooBig { .. })), "{e}");
    }
}
