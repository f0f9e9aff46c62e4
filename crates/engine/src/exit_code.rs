//! pwt's exit codes: one table, from the error kinds. The `pwt` command exits with them and
//! scripts may rely on them (the README lists them and each is tested); a tool that wraps
//! the engine in a command of its own can exit with the same.

use crate::error::ErrorKind;

/// Everything worked.
pub const OK: i32 = 0;
/// Something failed; the message says what (a service, git, a file, a hook).
pub const FAILURE: i32 = 1;
/// The command line was wrong, or asked for something that cannot be (a branch name git
/// refuses, removing the main worktree). clap exits with it on its own.
pub const USAGE: i32 = 2;
/// pwt refused because going on would lose data it does not own (uncommitted or untracked
/// changes, an edited env file, another worktree inside). Nothing was touched. `--force`
/// overrides where it can.
pub const REFUSED: i32 = 3;
/// The repository's pwt.toml would run something (hooks, processes, an `[env]`) not
/// approved on this machine. Nothing was done. `pwt trust` approves; `--yes` or
/// `PWT_TRUST_HOOKS=1` goes ahead.
pub const UNAPPROVED: i32 = 4;
/// Another pwt is creating or removing that worktree right now. Nothing was done; try again
/// when it is finished.
pub const BUSY: i32 = 5;
/// Interrupted (Ctrl-C, SIGTERM, SIGHUP): what the run had made was rolled back. A second
/// Ctrl-C stops pwt at once; `pwt gc` then cleans up.
pub const INTERRUPTED: i32 = 130;

/// The exit code of an error of `kind`.
pub fn of(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::Invalid => USAGE,
        ErrorKind::Refused => REFUSED,
        ErrorKind::Unapproved => UNAPPROVED,
        ErrorKind::Busy => BUSY,
        ErrorKind::Cancelled => INTERRUPTED,
        _ => FAILURE,
    }
}

/// [`OK`] when everything `ok` says worked, else [`FAILURE`].
pub fn ok_if(ok: bool) -> i32 {
    if ok { OK } else { FAILURE }
}
