//! Where pwt keeps its files and whom it holds names as, from variables the caller passes in
//! (the engine reads no environment of its own). The binary passes its process's; an
//! embedder that should see the worktrees the `pwt` command made passes the same, and one
//! that keeps its own registry passes others, or builds [`crate::Options`] itself.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// The variables [`Locations::from_vars`] reads.
pub mod vars {
    /// Directory of the registry, logs, browser profiles and the proxy's authority.
    /// Default: `$XDG_STATE_HOME/pwt`, else `~/.local/state/pwt`.
    pub const PWT_STATE_DIR: &str = "PWT_STATE_DIR";
    /// Path of the user configuration file. Default: `$XDG_CONFIG_HOME/pwt/config.toml`,
    /// else `~/.config/pwt/config.toml`.
    pub const PWT_CONFIG: &str = "PWT_CONFIG";
    /// The directory all users of the machine share: port claims and machine-wide locks.
    /// Default: [`crate::DEFAULT_MACHINE_DIR`] (made world-writable with the sticky bit,
    /// like `/tmp`).
    pub const PWT_MACHINE_DIR: &str = "PWT_MACHINE_DIR";
    /// Who holds names in the team store. Default: `$USER@host`.
    pub const PWT_HOLDER: &str = "PWT_HOLDER";
    /// The user name, for the holder.
    pub const USER: &str = "USER";
    /// XDG base directory for state.
    pub const XDG_STATE_HOME: &str = "XDG_STATE_HOME";
    /// XDG base directory for configuration.
    pub const XDG_CONFIG_HOME: &str = "XDG_CONFIG_HOME";
    /// The user's home directory, the base of the XDG defaults.
    pub const HOME: &str = "HOME";
}

/// Where pwt keeps things, and who it is in the team store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locations {
    /// The state directory.
    pub state_dir: PathBuf,
    /// The user configuration file, where one would be (it need not exist).
    pub user_config: Option<PathBuf>,
    /// The machine directory every user shares.
    pub machine_dir: PathBuf,
    /// The holder name in the team store.
    pub holder: String,
    /// The user's home directory, where browsers keep their certificate stores (`HOME`).
    pub home: Option<PathBuf>,
}

impl Locations {
    /// From variables as `get` gives them (a variable that is unset or empty is `None`);
    /// see [`vars`] for each and its default. Fails only when no state directory can be
    /// found (no `PWT_STATE_DIR`, `XDG_STATE_HOME` or `HOME`).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| get(name).filter(|v| !v.is_empty());
        let home = get(vars::HOME).map(PathBuf::from);
        let state_dir = match (get(vars::PWT_STATE_DIR), get(vars::XDG_STATE_HOME), &home) {
            (Some(d), _, _) => PathBuf::from(d),
            (None, Some(d), _) => Path::new(&d).join("pwt"),
            (None, None, Some(h)) => h.join(".local/state/pwt"),
            (None, None, None) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "cannot find the state directory: PWT_STATE_DIR, XDG_STATE_HOME and HOME are all unset",
                )
                .hint("set PWT_STATE_DIR (or HOME)"));
            }
        };
        let user_config = match get(vars::PWT_CONFIG) {
            Some(p) => Some(PathBuf::from(p)),
            None => get(vars::XDG_CONFIG_HOME)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".config")))
                .map(|base| base.join("pwt").join("config.toml")),
        };
        let machine_dir = get(vars::PWT_MACHINE_DIR)
            .map_or_else(|| PathBuf::from(crate::DEFAULT_MACHINE_DIR), PathBuf::from);
        let holder = get(vars::PWT_HOLDER).unwrap_or_else(|| {
            let user = get(vars::USER).unwrap_or_else(|| "someone".into());
            format!("{user}@{}", pwt_alloc::proc::hostname())
        });
        Ok(Self {
            state_dir,
            user_config,
            machine_dir,
            holder,
            home,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Locations> {
        Locations::from_vars(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn explicit_variables_win_then_xdg_then_home() {
        let l = from(&[("HOME", "/h"), ("USER", "ann")]).expect("found");
        assert_eq!(l.state_dir, Path::new("/h/.local/state/pwt"));
        assert_eq!(
            l.user_config.as_deref(),
            Some(Path::new("/h/.config/pwt/config.toml"))
        );
        assert_eq!(l.machine_dir, Path::new(crate::DEFAULT_MACHINE_DIR));
        assert!(l.holder.starts_with("ann@"), "{}", l.holder);
        let l = from(&[
            ("HOME", "/h"),
            ("XDG_STATE_HOME", "/s"),
            ("XDG_CONFIG_HOME", "/c"),
        ])
        .expect("found");
        assert_eq!(l.state_dir, Path::new("/s/pwt"));
        assert_eq!(
            l.user_config.as_deref(),
            Some(Path::new("/c/pwt/config.toml"))
        );
        let l = from(&[
            ("HOME", "/h"),
            ("XDG_STATE_HOME", "/s"),
            ("PWT_STATE_DIR", "/p"),
            ("PWT_CONFIG", "/u.toml"),
            ("PWT_MACHINE_DIR", "/m"),
            ("PWT_HOLDER", "ci"),
        ])
        .expect("found");
        assert_eq!(
            (l.state_dir, l.user_config, l.machine_dir, l.holder),
            (
                "/p".into(),
                Some("/u.toml".into()),
                "/m".into(),
                "ci".to_owned()
            )
        );
    }

    #[test]
    fn without_any_home_the_error_says_what_to_set() {
        let e = from(&[("PWT_STATE_DIR", "")]).expect_err("nowhere");
        assert!(e.report().contains("PWT_STATE_DIR"), "{}", e.report());
    }
}
