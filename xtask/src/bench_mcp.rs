//! `cargo xtask bench mcp`: a read-only tool call of `pwt mcp` (the `environment` tool, over
//! stdio, JSON-RPC as an agent's client sends it) against `pwt env --format json` as a whole
//! process, the way an agent without the server asks, in one run.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::bench::{Sandbox, header, ms, row, stats};

pub(crate) fn run(pwt: &Path, rounds: usize) -> Result<()> {
    let sb = Sandbox::new(pwt.to_owned())?;
    let toml = "[ports.services]\nfrontend = { env = \"FRONTEND_PORT\", main = 3000 }\nbackend = { env = \"BACKEND_PORT\", main = 5000 }\n";
    let repo = sb.repo("demo", 10, toml)?;
    sb.pwt(&repo, &["new", "agent"])?;
    let wt = repo.with_file_name("demo.agent");
    let mut cmd = Command::new(pwt);
    sb.env(&mut cmd);
    cmd.current_dir(&wt)
        .arg("mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut server = crate::plain::Running(cmd.spawn().context("pwt mcp")?);
    let mut client = Client {
        stdin: server.0.stdin.take().context("stdin")?,
        lines: BufReader::new(server.0.stdout.take().context("stdout")?).lines(),
    };
    client.ask(
        0,
        "initialize",
        serde_json::json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "pwt-bench", "version": "1"}
        }),
    )?;
    client.send(&serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
    client.call(1)?;
    let (mut tool, mut process) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        tool.push(client.call(2 + i as u64)?);
        process.push(sb.pwt(&wt, &["env", "--format", "json"])?);
    }
    let (t, p) = (stats(tool), stats(process));
    println!(
        "\nwhat an agent asks of its worktree: an MCP tool call vs the CLI as a process, {rounds} each"
    );
    header();
    row("pwt env --format json (baseline)", &p, None, "");
    row(
        "pwt mcp: tools/call environment",
        &t,
        Some(&p),
        "< 20 ms, < 1.00x",
    );
    println!(
        "a tool call saves {} over starting pwt (median)",
        ms(p.median.saturating_sub(t.median))
    );
    drop(server);
    Ok(())
}

/// JSON-RPC over the server's stdin and stdout, one message a line.
struct Client {
    stdin: std::process::ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Client {
    fn send(&mut self, msg: &serde_json::Value) -> Result<()> {
        writeln!(self.stdin, "{msg}")?;
        self.stdin.flush()?;
        Ok(())
    }

    fn ask(
        &mut self,
        id: u64,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value> {
        self.send(
            &serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )?;
        let line = self.lines.next().context("the server closed")??;
        let answer: serde_json::Value = serde_json::from_str(&line)?;
        if answer.get("error").is_some() {
            bail!("{method}: {answer}");
        }
        Ok(answer)
    }

    /// One `tools/call` of `environment`, timed from request to answer.
    fn call(&mut self, id: u64) -> Result<Duration> {
        let start = Instant::now();
        let r = self.ask(
            id,
            "tools/call",
            serde_json::json!({"name": "environment", "arguments": {}}),
        )?;
        let took = start.elapsed();
        if r["result"]["isError"] == true {
            bail!("the tool failed: {r}");
        }
        Ok(took)
    }
}
