//! Printing: colour only on a terminal and never with `NO_COLOR`, tables, JSON.

use std::io::IsTerminal;

use anstyle::AnsiColor;

use std::path::Path;

use super::env_vars;

/// `--format` of reporting commands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people: tables and sentences.
    #[default]
    Human,
    /// For scripts: one JSON document on stdout (schema in the README).
    Json,
}

/// How to paint text.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Colour on stdout when it is a terminal and `NO_COLOR` is unset.
    pub fn stdout() -> Self {
        Self {
            color: std::io::stdout().is_terminal() && env_vars::get(env_vars::NO_COLOR).is_none(),
        }
    }

    /// The same for stderr.
    pub fn stderr() -> Self {
        Self {
            color: std::io::stderr().is_terminal() && env_vars::get(env_vars::NO_COLOR).is_none(),
        }
    }

    fn paint(self, style: anstyle::Style, s: &str) -> String {
        if self.color {
            format!("{style}{s}{style:#}")
        } else {
            s.to_owned()
        }
    }

    fn fg(color: AnsiColor) -> anstyle::Style {
        anstyle::Style::new().fg_color(Some(color.into()))
    }

    /// Bold.
    pub fn bold(self, s: &str) -> String {
        self.paint(anstyle::Style::new().bold(), s)
    }
    /// Green.
    pub fn green(self, s: &str) -> String {
        self.paint(Self::fg(AnsiColor::Green), s)
    }
    /// Yellow.
    pub fn yellow(self, s: &str) -> String {
        self.paint(Self::fg(AnsiColor::Yellow), s)
    }
    /// Red.
    pub fn red(self, s: &str) -> String {
        self.paint(Self::fg(AnsiColor::Red), s)
    }
    /// Dim.
    pub fn dim(self, s: &str) -> String {
        self.paint(anstyle::Style::new().dimmed(), s)
    }
    /// The `n`th of six colours, for telling apart the lines of several processes.
    pub fn nth(self, n: usize, s: &str) -> String {
        use AnsiColor::{Blue, Cyan, Green, Magenta, Red, Yellow};
        self.paint(
            Self::fg([Cyan, Magenta, Yellow, Green, Blue, Red][n % 6]),
            s,
        )
    }
}

/// Prints a table: a bold header row and left-aligned columns. Cells may hold colour codes;
/// widths are computed from the visible text.
pub fn print_table(style: Style, headers: &[&str], rows: &[Vec<String>]) {
    let visible = |s: &str| strip_ansi(s).chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(visible(cell));
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                out.push_str(&" ".repeat(widths[i] - visible(cell) + 2));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.iter().map(|h| style.bold(h)).collect());
    for row in rows {
        line(row.clone());
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A progress or status line on stderr (stdout stays clean for results and JSON).
pub fn note(msg: &str) {
    eprintln!("{}", Style::stderr().dim(msg));
}

/// A warning on stderr.
pub fn warn(msg: &str) {
    let s = Style::stderr();
    eprintln!("{} {msg}", s.yellow("warning:"));
}

/// Removes control characters (a branch cannot hold them, but a path can) before text goes
/// to a terminal.
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// [`printable`], keeping line breaks (messages that list things).
pub fn printable_lines(s: &str) -> String {
    s.chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect()
}

/// A repository as people know it: the directory holding its `.git` (for a bare clone,
/// git's directory itself).
pub fn repo_dir(common_dir: &Path) -> &Path {
    match common_dir.file_name() {
        Some(n) if n == ".git" => common_dir.parent().unwrap_or(common_dir),
        _ => common_dir,
    }
}

/// A path shown to people: relative to `cwd` when that is shorter, control characters
/// removed.
pub fn display_path(p: &Path, cwd: &Path) -> String {
    let abs = p.display().to_string();
    let rel = pathdiff::diff_paths(p, cwd).map(|r| {
        if r.as_os_str().is_empty() {
            ".".to_owned()
        } else {
            r.display().to_string()
        }
    });
    match rel {
        Some(r) if r.len() < abs.len() => printable(&r),
        _ => printable(&abs),
    }
}

/// The library's events on stderr: warnings always; steps and "still running" lines unless
/// `quiet` (stdout carries JSON, or the user asked for quiet).
pub struct Terminal {
    /// No progress lines.
    pub quiet: bool,
}

impl pwt::Reporter for Terminal {
    fn report(&mut self, event: pwt::Event) {
        match event {
            pwt::Event::Step(s) if !self.quiet => note(&printable(&s.to_string())),
            pwt::Event::Waiting { what, seconds } if !self.quiet => {
                note(&format!("… {} ({seconds} s)", what.join(", ")));
            }
            pwt::Event::Warning(w) => warn(&printable(&w)),
            pwt::Event::Hook { stage, command } => {
                note(&format!("running {stage} hook: {}", printable(&command)));
            }
            _ => {}
        }
    }
}
