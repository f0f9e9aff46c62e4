//! Every environment variable pwt itself reads, in one place (the engine reads none: the
//! binary passes them in; `PWT_<SECTION>__<KEY>` configuration overrides are
//! `pwt::VAR_PREFIX`'s). The variables pwt *writes* for worktrees are built in `pwt-core`.

/// Directory of the machine-wide registry. Default: `$XDG_STATE_HOME/pwt`.
pub const PWT_STATE_DIR: &str = "PWT_STATE_DIR";
/// Path of the user configuration file. Default: `$XDG_CONFIG_HOME/pwt/config.toml`.
pub const PWT_CONFIG: &str = "PWT_CONFIG";
/// Crash-test hook for pwt's own tests: `hold-lock:MS`, `before-rename:MS`, `after-lease:MS`
/// or `after-checkout:MS` pauses at that moment so a test can kill the process there. Not for
/// users.
pub const PWT_FAULT: &str = "PWT_FAULT";
/// The directory all users of the machine share: port claims and machine-wide locks.
/// Default: `/var/tmp/pwt` (made world-writable with the sticky bit, like `/tmp`).
pub const PWT_MACHINE_DIR: &str = "PWT_MACHINE_DIR";
/// Set (to anything but `0`): a repository's hooks, processes and `[env]` need no approval
/// (`pwt trust`), for automation and CI.
pub const PWT_TRUST_HOOKS: &str = "PWT_TRUST_HOOKS";
/// Who holds leases in the team store: `user@host` by default.
pub const PWT_HOLDER: &str = "PWT_HOLDER";
/// The user name, for the holder.
pub const USER: &str = "USER";
/// XDG base directory for state.
pub const XDG_STATE_HOME: &str = "XDG_STATE_HOME";
/// XDG base directory for configuration.
pub const XDG_CONFIG_HOME: &str = "XDG_CONFIG_HOME";
/// The user's home directory, the base of the XDG defaults.
pub const HOME: &str = "HOME";
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
