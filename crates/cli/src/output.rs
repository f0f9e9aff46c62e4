//! Printing: colour only on a terminal and never with `NO_COLOR`, tables, JSON.

use std::io::IsTerminal;

use crate::env_vars;

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

    fn paint(self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// Bold.
    pub fn bold(self, s: &str) -> String {
        self.paint("1", s)
    }
    /// Green.
    pub fn green(self, s: &str) -> String {
        self.paint("32", s)
    }
    /// Yellow.
    pub fn yellow(self, s: &str) -> String {
        self.paint("33", s)
    }
    /// Red.
    pub fn red(self, s: &str) -> String {
        self.paint("31", s)
    }
    /// Dim.
    pub fn dim(self, s: &str) -> String {
        self.paint("2", s)
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
pub fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values always serialize")
    );
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

/// `s` as one shell word, for commands suggested in hints: as it is when it holds only safe
/// characters, else single-quoted, so pasting it never expands `$(…)` from a branch name.
pub fn sh(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@%,".contains(&b));
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", printable(s).replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shell_words() {
        assert_eq!(super::sh("feature/x-1"), "feature/x-1");
        assert_eq!(
            super::sh("feat/$(touch${IFS}pwned)"),
            "'feat/$(touch${IFS}pwned)'"
        );
        assert_eq!(super::sh("feat/x'y"), "'feat/x'\\''y'");
        assert_eq!(super::sh("/tmp/a b"), "'/tmp/a b'");
    }
}
