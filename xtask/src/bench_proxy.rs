//! `cargo xtask bench proxy`: requests per second and latency through pwt's proxy, direct
//! to the upstream, and through Caddy as a reverse proxy to the same upstream, with each
//! proxy's peak memory. Needs `wrk` and `caddy` (Debian packages).

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::scratch;
use anyhow::{Context as _, Result, bail};

use crate::plain::Running;

use crate::plain::free_port;

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
    p99: String,
}

fn wrk(url: &str, seconds: u32, connections: u32) -> Result<Load> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
        ])
        .arg(url)
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
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!("wrk saw errors through {url}:\n{text}");
    }
    Ok(Load {
        rps,
        p99: pct("99%"),
    })
}

pub fn run(pwt: &Path) -> Result<()> {
    let dir = scratch("bench-proxy")?;

    let up = free_port();
    let _upstream = caddy(
        &dir,
        "upstream.caddy",
        &format!(
            "{{\n\tadmin off\n\tauto_https off\n}}\nhttp://:{up} {{\n\tbind 127.0.0.1\n\trespond \"hello from the upstream\" 200\n}}\n"
        ),
    )?;
    wait_port(up)?;

    let (pwt_proc, pwt_port) = start_pwt_proxy(pwt, &dir, up, false)?;

    let caddy_port = free_port();
    let caddy_proc = caddy(
        &dir,
        "proxy.caddy",
        &format!(
            "{{\n\tadmin off\n\tauto_https off\n}}\nhttp://:{caddy_port} {{\n\tbind 127.0.0.1\n\treverse_proxy 127.0.0.1:{up}\n}}\n"
        ),
    )?;
    wait_port(caddy_port)?;

    let url = |scheme: &str, port: u16| format!("{scheme}://localhost:{port}/");
    compare(
        "HTTP",
        &[
            ("direct to upstream", url("http", up), None),
            ("pwt proxy", url("http", pwt_port), Some(pwt_proc.0.id())),
            (
                "caddy reverse_proxy",
                url("http", caddy_port),
                Some(caddy_proc.0.id()),
            ),
        ],
    )?;
    drop(pwt_proc);
    drop(caddy_proc);

    // HTTPS: pwt's own authority against Caddy's internal one (`tls internal`, trusted
    // nowhere: wrk does not verify), the same upstream.
    let (pwt_proc, pwt_port) = start_pwt_proxy(pwt, &dir, up, true)?;
    let caddy_port = free_port();
    let caddy_proc = caddy(
        &dir,
        "tls.caddy",
        &format!(
            "{{\n\tadmin off\n\tlocal_certs\n\tskip_install_trust\n\tauto_https disable_redirects\n}}\nhttps://localhost:{caddy_port} {{\n\tbind 127.0.0.1 [::1]\n\ttls internal\n\treverse_proxy 127.0.0.1:{up}\n}}\n"
        ),
    )?;
    wait_port(caddy_port)?;
    compare(
        "HTTPS",
        &[
            ("direct to upstream", url("http", up), None),
            (
                "pwt proxy (https)",
                url("https", pwt_port),
                Some(pwt_proc.0.id()),
            ),
            (
                "caddy (tls internal)",
                url("https", caddy_port),
                Some(caddy_proc.0.id()),
            ),
        ],
    )?;
    drop(pwt_proc);
    drop(caddy_proc);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Milliseconds of a wrk latency (`850.00us`, `13.41ms`, `1.20s`).
fn millis(text: &str) -> f64 {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (t, 1.0)
    };
    num.parse::<f64>().map_or(f64::NAN, |n| n * scale)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Rounds interleaved (direct, pwt, caddy, then again), so machine noise hits all alike;
/// medians and ratios printed.
fn compare(title: &str, targets: &[(&str, String, Option<u32>)]) -> Result<()> {
    let (rounds, seconds, conns) = (3, 4, 32);
    println!(
        "\nproxy throughput over {title}: wrk -t2 -c{conns} -d{seconds}s, {rounds} rounds interleaved, same upstream (Caddy `respond`), 2 cores shared with wrk"
    );
    let mut runs: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); targets.len()];
    for (_, url, _) in targets {
        wrk(url, 1, conns)?; // warm-up: pools, page cache, TLS sessions
    }
    for _ in 0..rounds {
        for (i, (_, url, _)) in targets.iter().enumerate() {
            let load = wrk(url, seconds, conns)?;
            runs[i].0.push(load.rps);
            runs[i].1.push(millis(&load.p99));
        }
    }
    println!(
        "{:<22} {:>12} {:>10} {:>14}",
        "", "req/s", "p99", "peak RSS"
    );
    let mut rows = Vec::new();
    for ((name, _, pid), (rps, p99)) in targets.iter().zip(runs) {
        let (rps, p99) = (median(rps), median(p99));
        let rss = pid.and_then(peak_rss_mib);
        println!(
            "{name:<22} {rps:>12.0} {:>8.2}ms {:>14}",
            p99,
            rss.map_or("-".into(), |m| format!("{m:.1} MiB"))
        );
        rows.push((rps, p99, rss));
    }
    let ((direct, _, _), (pwt, pwt_p99, pwt_m), (caddy, caddy_p99, caddy_m)) =
        (rows[0], rows[1], rows[2]);
    println!(
        "pwt / caddy over {title}: throughput {:.2}x (goal >= 1.50 over HTTP, ahead over HTTPS), p99 {pwt_p99:.2} vs {caddy_p99:.2} ms (goal: no worse), peak memory {} (goal <= 0.50)",
        pwt / caddy,
        match (pwt_m, caddy_m) {
            (Some(a), Some(b)) => format!("{:.2}x", a / b),
            _ => "?".into(),
        }
    );
    println!(
        "pwt / direct: throughput {:.2}x (aim >= 0.50: a hop costs about as much as the upstream itself on two cores)",
        pwt / direct
    );
    Ok(())
}

/// `pwt proxy` in a scratch repository whose main worktree's frontend is the upstream, so
/// `localhost` routes there.
fn start_pwt_proxy(pwt: &Path, dir: &Path, up: u16, https: bool) -> Result<(Running, u16)> {
    // A repository whose main worktree's frontend is the upstream: `localhost` routes there.
    let repo = dir.join(if https { "demo-tls" } else { "demo" });
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
        format!(
            "[ports.services]\nfrontend = {{ env = \"FRONTEND_PORT\", main = {up} }}\n[proxy]\nhttps = {https}\n"
        ),
    )?;
    git(&["init", "-q"])?;
    git(&["add", "."])?;
    git(&["commit", "-q", "-m", "init"])?;
    let pwt_port = free_port();
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
