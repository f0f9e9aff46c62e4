//! `[limits]`: what a worktree's `[processes]` may use together, through the kernel's
//! control groups, and the free memory below which `pwt dev` starts nothing.
//!
//! A worktree's processes go into a group of their own, `pwt-<hash of repository and slug>`,
//! made under the group pwt runs in: with cgroup v2 where that group delegates the memory
//! and cpu controllers to pwt (`cgroup.subtree_control`, writable), else with the v1
//! `memory` and `cpu` hierarchies where pwt may write them. Where neither is possible (a
//! v2 group not delegated, as under most desktop sessions: run pwt inside a delegated
//! scope, e.g. `systemd-run --user --scope -p Delegate=yes`), the processes start without
//! limits and a warning says why. The wrapper shell moves itself into the group before it
//! runs the command (writing `0` to `cgroup.procs`), so everything it starts is inside.

use std::path::{Path, PathBuf};

use crate::project::Project;

/// Where a worktree's processes go: the `cgroup.procs` file of each hierarchy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Placement {
    /// Each group's `cgroup.procs`.
    pub procs: Vec<PathBuf>,
}

/// The period the CPU quota is counted over, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

impl Project {
    /// The groups the worktree `slug`'s processes go into with `[limits]` applied, `None`
    /// without limits; `Err(why)` when this machine lets pwt make none.
    pub(crate) fn limit_placement(
        &self,
        slug: &str,
    ) -> std::result::Result<Option<Placement>, String> {
        let l = &self.config.limits;
        let (memory, cpu) = (l.memory_bytes(), l.cpu);
        if memory.is_none() && cpu.is_none() {
            return Ok(None);
        }
        let name = self.group_name(slug);
        let cgroups = Cgroups::read();
        if let Some(v2) = &cgroups.v2 {
            match v2_group(v2, &name, memory, cpu) {
                Ok(p) => return Ok(Some(p)),
                Err(why) if cgroups.v1.is_empty() => return Err(why),
                Err(_) => {}
            }
        }
        v1_groups(&cgroups.v1, &name, memory, cpu).map(Some)
    }

    /// Removes the worktree's groups once empty (after its processes stopped).
    pub(crate) fn forget_limits(&self, slug: &str) {
        let name = self.group_name(slug);
        let cgroups = Cgroups::read();
        let dirs = cgroups.v1.iter().map(|(_, d)| d).chain(cgroups.v2.iter());
        for dir in dirs {
            // Only an empty group goes (rmdir refuses otherwise).
            let _ = std::fs::remove_dir(dir.join(&name));
        }
    }

    /// The group of the worktree `slug`: `pwt-<hash of repository and slug>`.
    fn group_name(&self, slug: &str) -> String {
        let repo = self.repo.common_dir.to_string_lossy();
        let hash = pwt_core::stable_hash_parts(&[repo.as_bytes(), slug.as_bytes()]);
        format!("pwt-{hash:016x}")
    }
}

/// The groups pwt runs in, by hierarchy.
#[derive(Debug, Default)]
struct Cgroups {
    /// The v2 group's directory, when the unified hierarchy is mounted.
    v2: Option<PathBuf>,
    /// Each v1 controller pwt uses (`memory`, `cpu`) with pwt's group's directory.
    v1: Vec<(&'static str, PathBuf)>,
}

impl Cgroups {
    /// From `/proc/self/cgroup` and `/proc/self/mountinfo`.
    fn read() -> Self {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut out = Self::default();
        for line in own.lines() {
            let mut f = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let path = path.trim_start_matches('/');
            if controllers.is_empty() {
                out.v2 = mount_of(&mounts, "cgroup2", None).map(|m| m.join(path));
                continue;
            }
            for want in ["memory", "cpu"] {
                if controllers.split(',').any(|c| c == want)
                    && let Some(m) = mount_of(&mounts, "cgroup", Some(want))
                {
                    out.v1.push((want, m.join(path)));
                }
            }
        }
        out
    }
}

/// Where a cgroup file system of `fstype` (with `controller` among its options, for v1) is
/// mounted.
fn mount_of(mountinfo: &str, fstype: &str, controller: Option<&str>) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount = left.split(' ').nth(4)?;
        let mut r = right.split(' ');
        let (kind, _source, options) = (r.next()?, r.next()?, r.next().unwrap_or(""));
        let fits = kind == fstype && controller.is_none_or(|c| options.split(',').any(|o| o == c));
        fits.then(|| PathBuf::from(mount))
    })
}

