//! Loading the configuration with figment: built-in defaults < `pwt.toml` at the repository
//! root < the user config < `PWT_*` variables. (Command-line flags come last, in each
//! command.) Every value remembers its layer, which `pwt config` shows.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::{Figment, Metadata, Source};
use pwt_core::Config;

use super::env_vars;

/// The file name of the project configuration.
pub const PROJECT_FILE: &str = "pwt.toml";

/// Top-level keys a `PWT_*` variable may set. Everything else with that prefix (`PWT_SLUG`,
/// `PWT_URL`, `PWT_STATE_DIR`, …) is not configuration and is ignored here.
const SECTIONS: &[&str] = &[
    "project",
    "worktree",
    "ports",
    "postgres",
    "rabbitmq",
    "redis",
    "env",
    "files",
    "hooks",
    "proxy",
    "team",
    "processes",
];

/// The merged configuration and where it came from.
pub struct Settings {
    /// The validated configuration.
    pub config: Config,
    figment: Figment,
    /// The project file, if one exists.
    pub project_file: Option<PathBuf>,
    /// The user file, if one exists.
    pub user_file: Option<PathBuf>,
}

/// The user configuration path.
pub fn user_config_path() -> Option<PathBuf> {
    if let Some(p) = env_vars::get(env_vars::PWT_CONFIG) {
        return Some(p.into());
    }
    let base = env_vars::get(env_vars::XDG_CONFIG_HOME)
        .map(PathBuf::from)
        .or_else(|| env_vars::get(env_vars::HOME).map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("pwt").join("config.toml"))
}

fn env_provider() -> Env {
    Env::prefixed(env_vars::PWT_CONFIG_PREFIX)
        .split("__")
        .filter(|k| {
            // Section names hold no `_`, so this finds the section whether or not `__` has been
            // turned into `.` yet.
            let key = k.as_str().to_ascii_lowercase();
            let top = key.split(['.', '_']).next().unwrap_or_default();
            SECTIONS.contains(&top)
        })
}

impl Settings {
    /// Loads the layers. `roots` are searched in order for `pwt.toml`: the first that has
    /// one wins (the current worktree first, then the main one).
    pub fn load(roots: &[&Path]) -> Result<Self> {
        let project_file = roots
            .iter()
            .map(|r| r.join(PROJECT_FILE))
            .find(|p| p.is_file());
        let user_file = user_config_path().filter(|p| p.is_file());
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(p) = &project_file {
            figment = figment.merge(Toml::file_exact(p));
        }
        if let Some(p) = &user_file {
            figment = figment.merge(Toml::file_exact(p));
        }
        figment = figment.merge(env_provider());
        let config: Config = figment.extract().map_err(|e| config_error(&e))?;
        config.validate().map_err(|e| {
            let source = Self::source_of(&figment, &e.key);
            anyhow!("{e}\n  set in: {source}")
        })?;
        Ok(Self {
            config,
            figment,
            project_file,
            user_file,
        })
    }

    /// Whether `key`'s value comes from the repository's pwt.toml (a file someone else wrote).
    pub fn set_by_project_file(&self, key: &str) -> bool {
        let Some(file) = &self.project_file else {
            return false;
        };
        match self.figment.find_metadata(key) {
            Some(md) if self.figment.find_value(key).is_ok() => {
                matches!(&md.source, Some(figment::Source::File(p)) if p == file)
            }
            _ => false,
        }
    }

    fn source_of(figment: &Figment, key: &str) -> String {
        // Only a layer that set this very key gets the credit: a section a file opened
        // (`[postgres]` with its url) does not make the keys it left out the file's.
        match figment.find_metadata(key) {
            Some(md) if figment.find_value(key).is_ok() => describe(md, key),
            _ => "default".into(),
        }
    }

    /// Every leaf value of the merged configuration with its layer, in key order.
    pub fn sourced_values(&self) -> Vec<(String, serde_json::Value, String)> {
        let value = serde_json::to_value(&self.config).expect("config serializes");
        let mut out = Vec::new();
        walk("", &value, &mut |key, v| {
            let source = Self::source_of(&self.figment, key);
            out.push((key.to_owned(), v.clone(), source));
        });
        out
    }
}

fn walk(prefix: &str, v: &serde_json::Value, f: &mut impl FnMut(&str, &serde_json::Value)) {
    match v {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&key, child, f);
            }
        }
        _ => f(prefix, v),
    }
}

