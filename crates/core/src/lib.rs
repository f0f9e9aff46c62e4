//! `pwt-core`: the pure model of pwt.
//!
//! Everything here is deterministic and free of I/O (no files, network, processes,
//! environment or clocks), so it can be tested exhaustively and embedded anywhere:
//!
//! - [`BranchName`]: a branch name as git accepts it.
//! - [`Slug`]: the readable, unique name of a worktree, from which every resource name
//!   derives; [`stable_hash`] is the pinned hash behind its suffixes.
//! - [`DbName`], [`Vhost`], [`RedisPrefix`], [`Port`]: validated resource names, and the
//!   template filters [`db_ident`] and [`hash_port`].
//! - [`Config`]: the configuration types, validated by [`Config::validate`].
//! - [`Templates`]: minijinja with strict undefined and pwt's filters.
//! - [`Environment`] and [`build_environment`]: a worktree's variables, and their renderings
//!   as dotenv, mise TOML, sh and fish.
//! - [`resource_names`], [`owner_marker`], [`service_variables`]: what a worktree's database,
//!   vhost and Redis slot are called, how pwt recognises them as its own, and the variables
//!   that point the app at them.

mod branch;
pub mod config;
mod env;
mod hash;
mod names;
mod resources;
mod slug;
mod template;

pub use branch::{BranchName, BranchNameError, shell_word};
pub use config::{Config, ConfigError, LimitsConfig, McpConfig, McpTools, parse_size};
pub use env::{
    DEFAULT_PROXY_PORT, EnvError, Environment, FILE_MARK, WorktreeFacts, build_environment,
    describe_variable, docker_literal, dotenv_quote, parse_assignments, proxy_port, render_docker,
    render_dotenv, render_fish, render_mise, render_sh,
};
pub use hash::{hex_prefix, stable_hash, stable_hash_parts};
pub use names::{DbName, NameError, PG_MAX_IDENT, Port, RedisPrefix, Vhost, db_ident, hash_port};
pub use resources::{
    DB_NAME_MAX, RedisSlot, ResourceError, ResourceKind, Resources, Worktree, base_marker,
    derived_databases, disambiguated_slug, disambiguated_slug_nth, is_kept_marker, is_marker,
    kept_marker, owner_marker, percent_encode, redis_prefix_name, registry_marker,
    repo_marker_prefix, resource_names, same_owner, service_variables, test_database_bases,
    url_path, with_host_port, with_path,
};
pub use slug::{MAIN_SLUG, MAX_SLUG_LEN, Slug, SlugError};
pub use template::{TemplateContext, TemplateError, Templates};
