//! What the machine spends on each worktree: the CPU time and memory of everything that
//! belongs to it, read from `/proc` in one pass. A process belongs to a worktree when it is
//! in a process group `pwt dev` started for it, works inside its directory, listens on one of
//! its ports, or descends from a process that does; pwt itself and the processes that started
//! it are left out. Where there is no `/proc`, every worktree uses nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use pwt_alloc::proc;

/// Who a measured worktree is: what makes a process its own.
#[derive(Clone, Debug, Default)]
pub struct Claim {
    /// Its root.
    pub root: PathBuf,
    /// Its ports.
    pub ports: Vec<u16>,
    /// The process groups `pwt dev` started for it.
    pub groups: Vec<u32>,
}

/// One process counted for a worktree.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProcessUse {
    /// Its pid.
    pub pid: u32,
    /// Its command name.
    pub name: String,
    /// Why it counts: `pwt dev`, `works in it`, `listens on <port>`, `child of <pid>`.
    pub why: String,
    /// CPU time used so far, in clock ticks.
    #[serde(skip)]
    pub cpu_ticks: u64,
    /// CPU time used so far, in milliseconds.
    pub cpu_ms: u64,
    /// Resident memory, in bytes.
    pub memory_bytes: u64,
}

/// What one worktree uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Usage {
    /// How many processes.
    pub processes: usize,
    /// Their CPU time so far, in milliseconds (a live rate needs two readings: `pwt top`).
    pub cpu_ms: u64,
    /// Their resident memory, in bytes (shared pages counted in each).
    pub memory_bytes: u64,
    /// Each, the biggest first.
    pub each: Vec<ProcessUse>,
}

/// `3 procs  212 MiB  4.2 s CPU`, as `pwt list` and `pwt status` show it.
impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.processes == 1 { "" } else { "s" };
        write!(
            f,
            "{} proc{plural}  {}  {:.1} s CPU",
            self.processes,
            human_bytes(self.memory_bytes),
            self.cpu_ms as f64 / 1000.0
        )
    }
}

/// `212 MiB`: `n` bytes in the largest binary unit up to GiB that keeps them at 1 or more.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// A process as `/proc` shows it.
struct Seen {
    stat: proc::Stat,
    cwd: Option<PathBuf>,
}

/// Reads every process once and sums what each of `claims` uses, by root.
pub fn measure(claims: &[Claim]) -> BTreeMap<PathBuf, Usage> {
    let spared = crate::processes::ancestors();
    let seen: HashMap<u32, Seen> = proc::pids()
        .into_iter()
        .filter(|p| !spared.contains(p))
        .filter_map(|pid| {
            let stat = proc::stat(pid).filter(|s| !s.is_zombie())?;
            Some((
                pid,
                Seen {
                    stat,
                    cwd: proc::cwd(pid),
                },
            ))
        })
        .collect();
    let owner = attribute(claims, &seen);
    let (tick_ms, page) = (1000 / proc::ticks_per_second().max(1), proc::page_size());
    let mut out: BTreeMap<PathBuf, Usage> = claims
        .iter()
        .map(|c| (c.root.clone(), Usage::default()))
        .collect();
    for (pid, (i, why)) in owner {
        let Some(s) = seen.get(&pid) else { continue };
        let u = out.entry(claims[i].root.clone()).or_default();
        u.processes += 1;
        u.cpu_ms += s.stat.cpu_ticks * tick_ms;
        u.memory_bytes += s.stat.rss_pages * page;
        u.each.push(ProcessUse {
            pid,
            name: proc::comm(pid),
            why,
            cpu_ticks: s.stat.cpu_ticks,
            cpu_ms: s.stat.cpu_ticks * tick_ms,
            memory_bytes: s.stat.rss_pages * page,
        });
    }
    for u in out.values_mut() {
        u.each
            .sort_by(|a, b| b.memory_bytes.cmp(&a.memory_bytes).then(a.pid.cmp(&b.pid)));
    }
    out
}

