//! pwt's exit codes. Scripts may rely on them; they are documented in the README.

/// Everything worked.
pub const OK: i32 = 0;
/// Something failed; the message says what.
pub const FAILURE: i32 = 1;
/// The command line was wrong. clap exits with it on its own; named here for the docs.
#[allow(dead_code)]
pub const USAGE: i32 = 2;
/// pwt refused because going on would lose data it does not own (uncommitted or untracked
/// changes, an edited env file). Nothing was touched. `--force` overrides.
pub const REFUSED: i32 = 3;

/// An error that carries its exit code.
#[derive(Debug)]
pub struct ExitError {
    /// The process exit code.
    pub code: i32,
    /// The message, with hints.
    pub message: String,
}

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitError {}

/// A refusal to avoid losing data.
pub fn refused(message: impl Into<String>) -> anyhow::Error {
    ExitError {
        code: REFUSED,
        message: message.into(),
    }
    .into()
}