/// A v2 group `name` under `parent`, when `parent` delegates memory and cpu to pwt.
fn v2_group(
    parent: &Path,
    name: &str,
    memory: Option<u64>,
    cpu: Option<f64>,
) -> std::result::Result<Placement, String> {
    let delegated =
        std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
    let need: Vec<&str> = [memory.map(|_| "memory"), cpu.map(|_| "cpu")]
        .into_iter()
        .flatten()
        .collect();
    if let Some(missing) = need
        .iter()
        .find(|c| !delegated.split_whitespace().any(|d| d == **c))
    {
        return Err(format!(
            "the cgroup pwt runs in ({}) does not delegate the {missing} controller (cgroup.subtree_control), so pwt can make no group with limits there; start pwt in a delegated scope (`systemd-run --user --scope -p Delegate=yes $SHELL`)",
            parent.display()
        ));
    }
    let dir = parent.join(name);
    make(&dir)?;
    if let Some(bytes) = memory {
        write(&dir.join("memory.max"), &bytes.to_string())?;
    }
    if let Some(cpus) = cpu {
        let quota = (cpus * CPU_PERIOD_US as f64).round() as u64;
        write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
    }
    Ok(Placement {
        procs: vec![dir.join("cgroup.procs")],
    })
}

/// v1 groups `name` under pwt's in the `memory` and `cpu` hierarchies.
fn v1_groups(
    hierarchies: &[(&'static str, PathBuf)],
    name: &str,
    memory: Option<u64>,
    cpu: Option<f64>,
) -> std::result::Result<Placement, String> {
    let find = |want: &str| hierarchies.iter().find(|(c, _)| *c == want).map(|(_, d)| d);
    let mut procs = Vec::new();
    if let Some(bytes) = memory {
        let parent = find("memory").ok_or("this machine has no memory cgroup controller")?;
        let dir = parent.join(name);
        make(&dir)?;
        write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
        procs.push(dir.join("cgroup.procs"));
    }
    if let Some(cpus) = cpu {
        let parent = find("cpu").ok_or("this machine has no cpu cgroup controller")?;
        let dir = parent.join(name);
        make(&dir)?;
        write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
        let quota = (cpus * CPU_PERIOD_US as f64).round() as u64;
        write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        procs.push(dir.join("cgroup.procs"));
    }
    Ok(Placement { procs })
}

fn make(dir: &Path) -> std::result::Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot make the cgroup {}: {e}", dir.display())),
    }
}

fn write(file: &Path, value: &str) -> std::result::Result<(), String> {
    std::fs::write(file, value)
        .map_err(|e| format!("cannot write {value} to {}: {e}", file.display()))
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
pub(crate) fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_are_found_by_type_and_controller() {
        let info = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            mount_of(info, "cgroup", Some("cpu")),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(
            mount_of(info, "cgroup", Some("memory")),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            mount_of(info, "cgroup2", None),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(mount_of(info, "cgroup", Some("pids")), None);
    }

    #[test]
    fn a_v2_group_that_delegates_nothing_is_refused_naming_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cgroup.subtree_control"), "cpu io\n").expect("write");
        let why = v2_group(dir.path(), "pwt-x", Some(64 << 20), Some(1.0)).expect_err("refused");
        assert!(
            why.contains("does not delegate the memory controller"),
            "{why}"
        );
        assert!(why.contains("Delegate=yes"), "{why}");
        assert!(!dir.path().join("pwt-x").exists());
        // Delegated: the group is made with both limits.
        std::fs::write(dir.path().join("cgroup.subtree_control"), "cpu memory\n").expect("write");
        let placed = v2_group(dir.path(), "pwt-x", Some(64 << 20), Some(1.5)).expect("made");
        assert_eq!(placed.procs, [dir.path().join("pwt-x/cgroup.procs")]);
        let read = |f: &str| std::fs::read_to_string(dir.path().join("pwt-x").join(f)).expect(f);
        assert_eq!(read("memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("cpu.max"), "150000 100000");
    }
}
