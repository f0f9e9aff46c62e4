//! `cargo xtask`: project automation for pwt.
//!
//! - `cargo xtask e2e [--compose|--break-isolation|--prove-detection]`: the end-to-end run
//!   (see `e2e.rs`; `--compose` on a real Docker engine, `e2e_compose.rs`).
//! - `cargo xtask bench [new|list|services|proxy|files|mcp|infra]`: benchmarks that print ratios against a baseline
//!   measured in the same run. Not tests: they assert nothing about time.

mod bench;
mod bench_infra;
mod bench_mcp;
mod bench_proxy;
mod e2e;
mod e2e_compose;
mod util;
// pwt-tests' helpers on std alone: the same lines, not a copy.
#[path = "../../tests/src/plain.rs"]
mod plain;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => bench::run(&args[1..]),
        Some("e2e") => e2e::run(&args[1..]),
        _ => bail!(
            "usage: cargo xtask bench [new|list|services|proxy|files|mcp|infra] | cargo xtask e2e [--compose|--break-isolation|--prove-detection]"
        ),
    }
}
