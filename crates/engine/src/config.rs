//! Loading the configuration from explicit sources, with figment: built-in defaults <
//! `pwt.toml` at the repository root < the user's config file < `PWT_*` variables. (A
//! caller's flags come last, in its own requests.) The engine reads no environment: the
//! caller passes the files it found and the variables it has ([`ConfigSources`]). Every
//! value remembers its layer, which `pwt config` shows, and the repository's file is kept as
//! parsed, for the approvals of what it would run.

use std::path::{Path, PathBuf};

use figment::providers::{Format as _, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use pwt_core::Config;

use crate::error::{Error, ErrorKind, Result};

/// The file name of the project configuration.
pub const PROJECT_FILE: &str = "pwt.toml";

/// The prefix of configuration overrides in variables: `PWT_PORTS__RANGE='[21000, 21999]'`,
/// `PWT_PROXY__LISTEN=127.0.0.1:9090` (`__` separates nesting levels).
pub const VAR_PREFIX: &str = "PWT_";

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
    "infra",
    "docker",
    "mcp",
    "limits",
];

/// Where a configuration comes from. Nothing here is read from the process environment by
/// the engine: a program passes what it has.
#[derive(Clone, Debug, Default)]
pub struct ConfigSources {
    /// The worktree roots searched, in order, for `pwt.toml` (the first that has one wins):
    /// [`crate::config_roots`] gives the current worktree's and the main one's.
    pub roots: Vec<PathBuf>,
    /// The user's configuration file, when there is one (`~/.config/pwt/config.toml`).
    pub user_file: Option<PathBuf>,
    /// Variables (name, value); those named `PWT_<SECTION>…` override the files.
    pub vars: Vec<(String, String)>,
}

/// The merged, validated configuration and where each value came from.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: Config,
    figment: Figment,
    /// The repository's pwt.toml, if one exists.
    pub project_file: Option<PathBuf>,
    /// The user's file, if one exists.
    pub user_file: Option<PathBuf>,
    /// The repository's pwt.toml as parsed: what its `[hooks]`, `[processes]`, `[env]` and
    /// `project` say, for approvals.
    pub project_table: Option<serde_json::Value>,
}

/// The `PWT_*` variables a caller passed, as a figment layer.
struct Vars(Vec<(String, String)>);

impl Provider for Vars {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable(s)")
    }

    fn data(&self) -> std::result::Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (name, value) in &self.0 {
            let Some(key) = name.strip_prefix(VAR_PREFIX) else {
                continue;
            };
            let key = key.to_ascii_lowercase().replace("__", ".");
            // Section names hold no `_`.
            let top = key.split(['.', '_']).next().unwrap_or_default();
            if !SECTIONS.contains(&top) || key.is_empty() {
                continue;
            }
            let value: Value = value.parse().expect("parsing a value never fails");
            insert(&mut dict, &key, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Puts `value` at the dotted `key` of `dict`, making the tables on the way.
fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = dict
                .entry(head.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if entry.as_dict().is_none() {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

impl LoadedConfig {
    /// Loads the layers from `sources`. Errors name the key and the file or variable.
    pub fn load(sources: &ConfigSources) -> Result<Self> {
        let project_file = sources
            .roots
            .iter()
            .map(|r| r.join(PROJECT_FILE))
            .find(|p| p.is_file());
        let user_file = sources.user_file.clone().filter(|p| p.is_file());
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(p) = &project_file {
            figment = figment.merge(Toml::file_exact(p));
        }
        if let Some(p) = &user_file {
            figment = figment.merge(Toml::file_exact(p));
        }
        figment = figment.merge(Vars(sources.vars.clone()));
        let config: Config = figment.extract().map_err(|e| config_error(&e))?;
        config.validate().map_err(|e| {
            let source = source_of(&figment, &e.key);
            Error::new(ErrorKind::Config, format!("{e}\n  set in: {source}"))
        })?;
        let project_table = match &project_file {
            Some(p) => Some(parse_table(p)?),
            None => None,
        };
        Ok(Self {
            config,
            figment,
            project_file,
            user_file,
            project_table,
        })
    }

    /// The configuration of code that builds it itself (nothing from a repository's file).
    pub fn from_config(config: Config) -> Self {
        Self {
            figment: Figment::from(Serialized::defaults(&config)),
            config,
            project_file: None,
            user_file: None,
            project_table: None,
        }
    }

    /// Whether `key`'s value comes from the repository's pwt.toml (a file someone else wrote).
    pub fn set_by_project_file(&self, key: &str) -> bool {
        let Some(file) = &self.project_file else {
            return false;
        };
        match self.figment.find_metadata(key) {
            Some(md) if self.figment.find_value(key).is_ok() => {
                matches!(&md.source, Some(Source::File(p)) if p == file)
            }
            _ => false,
        }
    }

    /// Every leaf value of the merged configuration with its layer, in key order.
    pub fn sourced_values(&self) -> Vec<(String, serde_json::Value, String)> {
        let value = serde_json::to_value(&self.config).expect("config serializes");
        let mut out = Vec::new();
        walk("", &value, &mut |key, v| {
            out.push((key.to_owned(), v.clone(), source_of(&self.figment, key)));
        });
        out
    }
}

/// A TOML file as a JSON value (the approvals hash and show it).
pub(crate) fn parse_table(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(ErrorKind::Config, format!("cannot read {}", path.display())).caused_by(e)
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot parse {}", path.display()),
        )
        .caused_by(e)
    })?;
    serde_json::to_value(table).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot read {} as data", path.display()),
        )
        .caused_by(e)
    })
}

