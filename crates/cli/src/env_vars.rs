//! Every environment variable the binary reads besides those that say where pwt keeps
//! things (`pwt::vars`, read by `pwt::Locations::from_vars` from what the binary passes in:
//! the engine reads no environment of its own) and the `PWT_<SECTION>__<KEY>`
//! configuration overrides (`pwt::VAR_PREFIX`). The variables pwt *writes* for worktrees
//! are built in `pwt-core`.

/// Crash-test hook for pwt's own tests: `hold-lock:MS`, `before-rename:MS`, `after-lease:MS`
/// or `after-checkout:MS` pauses at that moment so a test can kill the process there. Not for
/// users.
pub const PWT_FAULT: &str = "PWT_FAULT";
/// Set (to anything but `0`): a repository's hooks, processes and `[env]` need no approval
/// (`pwt trust`), for automation and CI.
pub const PWT_TRUST_HOOKS: &str = "PWT_TRUST_HOOKS";
/// The browser `pwt open` starts (a path or a name on PATH). Default: the first of
/// chromium, google-chrome, firefox found.
pub const PWT_BROWSER: &str = "PWT_BROWSER";
/// The search path for programs.
pub const PATH: &str = "PATH";
/// When set (to anything), no colour. <https://no-color.org>
pub const NO_COLOR: &str = "NO_COLOR";

/// Reads a variable that must be valid UTF-8 and non-empty to count.
pub fn get(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
