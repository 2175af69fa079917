//! The qemu runner: boots built artifacts (image + initramfs) with no
//! network, the console on one unix socket and the guest channel on another,
//! both in a private temp dir. It knows nothing of builds. The VM is
//! killed on drop, and qemu is told to die with its parent, so a killed
//! harness leaves no qemu behind.
//!
//! The console is read by the harness (a thread, and every reader of it first drains what is
//! waiting), written to `console.log` bounded on disk ([`disk::RotatingLog`]: past
//! [`CONSOLE_ROTATE_AT`] it moves to `console.log.1`), and kept in memory until
//! [`Vm::new_console`] hands it out, so each line is handed out once across rotations.

use crate::disk;
use crate::guest::wire::Hello;
use crate::guest::{Channel, GuestError};
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum VmError {
    #[error("`{0}` not found: install it with `apt-get install qemu-system-arm` (or run `cmafuzz doctor`)")]
    MissingQemu(String),
    #[error("qemu exited ({status}) before the guest was ready; {log}")]
    QemuExited { status: String, log: String },
    #[error("the guest was not ready after {secs} s; console tail:\n{console}")]
    BootTimeout { secs: u64, console: String },
    #[error("guest channel at boot: {0}")]
    Guest(#[from] GuestError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
    let what = what.into();
    move |source| VmError::Io { what, source }
}

/// Everything qemu needs, and nothing about how it was built.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub qemu: String,
    pub machine: String,
    pub cpu: String,
    pub memory_mib: u32,
    pub smp: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    /// A device tree to boot with instead of qemu's own (targets with extra CMA pools).
    pub dtb: Option<PathBuf>,
    pub boot_timeout: Duration,
    /// How long a RUN may go without completing an op before the guest counts as hung.
    pub watchdog: Duration,
}

/// A running VM whose agent has said hello.
pub struct Vm {
    child: Child,
    /// Holds the sockets and the console log; removed when the VM goes.
    _dir: tempfile::TempDir,
    pub chan: Channel,
    pub hello: Hello,
    /// From spawning qemu to the agent's hello.
    pub boot_time: Duration,
    console: Console,
}