fn source_of(figment: &Figment, key: &str) -> String {
    // Only a layer that set this very key gets the credit: a section a file opened
    // (`[postgres]` with its url) does not make the keys it left out the file's.
    match figment.find_metadata(key) {
        Some(md) if figment.find_value(key).is_ok() => describe(md, key),
        _ => "default".into(),
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
                "environment variable {VAR_PREFIX}{}",
                key.to_uppercase().replace('.', "__")
            )
        }
        _ => "default".into(),
    }
}

/// Turns figment's error into one that names the key, the file or variable, and the fix.
fn config_error(e: &figment::Error) -> Error {
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
    Error::new(ErrorKind::Config, lines.join("\n"))
        .hint("`pwt init` writes a commented example; `pwt config` shows what is in effect")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_override_files_and_name_their_layer() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(PROJECT_FILE),
            "[ports]\nrange = [21000, 21999]\n[proxy]\nlisten = \"127.0.0.1:9000\"\n",
        )
        .expect("write");
        let loaded = LoadedConfig::load(&ConfigSources {
            roots: vec![dir.path().to_owned()],
            user_file: None,
            vars: vec![
                ("PWT_PROXY__LISTEN".into(), "127.0.0.1:9090".into()),
                ("PWT_SLUG".into(), "not configuration".into()),
                ("HOME".into(), "/nowhere".into()),
            ],
        })
        .expect("loads");
        assert_eq!(loaded.config.proxy.listen, "127.0.0.1:9090");
        assert_eq!(loaded.config.ports.range, [21000, 21999]);
        let sources: std::collections::BTreeMap<String, String> = loaded
            .sourced_values()
            .into_iter()
            .map(|(k, _, s)| (k, s))
            .collect();
        assert_eq!(
            sources["proxy.listen"],
            "environment variable PWT_PROXY__LISTEN"
        );
        assert!(sources["ports.range"].ends_with(PROJECT_FILE));
        assert_eq!(sources["proxy.callback"], "default");
        assert!(loaded.set_by_project_file("ports.range"));
        assert!(!loaded.set_by_project_file("proxy.listen"));
        assert!(loaded.project_table.is_some());
    }

    #[test]
    fn an_unknown_key_names_itself_and_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(PROJECT_FILE), "[portz]\nrange = 1\n").expect("write");
        let e = LoadedConfig::load(&ConfigSources {
            roots: vec![dir.path().to_owned()],
            ..ConfigSources::default()
        })
        .expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("unknown key `portz`"), "{e}");
        assert!(e.to_string().contains(PROJECT_FILE), "{e}");
    }
}
