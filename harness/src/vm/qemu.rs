//! The qemu runner: boots built artifacts (image + initramfs) with no
//! network, the console captured to a log file and the guest channel on a
//! unix socket in a private temp dir. It knows nothing of builds. The VM is
//! killed on drop, and qemu is told to die with its parent, so a killed
//! harness leaves no qemu behind.

use crate::guest::wire::Hello;
use crate::guest::{Channel, GuestError};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
    pub op_timeout: Duration,
}

/// A running VM whose agent has said hello.
pub struct Vm {
    child: Child,
    dir: tempfile::TempDir,
    pub chan: Channel,
    pub hello: Hello,
    /// From spawning qemu to the agent's hello.
    pub boot_time: Duration,
    /// Bytes of the console [`Vm::new_console`] has handed out (always a line start).
    console_read: u64,
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
    pub fn console_path(&self) -> PathBuf {
        self.dir.path().join("console.log")
    }

    /// The last `n` lines of the console.
    pub fn console_tail(&self, n: usize) -> String {
        tail(&self.console_path(), n)
    }

    /// The whole console so far (bounded to the last 1 MiB).
    pub fn console(&self) -> String {
        read_bounded(&self.console_path(), 1 << 20)
    }

    /// The console lines printed since the last call (at most the last [`NEW_CONSOLE_MAX`]
    /// bytes of them). A line still being written is left for the next call, unless `all`
    /// (the VM is going away).
    pub fn new_console(&mut self, all: bool) -> String {
        let (bytes, start) = read_from(&self.console_path(), self.console_read, NEW_CONSOLE_MAX);
        let keep = if all { bytes.len() } else { bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) };
        self.console_read = start + keep as u64;
        String::from_utf8_lossy(&bytes[..keep]).into_owned()
    }

    /// Boots `spec` and waits for the agent's hello.
    pub fn boot(spec: &VmSpec) -> Result<Vm, VmError> {
        let start = Instant::now();
        let dir = tempfile::Builder::new().prefix("cmafuzz-vm-").tempdir().map_err(io("creating the VM temp dir"))?;
        let sock = dir.path().join("chan.sock");
        let console = dir.path().join("console.log");
        let qemu_log = dir.path().join("qemu.log");
        let listener = UnixListener::bind(&sock).map_err(io(format!("binding {}", sock.display())))?;
        listener.set_nonblocking(true).map_err(io("making the channel socket non-blocking"))?;
        let log = std::fs::File::create(&qemu_log).map_err(io("creating qemu.log"))?;
        let log2 = log.try_clone().map_err(io("duplicating qemu.log"))?;
        let mut cmd = qemu_command(spec);
        cmd.arg("-chardev")
            .arg(format!("file,id=con,path={}", console.display()))
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

        // qemu connects to us as it starts; wait for it or for its death.
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(VmError::Io { what: "accepting the guest channel".into(), source: e }),
            }
            guard.check_alive(&qemu_log, &console)?;
            if Instant::now() >= deadline {
                return Err(VmError::BootTimeout { secs: spec.boot_timeout.as_secs(), console: tail(&console, 30) });
            }
            poll_readable(&listener, Duration::from_millis(20));
        };
        stream.set_nonblocking(false).map_err(io("configuring the guest channel"))?;
        let mut chan = Channel::new(stream, spec.op_timeout);
        let hello = match chan.read_hello(deadline.saturating_duration_since(Instant::now())) {
            Ok(h) => h,
            Err(GuestError::Timeout { .. }) => {
                return Err(VmError::BootTimeout { secs: spec.boot_timeout.as_secs(), console: tail(&console, 30) })
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
        Ok(Vm { child, dir, chan, hello, boot_time: start.elapsed(), console_read: 0 })
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
    }
}

/// Kills qemu if boot fails half-way.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn check_alive(&mut self, qemu_log: &Path, console: &Path) -> Result<(), VmError> {
        if let Some(c) = self.0.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                let q = tail(qemu_log, 10);
                let con = tail(console, 20);
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

fn poll_readable(l: &UnixListener, t: Duration) {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd { fd: l.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe {
        libc::poll(&mut pfd, 1, t.as_millis().min(i32::MAX as u128) as i32);
    }
}

/// Most console bytes [`Vm::new_console`] reads at once (a kernel printing more between two
/// programs loses the oldest).
pub const NEW_CONSOLE_MAX: u64 = 4 << 20;

/// The bytes of `p` from `pos` to its end, at most the last `max` of them, and the offset they
/// start at.
fn read_from(p: &Path, pos: u64, max: u64) -> (Vec<u8>, u64) {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(p) else { return (Vec::new(), pos) };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len <= pos {
        return (Vec::new(), pos);
    }
    let start = pos.max(len.saturating_sub(max));
    if f.seek(SeekFrom::Start(start)).is_err() {
        return (Vec::new(), pos);
    }
    let mut b = Vec::new();
    let _ = f.take(len - start).read_to_end(&mut b);
    (b, start)
}

fn read_bounded(p: &Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(p) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > max {
        let _ = f.seek(SeekFrom::Start(len - max));
    }
    let mut b = Vec::new();
    let _ = f.take(max).read_to_end(&mut b);
    String::from_utf8_lossy(&b).into_owned()
}

/// The last `n` lines of a log file (bounded read).
pub fn tail(p: &Path, n: usize) -> String {
    let text = read_bounded(p, 256 * 1024);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