/// qemu for `spec` without any serial port or channel (the caller adds those): machine, cpu,
/// memory, kernel, initrd, command line, device tree; no network, display or monitor; stdin
/// closed; and `PR_SET_PDEATHSIG`, so qemu never outlives the harness.
pub fn qemu_command(spec: &VmSpec) -> Command {
    let mut cmd = Command::new(&spec.qemu);
    cmd.args(["-M", &spec.machine, "-cpu", &spec.cpu])
        .args(["-m", &spec.memory_mib.to_string(), "-smp", &spec.smp.to_string()])
        .args(["-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&spec.kernel)
        .arg("-initrd")
        .arg(&spec.initrd)
        .args(["-append", &spec.cmdline]);
    if let Some(dtb) = &spec.dtb {
        cmd.arg("-dtb").arg(dtb);
    }
    cmd.stdin(Stdio::null());
    // SAFETY: prctl is async-signal-safe; it only sets a flag on the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

impl Vm {
    /// The console log (the part before the last rotation is in `console.log.1`).
    pub fn console_path(&self) -> PathBuf {
        self.console.path()
    }

    /// The last `n` lines of the console.
    pub fn console_tail(&self, n: usize) -> String {
        self.console.tail(n)
    }

    /// The whole console so far (bounded to the last 1 MiB).
    pub fn console(&self) -> String {
        self.console.last(1 << 20)
    }

    /// The console lines printed since the last call (at most the last [`NEW_CONSOLE_MAX`]
    /// bytes of them). A line still being written is left for the next call, unless `all`
    /// (the VM is going away).
    pub fn new_console(&mut self, all: bool) -> String {
        self.console.take_new(all)
    }

    /// Boots `spec` and waits for the agent's hello.
    pub fn boot(spec: &VmSpec) -> Result<Vm, VmError> {
        let start = Instant::now();
        let dir = tempfile::Builder::new().prefix("cmafuzz-vm-").tempdir().map_err(io("creating the VM temp dir"))?;
        let sock = dir.path().join("chan.sock");
        let con_sock = dir.path().join("console.sock");
        let mut console = Console::create(&dir.path().join("console.log"), CONSOLE_ROTATE_AT)
            .map_err(io("creating console.log in the VM temp dir"))?;
        let qemu_log = dir.path().join("qemu.log");
        let listener = UnixListener::bind(&sock).map_err(io(format!("binding {}", sock.display())))?;
        listener.set_nonblocking(true).map_err(io("making the channel socket non-blocking"))?;
        let con_listener = UnixListener::bind(&con_sock).map_err(io(format!("binding {}", con_sock.display())))?;
        con_listener.set_nonblocking(true).map_err(io("making the console socket non-blocking"))?;
        let log = std::fs::File::create(&qemu_log).map_err(io("creating qemu.log"))?;
        let log2 = log.try_clone().map_err(io("duplicating qemu.log"))?;
        let mut cmd = qemu_command(spec);
        cmd.arg("-chardev")
            .arg(format!("socket,id=con,path={}", con_sock.display()))
            .args(["-serial", "chardev:con"])
            .args(["-device", "virtio-serial-device"])
            .arg("-chardev")
            .arg(format!("socket,id=ch0,path={}", sock.display()))
            .args(["-device", "virtserialport,chardev=ch0,name=cmafuzz"])
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        let child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => VmError::MissingQemu(spec.qemu.clone()),
            _ => VmError::Io { what: format!("starting {}", spec.qemu), source: e },
        })?;
        let mut guard = ChildGuard(Some(child));
        let deadline = start + spec.boot_timeout;

        // qemu connects to both sockets as it starts; wait for both, or for its death.
        let mut con_attached = false;
        let mut chan_stream = None;
        let stream = loop {
            if !con_attached {
                match con_listener.accept() {
                    Ok((s, _)) => {
                        console.attach(s).map_err(io("reading the console socket"))?;
                        con_attached = true;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(VmError::Io { what: "accepting the console".into(), source: e }),
                }
            }
            if chan_stream.is_none() {
                match listener.accept() {
                    Ok((s, _)) => chan_stream = Some(s),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(VmError::Io { what: "accepting the guest channel".into(), source: e }),
                }
            }
            if con_attached {
                if let Some(s) = chan_stream.take() {
                    break s;
                }
            }
            guard.check_alive(&qemu_log, &console)?;
            if Instant::now() >= deadline {
                return Err(VmError::BootTimeout { secs: spec.boot_timeout.as_secs(), console: console.tail(30) });
            }
            poll_readable(&[listener.as_raw_fd(), con_listener.as_raw_fd()], Duration::from_millis(20));
        };
        stream.set_nonblocking(false).map_err(io("configuring the guest channel"))?;
        let mut chan = Channel::new(stream, spec.watchdog);
        let hello = match chan.read_hello(deadline.saturating_duration_since(Instant::now())) {
            Ok(h) => h,
            Err(GuestError::Timeout { .. }) => {
                return Err(VmError::BootTimeout { secs: spec.boot_timeout.as_secs(), console: console.tail(30) })
            }
            Err(GuestError::Disconnected) => {
                // Prefer qemu's own reason if it already died.
                guard.check_alive(&qemu_log, &console)?;
                return Err(VmError::Guest(GuestError::Disconnected));
            }
            Err(e) => return Err(e.into()),
        };
        let child = guard
            .0
            .take()
            .ok_or_else(|| VmError::Io { what: "qemu child".into(), source: std::io::Error::other("lost") })?;
        Ok(Vm { child, _dir: dir, chan, hello, boot_time: start.elapsed(), console })
    }

    /// qemu's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether qemu is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // qemu is gone, so the console reader sees the end of its socket and returns.
        self.console.stop();
    }
}

/// Kills qemu if boot fails half-way.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn check_alive(&mut self, qemu_log: &Path, console: &Console) -> Result<(), VmError> {
        if let Some(c) = self.0.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                let q = tail(qemu_log, 10);
                let con = console.tail(20);
                return Err(VmError::QemuExited {
                    status: status.to_string(),
                    log: format!("qemu said: {}\nconsole tail:\n{con}", if q.is_empty() { "nothing" } else { &q }),
                });
            }
        }
        Ok(())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until one of `fds` is readable, or `t`.
fn poll_readable(fds: &[RawFd], t: Duration) {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|fd| libc::pollfd { fd: *fd, events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfds for the duration of the call.
    unsafe {
        libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, t.as_millis().min(i32::MAX as u128) as i32);
    }
}

/// Most console bytes [`Vm::new_console`] hands out at once (a kernel printing more between two
/// programs loses the oldest).
pub const NEW_CONSOLE_MAX: u64 = 4 << 20;

/// Where `console.log` rotates to `console.log.1`: at most about twice this is on disk per VM,
/// and at least the last this many bytes (what [`Vm::console`] returns) are always there.
pub const CONSOLE_ROTATE_AT: u64 = 1 << 20;

/// One VM's console: the rotating log on disk, the bytes not handed out yet, and the socket
/// they come from, all behind one lock. The reader thread and every reader of the console drain
/// the socket under that lock, so whatever qemu wrote before a call is in what it sees.
struct Console {
    sink: Arc<Mutex<Sink>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    path: PathBuf,
}

struct Sink {
    log: disk::RotatingLog,
    /// Console bytes not handed out yet (at most the last [`NEW_CONSOLE_MAX`]).
    pending: Vec<u8>,
    stream: Option<UnixStream>,
    eof: bool,
}

