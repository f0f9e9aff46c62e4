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
/// Interrupted (Ctrl-C, SIGTERM, SIGHUP): what the run had made was rolled back. A second
/// Ctrl-C stops pwt at once; `pwt gc` then cleans up.
pub const INTERRUPTED: i32 = 130;

/// The exit code of a library error.
pub fn of(kind: pwt::ErrorKind) -> i32 {
    match kind {
        pwt::ErrorKind::Refused => REFUSED,
        pwt::ErrorKind::Cancelled => INTERRUPTED,
        _ => FAILURE,
    }
}