fn describe(md: &Metadata, key: &str) -> String {
    match &md.source {
        Some(Source::File(p)) => p.display().to_string(),
        Some(Source::Code(_)) | None if md.name.contains("environment") => {
            format!(
                "environment variable {}{}",
                env_vars::PWT_CONFIG_PREFIX,
                key.to_uppercase().replace('.', "__")
            )
        }
        _ => "default".into(),
    }
}

/// Turns figment's error into one that names the key, the file or variable, and the fix.
fn config_error(e: &figment::Error) -> anyhow::Error {
    let mut lines = Vec::new();
    for err in e.clone() {
        let key = err.path.join(".");
        let place = err
            .metadata
            .as_ref()
            .map(|md| describe(md, &key))
            .unwrap_or_else(|| "the configuration".into());
        let what = match &err.kind {
            figment::error::Kind::UnknownField(field, expected) => {
                let known = expected.join(", ");
                let full = if key.is_empty() {
                    field.clone()
                } else {
                    key.clone()
                };
                format!("unknown key `{full}` in {place} (known keys here: {known})")
            }
            kind => {
                if key.is_empty() {
                    format!("{kind} in {place}")
                } else {
                    format!("invalid value for `{key}` in {place}: {kind}")
                }
            }
        };
        lines.push(what);
    }
    anyhow!(
        "{}\n  hint: `pwt init` writes a commented example; `pwt config` shows what is in effect",
        lines.join("\n")
    )
}

/// The text `pwt init` writes.
pub const STARTER: &str = r#"# pwt.toml: how `pwt new` sets up each worktree of this repository.
# Every string value is a template: {{ branch }}, {{ slug }}, {{ repo }}, {{ project }},
# {{ ports.<name> }} (and in [env], {{ vars.<NAME> }}), with the filters `db_ident` and
# `hash_port`.
# Layers, lowest first: built-in defaults < this file < ~/.config/pwt/config.toml
# < PWT_* variables (PWT_PORTS__RANGE='[21000, 21999]') < command-line flags.

# project = "demo"                     # default: the repository directory name

[worktree]
path = "../{{ repo }}.{{ slug }}"      # where `pwt new` puts worktrees (relative to the main one)

[ports]
range = [20000, 29999]                 # below Linux's ephemeral range (32768+)

[ports.services]                       # one port per service, stable per branch
frontend = { env = "FRONTEND_PORT", main = 3000 }
backend  = { env = "BACKEND_PORT",  main = 5000 }

# [postgres]                           # uncomment for a database per worktree
# url = "postgres://demo:demo@localhost:5432/postgres"
# database = "{{ project }}_{{ slug | db_ident }}"
# main_database = "demo"
# clone_from_main = false

# [rabbitmq]                           # uncomment for a vhost per worktree
# url = "amqp://demo:demo@localhost:5672"
# management_url = "http://localhost:15672"
# vhost = "/{{ slug }}"

# [redis]                              # uncomment for Redis isolation per worktree
# url = "redis://localhost:6379"
# mode = "prefix"                      # or "db": a DB index 1..N-1 per worktree
# prefix = "pwt:{{ slug }}:"

[env]                                  # extra variables for every worktree
# VITE_API_URL = "http://localhost:{{ ports.backend }}"
# POSTGRES_DB = "{{ vars.DATABASE_NAME }}"   # vars.<NAME>: any variable pwt set, under your name

[files]
dotenv = ".env.worktree"               # false to turn off
mise = ".mise.local.toml"              # false to turn off
# copy = [".env.local", "node_modules/"]   # gitignored files brought from the main worktree
#                                          # (.worktreeinclude is read too)
# link = [".venv/"]                        # ... or linked to the main worktree's
# keep = [".env*", "*.sqlite3"]            # ignored files `pwt rm` will not delete unasked

[hooks]                                # run only once approved on each machine (`pwt trust`)
post-create = []                       # e.g. ["npm install --prefix frontend"]
pre-remove = []

# [processes]                          # what `pwt dev` starts, with the worktree's environment
# backend = "python manage.py runserver $BACKEND_PORT"
# frontend = "npm run dev -- --port $FRONTEND_PORT"

[proxy]
listen = "127.0.0.1:8080"
route = "frontend"                     # the service <slug>.localhost reaches
callback = "/auth/callback"
"#;
