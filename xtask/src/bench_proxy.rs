//! `cargo xtask bench proxy`: requests per second and latency through pwt's proxy, direct
//! to the upstream, and through Caddy as a reverse proxy to the same upstream, with each
//! proxy's peak memory. Needs `wrk` and `caddy` (Debian packages).

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::scratch;
use anyhow::{Context as _, Result, bail};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn wait_port(port: u16) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on port {port}")
}

fn caddy(dir: &Path, name: &str, config: &str) -> Result<Running> {
    let file = dir.join(name);
    std::fs::write(&file, config)?;
    let child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start caddy (apt-get install caddy)")?;
    Ok(Running(child))
}

/// Peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

struct Load {
    rps: f64,
    p50: String,
    p99: String,
}

fn wrk(port: u16, seconds: u32, connections: u32) -> Result<Load> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
        ])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .context("cannot run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("wrk printed no rate:\n{text}"))?;
    let pct = |p: &str| {
        text.lines()
            .find_map(|l| {
                let l = l.trim();
                l.strip_prefix(p).map(|v| v.trim().to_owned())
            })
            .unwrap_or_else(|| "?".into())
    };
    if text.contains("Non-2xx") {
        bail!("wrk saw errors through port {port}:\n{text}");
    }
    Ok(Load {
        rps,
        p50: pct("50%"),
        p99: pct("99%"),
    })
}

pub fn run(pwt: &Path) -> Result<()> {
    let dir = scratch("bench-proxy")?;

    let up = free_port()?;
    let _upstream = caddy(
        &dir,
        "upstream.caddy",
        &format!(
            "{{\n\tadmin off\n\tauto_https off\n}}\nhttp://:{up} {{\n\tbind 127.0.0.1\n\trespond \"hello from the upstream\" 200\n}}\n"
        ),
    )?;
    wait_port(up)?;

    let (pwt_proc, pwt_port) = start_pwt_proxy(pwt, &dir, up)?;

    let caddy_port = free_port()?;
    let caddy_proc = caddy(
        &dir,
        "proxy.caddy",
        &format!(
            "{{\n\tadmin off\n\tauto_https off\n}}\nhttp://:{caddy_port} {{\n\tbind 127.0.0.1\n\treverse_proxy 127.0.0.1:{up}\n}}\n"
        ),
    )?;
    wait_port(caddy_port)?;

    let (seconds, conns) = (10, 64);
    println!(
        "\nproxy throughput: wrk -t2 -c{conns} -d{seconds}s, same upstream (Caddy `respond`), 2 cores shared with wrk"
    );
    println!(
        "{:<22} {:>12} {:>10} {:>10} {:>14}",
        "", "req/s", "p50", "p99", "peak RSS"
    );
    let mut rows = Vec::new();
    for (name, port, pid) in [
        ("direct to upstream", up, None),
        ("pwt proxy", pwt_port, Some(pwt_proc.0.id())),
        ("caddy reverse_proxy", caddy_port, Some(caddy_proc.0.id())),
    ] {
        wrk(port, 2, conns)?; // warm-up: pools, page cache, JIT-free but still
        let load = wrk(port, seconds, conns)?;
        let rss = pid.and_then(peak_rss_mib);
        println!(
            "{name:<22} {:>12.0} {:>10} {:>10} {:>14}",
            load.rps,
            load.p50,
            load.p99,
            rss.map_or("-".into(), |m| format!("{m:.1} MiB"))
        );
        rows.push((load, rss));
    }
    let (pwt_l, pwt_m) = (&rows[1].0, rows[1].1);
    let (caddy_l, caddy_m) = (&rows[2].0, rows[2].1);
    println!(
        "pwt / caddy: throughput {:.2}x (goal >= 1.00), p99 {} vs {} (goal: no worse), peak memory {} (goal <= 0.50)",
        pwt_l.rps / caddy_l.rps,
        pwt_l.p99,
        caddy_l.p99,
        match (pwt_m, caddy_m) {
            (Some(a), Some(b)) => format!("{:.2}x", a / b),
            _ => "?".into(),
        }
    );
    drop(pwt_proc);
    drop(caddy_proc);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `pwt proxy` in a scratch repository whose main worktree's frontend is the upstream, so
/// `localhost` routes there.
fn start_pwt_proxy(pwt: &Path, dir: &Path, up: u16) -> Result<(Running, u16)> {
    // A repository whose main worktree's frontend is the upstream: `localhost` routes there.
    let repo = dir.join("demo");
    std::fs::create_dir_all(&repo)?;
    let git = |args: &[&str]| -> Result<()> {
        let ok = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("HOME", dir.join("home"))
            .env("GIT_CONFIG_GLOBAL", dir.join("home/.gitconfig"))
            .status()?
            .success();
        if ok {
            Ok(())
        } else {
            bail!("git {args:?} failed")
        }
    };
    std::fs::write(
        repo.join("pwt.toml"),
        format!("[ports.services]\nfrontend = {{ env = \"FRONTEND_PORT\", main = {up} }}\n"),
    )?;
    git(&["init", "-q"])?;
    git(&["add", "."])?;
    git(&["commit", "-q", "-m", "init"])?;
    let pwt_port = free_port()?;
    let mut child = Command::new(pwt)
        .args([
            "proxy",
            "--quiet",
            "--listen",
            &format!("127.0.0.1:{pwt_port}"),
        ])
        .current_dir(&repo)
        .env("HOME", dir.join("home"))
        .env("PWT_STATE_DIR", dir.join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let proc = Running(child);
    wait_port(pwt_port)?;
    Ok((proc, pwt_port))
}
