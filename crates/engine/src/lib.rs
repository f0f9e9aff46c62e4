//! `pwt`: give a git worktree its own runtime environment — ports, a database, a RabbitMQ
//! vhost, a Redis prefix or DB index, env files, a local URL — on shared infrastructure, and
//! take it all away again without losing anything pwt does not own.
//!
//! This library is the lifecycle; the `pwt` binary is a thin shell over it, and other tools
//! can embed it the same way:
//!
//! ```no_run
//! use std::path::Path;
//! use pwt::{ConfigSources, CreateRequest, LoadedConfig, Options, Project, RemoveRequest, Silent};
//! # fn main() -> Result<(), pwt::Error> {
//! let repo = Path::new("/src/shop");
//! // The repository's pwt.toml (and, if you like, a user file and PWT_* variables), layered
//! // as the binary does. What that file would run needs approval: refused by default.
//! let loaded = LoadedConfig::load(&ConfigSources {
//!     roots: pwt::config_roots(repo)?,
//!     ..ConfigSources::default()
//! })?;
//! let options = Options::loaded("/tmp/my-tool/state", loaded);
//! let project = Project::open(repo, options)?;
//! let branch = pwt::BranchName::parse("feature/login")?;
//! let set_up = project.create(&CreateRequest::new(branch), &mut Silent)?;
//! println!("{} on port {:?}", set_up.lease.path.display(), set_up.lease.ports);
//! let request = RemoveRequest { target: "feature/login".into(), hooks: true, ..Default::default() };
//! project.remove(&request, &mut Silent)?;
//! # Ok(()) }
//! ```
//!
//! - [`Project::open`] takes explicit inputs only ([`Options`]: the state directory, the
//!   configuration, crash-test [`Faults`], a [`Cancel`] flag); the library reads no
//!   environment variable, parses no arguments and prints nothing. To share the worktrees
//!   the `pwt` command made, open with [`Options::at`] and [`Locations::from_vars`] (where
//!   the command keeps its registry, from the variables you pass, e.g. the process's).
//!   Port claims are machine-wide ([`Options::machine_dir`]) whatever the state directory.
//! - Approvals: what the repository's pwt.toml runs ([`Approvals`] in
//!   [`Options::approvals`]: refused by default, asked through a callback, or trusted);
//!   [`Project::pending_approval`], [`Project::set_approved`] record one as `pwt trust` does.
//! - [`Project::create`] / [`Project::adopt`]: the one set-up ([`SetUp`]); each outside
//!   effect is recorded in the lease before it happens, so a failure or a kill can be undone
//!   exactly.
//! - [`Project::remove`]: the one teardown ([`Removal`] listing what was [`Released`]), of
//!   the worktree a [`Selector`] names (a name as typed, a branch, or a path).
//! - [`Project::reconcile_plan`] / [`Project::reconcile`]: `pwt gc`, one [`Action`] at a
//!   time, each re-checked under the registry lock.
//! - [`Project::diagnose`] / [`Project::rebuild`]: `pwt doctor` ([`Finding`]s).
//! - [`Project::list`], [`Project::environment`], [`Project::status`], [`Project::routes`]:
//!   what there is. [`Project::resolve`] and [`Project::managed`] find the worktree a
//!   [`Selector`] names; like every call about one worktree, they take an
//!   `Option<&Selector>` (`None`: the one the project was opened in).
//! - `[processes]`: [`Project::start_processes`] (detached, or piped for
//!   [`Project::supervise`] to run in the foreground), [`Project::stop`] ([`Stopped`]).
//! - The proxy: [`Project::bind_proxy`] then [`BoundProxy::serve`]; a browser with the
//!   worktree's own profile: [`Project::browser_launch`].
//! - Progress and warnings go to the [`Reporter`] the caller passes ([`Event`]); errors are
//!   [`Error`]s with an [`ErrorKind`], a hint and their whole cause chain; [`exit_code`]
//!   gives the code the `pwt` command exits with for each.

mod approvals;
mod browser;
mod config;
mod containers;
mod create;
mod dev;
mod diagnose;
mod docker;
mod env_files;
mod error;
mod events;
pub mod exit_code;
mod faults;
mod git;
mod hooks;
pub mod https;
mod include;
mod inflight;
mod info;
mod infra;
mod leases;
mod limits;
mod locations;
mod output;
mod paths;
mod plan;
mod processes;
mod project;
mod reconcile;
mod remove;
mod routes;
pub use routes::{BoundProxy, LogFn};
mod services;
mod status;
mod team;
mod trust;
pub mod usage;

pub use approvals::{Approval, Approvals, Gate};
pub use browser::{BrowserKind, BrowserLaunch};
pub use config::{ConfigSources, LoadedConfig, PROJECT_FILE, STARTER, VAR_PREFIX};
pub use create::{AdoptRequest, CreateRequest, SetUp, SetUpOutcome};
pub use dev::{DevProcess, ProcessState, Spawned, Stopped, Supervision};
pub use diagnose::{Finding, Level};
pub use docker::{ComposeCli, Container};
pub use error::{Error, ErrorKind, Result, Rollback};
pub use events::{Collect, DockerObject, Event, Released, Reporter, Silent, Step};
pub use faults::{FaultPoint, Faults};
pub use include::{Brought, WORKTREE_INCLUDE};
pub use info::{
    PortInfo, Rates, Reading, TopOut, WorktreeInfo, WorktreeState, lease_info, list_all, listening,
    main_redis_db, measure_usage,
};
pub use infra::{Infra, InfraService, Published, RunsIn, ServiceStatus};
pub use locations::{Locations, vars};
#[cfg(feature = "schema")]
pub use output::schemas as output_schemas;
pub use output::{
    CheckOut, ConfigOut, ConfigValueOut, ContainerOut, DoctorOut, EnvOut, GcItemOut, GcOut,
    GcResultOut, HoldOut, InfraOut, PortOut, ProcessOut, RemoveOut, SparedOut, WorktreeOut,
};
pub use output::{EnvVarOut, ResourceState, ServiceOut, StatusOut};
pub use paths::shell_word;
pub use plan::{Action, GcPlan, Orphan, Spared};
pub use project::{
    Cancel, ChildOutput, Managed, Options, Project, Selector, Target, config_roots, write_starter,
};
pub use reconcile::{ReconcileRequest, Reconciled, Reconciliation};
pub use remove::{Removal, RemoveRequest, Removed};
pub use status::MAX_LOG_LINES;

pub use project::DEFAULT_MACHINE_DIR;
pub use pwt_alloc::{
    Journal, Kept, Lease, LeaseState, Leftover, Owner, Registry, Repo, State, WorktreeEntry, proc,
};
pub use pwt_core::{
    BranchName, Config, DbName, Environment, RedisPrefix, RedisSlot, ResourceKind, Resources, Slug,
    Vhost,
};
pub use pwt_provision::{Hold, Holder};
pub use pwt_proxy::RouteTable;
