//! Processes, in one place: what `/proc` says of them (one parser of `/proc/<pid>/stat`),
//! signals to a process or a process group (through rustix), stopping what must stop
//! (SIGTERM, a grace period, SIGKILL), and the only `unsafe` of pwt's, each saying why it
//! holds: asking the kernel to end a child when pwt dies, and what a broken pipe does. On a
//! system without `/proc` the readings are empty and nothing is stopped.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// What `/proc/<pid>/stat` says of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `Z` (a zombie: dead, not yet reaped), …
    pub state: char,
    /// Its parent.
    pub ppid: u32,
    /// Its process group.
    pub pgid: u32,
    /// When it started, in clock ticks since boot: with the pid, its identity.
    pub start_time: u64,
    /// CPU time it has used, user and system, in clock ticks ([`ticks_per_second`]).
    pub cpu_ticks: u64,
    /// Resident memory, in pages ([`page_size`]).
    pub rss_pages: u64,
}

impl Stat {
    /// Parses a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and
    /// may hold spaces and parentheses itself, so fields are counted from the last `)`.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = &text[text.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(Self {
            state: f.first()?.chars().next()?,
            ppid: f.get(1)?.parse().ok()?,
            pgid: f.get(2)?.parse().ok()?,
            start_time: f.get(19)?.parse().ok()?,
            cpu_ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
            rss_pages: f.get(21)?.parse().ok()?,
        })
    }

    /// Dead, waiting for its parent to reap it.
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// The real user id of this process.
pub fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Clock ticks per second, the unit of [`Stat::cpu_ticks`] and [`Stat::start_time`].
pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// Bytes per page, the unit of [`Stat::rss_pages`].
pub fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// What `/proc/<pid>/stat` says of `pid`, if it can be read.
pub fn stat(pid: u32) -> Option<Stat> {
    Stat::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every pid `/proc` lists.
pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Its command name (`comm`).
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Its working directory. The kernel shows a deleted one as "<path> (deleted)"; a directory
/// really named so (it exists, and is the one the process is in) is itself.
pub fn cwd(pid: u32) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt as _;
    let proc_cwd = format!("/proc/{pid}/cwd");
    let link = std::fs::read_link(&proc_cwd).ok()?;
    let shown = link.to_string_lossy();
    let Some(stripped) = shown.strip_suffix(" (deleted)") else {
        return Some(link);
    };
    let same = match (std::fs::metadata(&link), std::fs::metadata(&proc_cwd)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    Some(if same {
        link.clone()
    } else {
        PathBuf::from(stripped)
    })
}

fn pid(n: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(n).ok()?)
}

/// True while a process with this pid exists (it may belong to another user; a zombie
/// counts, as for the parent waiting on it).
pub fn exists(n: u32) -> bool {
    let Some(p) = pid(n) else { return false };
    match rustix::process::test_kill_process(p) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// True while the process runs: it exists and is no zombie.
pub fn running(n: u32) -> bool {
    exists(n) && !stat(n).is_some_and(|s| s.is_zombie())
}

/// True while any process of the group `pgid` runs (zombies aside).
pub fn group_running(pgid: u32) -> bool {
    let Some(p) = pid(pgid) else { return false };
    if rustix::process::test_kill_process_group(p).is_err() {
        return false;
    }
    pids()
        .into_iter()
        .filter_map(stat)
        .any(|s| s.pgid == pgid && !s.is_zombie())
}

/// What to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Victim {
    /// One process.
    Process(u32),
    /// A process group, by its id.
    Group(u32),
}

impl Victim {
    fn signal(self, sig: Signal) {
        let _ = match self {
            Self::Process(n) => pid(n).map(|p| rustix::process::kill_process(p, sig)),
            Self::Group(n) => pid(n).map(|p| rustix::process::kill_process_group(p, sig)),
        };
    }

    fn running(self) -> bool {
        match self {
            Self::Process(n) => running(n),
            Self::Group(n) => group_running(n),
        }
    }
}

/// Sends SIGTERM to each, waits up to `grace` for them to end, then SIGKILL to what is left.
/// Returns those that outlived even that (another user's, say).
pub fn stop(victims: &[Victim], grace: Duration) -> Vec<Victim> {
    let alive: Vec<Victim> = victims.iter().copied().filter(|v| v.running()).collect();
    for v in &alive {
        v.signal(Signal::TERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && alive.iter().any(|v| v.running()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for v in alive.iter().filter(|v| v.running()) {
        v.signal(Signal::KILL);
    }
    std::thread::sleep(Duration::from_millis(50));
    alive.into_iter().filter(|v| v.running()).collect()
}

/// Runs `cmd` (stdin closed) and collects its output, waiting at most `within`: `None` when
/// it took longer (it is then stopped: SIGTERM, SIGKILL a second later).
pub fn output_within(
    cmd: &mut Command,
    within: Duration,
) -> std::io::Result<Option<std::process::Output>> {
    use std::io::Read as _;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let reader = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            terminate(&mut child, Duration::from_secs(1));
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Some(std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }))
}

/// Sends SIGTERM to a child and its process group (when it leads one), waits up to `grace`,
/// then SIGKILL; reaps it.
pub fn terminate(child: &mut std::process::Child, grace: Duration) {
    let group = Victim::Group(child.id());
    let me = Victim::Process(child.id());
    group.signal(Signal::TERM);
    me.signal(Signal::TERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    group.signal(Signal::KILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// Asks the kernel to send the child SIGTERM when pwt dies (Linux), so a killed pwt leaves
/// no git or hook going on with work nobody will finish.
pub fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: it makes one system call (prctl), which is,
        // allocates nothing and touches only the child's own settings.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(Signal::TERM))?;
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// This machine's name, as the kernel knows it (`localhost` when it has none).
pub fn hostname() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().trim().to_owned();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// What a write to a closed pipe does to this process: ends it quietly, as other tools do
/// (`pwt list | head`), or, with `ignore`, only fails that write (the proxy: a client that
/// goes away mid-answer must not end it).
pub fn on_broken_pipe(ignore: bool) {
    let disposition = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: sets one signal's disposition to the default or to "ignore", with no handler
    // of pwt's to run; called from the main thread before any other starts or whenever,
    // since neither disposition runs code.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, disposition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_hostile_command_name() {
        let line = "4242 (a) b (c)) S 1 4243 4243 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(
            Stat::parse(line),
            Some(Stat {
                state: 'S',
                ppid: 1,
                pgid: 4243,
                start_time: 987_654,
                cpu_ticks: 3,
                rss_pages: 10,
            })
        );
        assert_eq!(Stat::parse("garbage"), None);
    }

    #[test]
    fn a_group_left_by_its_leader_is_running_until_stopped() {
        use std::os::unix::process::CommandExt as _;
        // The leader exits at once; what it started runs on in its group.
        let mut leader = Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 30 & exit 0"])
            .process_group(0)
            .spawn()
            .expect("spawn");
        let pgid = leader.id();
        let _ = leader.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !group_running(pgid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(group_running(pgid), "the sleep runs on in the group");
        assert!(!running(pgid), "the leader is gone");
        let left = stop(&[Victim::Group(pgid)], Duration::from_millis(300));
        assert!(left.is_empty(), "{left:?}");
        assert!(!group_running(pgid));
    }
}