impl Sink {
    fn feed(&mut self, bytes: &[u8]) {
        // A full disk loses log lines, as qemu's own file chardev would; the verdicts still
        // see them through `pending`.
        let _ = self.log.write(bytes);
        self.pending.extend_from_slice(bytes);
        let max = NEW_CONSOLE_MAX as usize;
        if self.pending.len() > max {
            self.pending.drain(..self.pending.len() - max);
        }
    }

    /// Reads everything waiting on the socket, without blocking.
    fn drain(&mut self) {
        let Some(stream) = self.stream.as_mut() else { return };
        let mut buf = [0u8; 64 * 1024];
        let mut got = Vec::new();
        while !self.eof {
            match stream.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => self.eof = true,
            }
        }
        self.feed(&got);
    }
}

impl Console {
    fn create(path: &Path, rotate_at: u64) -> std::io::Result<Console> {
        let log = disk::RotatingLog::create(path, rotate_at)?;
        Ok(Console {
            sink: Arc::new(Mutex::new(Sink { log, pending: Vec::new(), stream: None, eof: false })),
            stop: Arc::new(AtomicBool::new(false)),
            reader: None,
            path: path.to_path_buf(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Sink> {
        // A panic elsewhere while holding it leaves bytes, not broken invariants.
        self.sink.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts reading the console from `stream` (qemu's end of the console socket).
    fn attach(&mut self, stream: UnixStream) -> std::io::Result<()> {
        stream.set_nonblocking(true)?;
        let fd = stream.as_raw_fd();
        self.lock().stream = Some(stream);
        let (sink, stop) = (self.sink.clone(), self.stop.clone());
        // The stream (and so `fd`) lives in `sink` until the last Arc goes, after this thread.
        let h = std::thread::Builder::new().name("vm-console".into()).spawn(move || loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            poll_readable(&[fd], Duration::from_millis(100));
            let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
            s.drain();
            if s.eof {
                return;
            }
        })?;
        self.reader = Some(h);
        Ok(())
    }

    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    fn take_new(&self, all: bool) -> String {
        let mut s = self.lock();
        s.drain();
        let keep = if all { s.pending.len() } else { s.pending.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) };
        let out: Vec<u8> = s.pending.drain(..keep).collect();
        String::from_utf8_lossy(&out).into_owned()
    }

    fn last(&self, max: u64) -> String {
        let mut s = self.lock();
        s.drain();
        String::from_utf8_lossy(&disk::read_tail(s.log.path(), max)).into_owned()
    }

    fn tail(&self, n: usize) -> String {
        let mut s = self.lock();
        s.drain();
        disk::tail(s.log.path(), n)
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `n` lines of a log file (bounded read; a rotated log is followed into its `.1`).
pub fn tail(p: &Path, n: usize) -> String {
    disk::tail(p, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn console_lines_are_handed_out_once_each_across_rotation_and_the_log_stays_bounded() {
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join("console.log");
        let mut con = Console::create(&path, 4096).expect("create");
        let (mut qemu, ours) = UnixStream::pair().expect("socketpair");
        con.attach(ours).expect("attach");
        let mut sent = String::new();
        let mut got = String::new();
        for i in 0..2000 {
            let line = format!("[{i:6}] cma: a console line of some length\n");
            // Halves: a call between them must leave the half line for the next call.
            let (a, b) = line.split_at(7);
            qemu.write_all(a.as_bytes()).expect("send");
            if i % 7 == 0 {
                got.push_str(&con.take_new(false));
            }
            qemu.write_all(b.as_bytes()).expect("send");
            sent.push_str(&line);
            if i % 13 == 0 {
                got.push_str(&con.take_new(false));
                assert!(got.is_empty() || got.ends_with('\n'), "only whole lines");
            }
        }
        qemu.write_all(b"half a line at the end").expect("send");
        got.push_str(&con.take_new(false));
        assert_eq!(got, sent, "every complete line exactly once, in order");
        drop(qemu);
        assert_eq!(con.take_new(true), "half a line at the end", "the rest when the VM goes");
        assert_eq!(con.take_new(true), "");
        let cur = std::fs::metadata(&path).expect("console.log").len();
        let old = std::fs::metadata(disk::rotated_path(&path)).expect("console.log.1 after rotation").len();
        assert!(cur <= 2 * 4096 && old <= 2 * 4096, "bounded: {cur} {old}");
        assert!(std::fs::read_to_string(&path).expect("read").starts_with(disk::ROTATED_NOTE));
        let last = con.last(4096);
        assert!(last.len() >= 4096 - 64 && format!("{sent}half a line at the end").ends_with(&last), "{last}");
        assert_eq!(con.tail(1), "half a line at the end");
        con.stop();
    }
}