/// Which claim each process belongs to, and why: groups first, then directories (the
/// deepest root wins, for worktrees inside others), then listeners, then descendants.
fn attribute(claims: &[Claim], seen: &HashMap<u32, Seen>) -> HashMap<u32, (usize, String)> {
    let mut owner: HashMap<u32, (usize, String)> = HashMap::new();
    let groups: HashMap<u32, usize> = claims
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.groups.iter().map(move |g| (*g, i)))
        .collect();
    let mut roots: Vec<(usize, &Path)> = claims
        .iter()
        .enumerate()
        .map(|(i, c)| (i, c.root.as_path()))
        .collect();
    roots.sort_by_key(|(_, r)| std::cmp::Reverse(r.components().count()));
    for (pid, s) in seen {
        if let Some(i) = groups.get(&s.stat.pgid) {
            owner.insert(*pid, (*i, "pwt dev".to_owned()));
        } else if let Some(cwd) = &s.cwd
            && let Some((i, _)) = roots.iter().find(|(_, r)| cwd.starts_with(r))
        {
            owner.insert(*pid, (*i, "works in it".to_owned()));
        }
    }
    let ports: HashMap<u16, usize> = claims
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.ports.iter().map(move |p| (*p, i)))
        .collect();
    let listening = crate::processes::listening_sockets(&ports.keys().copied().collect::<Vec<_>>());
    if !listening.is_empty() {
        let unowned: Vec<u32> = seen
            .keys()
            .filter(|p| !owner.contains_key(p))
            .copied()
            .collect();
        for pid in unowned {
            if let Some(port) = crate::processes::listens_on(pid, &listening)
                && let Some(i) = ports.get(&port)
            {
                owner.insert(pid, (*i, format!("listens on {port}")));
            }
        }
    }
    descendants(seen, &mut owner);
    owner
}

/// Gives each process without an owner its nearest owned ancestor's.
fn descendants(seen: &HashMap<u32, Seen>, owner: &mut HashMap<u32, (usize, String)>) {
    let mut found: Vec<(u32, (usize, String))> = Vec::new();
    for pid in seen.keys().filter(|p| !owner.contains_key(p)) {
        let mut visited = HashSet::new();
        let mut up = seen.get(pid).map(|s| s.stat.ppid);
        while let Some(parent) = up.filter(|p| *p > 1 && visited.insert(*p)) {
            if let Some((i, _)) = owner.get(&parent) {
                found.push((*pid, (*i, format!("child of {parent}"))));
                break;
            }
            up = seen.get(&parent).map(|s| s.stat.ppid);
        }
    }
    owner.extend(found);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn usage_reads_in_processes_binary_units_and_seconds() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1 KiB");
        assert_eq!(human_bytes(212 * 1024 * 1024 + 1), "212 MiB");
        assert_eq!(human_bytes(u64::MAX), "17179869184 GiB");
        let one = Usage {
            processes: 1,
            cpu_ms: 4_250,
            memory_bytes: 3 << 30,
            each: Vec::new(),
        };
        assert_eq!(one.to_string(), "1 proc  3 GiB  4.2 s CPU");
        let three = Usage {
            processes: 3,
            ..one
        };
        assert_eq!(three.to_string(), "3 procs  3 GiB  4.2 s CPU");
    }

    #[test]
    fn a_process_working_in_a_worktree_and_its_child_elsewhere_count_for_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let other = tempfile::tempdir().expect("tempdir");
        // A shell in the worktree whose child works elsewhere (a dev server started from
        // the worktree that changed directory).
        let mut child = Command::new("sh")
            .current_dir(&root)
            .arg("-c")
            .arg(format!("cd {} && sleep 30 & wait", other.path().display()))
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let claims = [Claim {
            root: root.clone(),
            ..Claim::default()
        }];
        let usage = measure(&claims);
        let _ = child.kill();
        let _ = child.wait();
        let u = &usage[&root];
        assert!(u.processes >= 2, "{u:?}");
        assert!(u.memory_bytes > 0, "{u:?}");
        assert!(
            u.each
                .iter()
                .any(|p| p.pid == child.id() && p.why == "works in it"),
            "{u:?}"
        );
        assert!(
            u.each
                .iter()
                .any(|p| p.name == "sleep" && p.why.starts_with("child of")),
            "{u:?}"
        );
    }
}
