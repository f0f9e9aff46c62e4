//! What every `--format json` prints, as types: one place for the shape scripts rely on.
//! Each command's output has a JSON Schema in `schemas/` (generated from these types with
//! the `schema` feature; a test checks the committed files are current, and another that
//! the binary's output validates against them).
//!
//! Stable: the fields named here keep their names, types and meaning within a major
//! version; fields may be added (a reader should ignore what it does not know).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::diagnose::{Finding, Level};
use crate::info::WorktreeInfo;
use crate::plan::{Action, GcPlan};
use crate::reconcile::ReconcileRequest;

/// A worktree (`pwt list`, one element; `pwt new` and `pwt up`).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WorktreeOut {
    /// Its branch (`(detached)` for a detached HEAD).
    pub branch: String,
    /// Its slug: `main` for the main worktree, empty for one pwt does not manage.
    pub slug: String,
    /// Its root.
    pub path: String,
    /// Where it is in its life.
    pub state: crate::info::WorktreeState,
    /// Its ports, by service name.
    pub ports: BTreeMap<String, PortOut>,
    /// `http://<slug>.localhost:<proxy port>`.
    pub url: Option<String>,
    /// What a teardown could not remove yet.
    pub leftover: Vec<String>,
    /// The repository's git directory.
    pub repo: String,
    /// Its PostgreSQL database.
    pub database: Option<String>,
    /// Its RabbitMQ vhost.
    pub vhost: Option<String>,
    /// Its Redis key prefix (prefix mode).
    pub redis_prefix: Option<String>,
    /// Its Redis DB index (db mode).
    pub redis_db: Option<u16>,
    /// Post-create hooks have not run yet (`pwt up` runs them).
    pub hooks_pending: bool,
    /// What `pwt dev` started there.
    pub processes: Vec<ProcessOut>,
    /// Its Compose project's containers (with `[docker]`).
    pub containers: Vec<ContainerOut>,
    /// What its processes use: CPU time and memory (`null`: not measured).
    pub usage: Option<crate::usage::Usage>,
}

/// One port of a worktree.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PortOut {
    /// The port.
    pub port: u16,
    /// The variable that carries it.
    pub env: String,
    /// `http://localhost:<port>`.
    pub url: String,
    /// Something accepts connections on it (`null`: not looked at).
    pub listening: Option<bool>,
}

/// A process `pwt dev` started.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProcessOut {
    /// Its name in `[processes]`.
    pub name: String,
    /// Its command.
    pub command: String,
    /// Its process group's leader.
    pub pid: u32,
    /// Anything of its process group runs.
    pub running: bool,
    /// How it ended (`null` while it runs, or when stopped by a signal).
    pub exit_code: Option<i32>,
    /// Its log, when detached.
    pub log: Option<String>,
}

/// A container of a worktree's Compose project.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ContainerOut {
    /// Its name.
    pub name: String,
    /// Its Compose service.
    pub service: Option<String>,
    /// Its image.
    pub image: String,
    /// `running`, `exited`, …
    pub state: String,
    /// Docker's health, when it has a healthcheck.
    pub health: Option<String>,
    /// The host ports it publishes.
    pub ports: Vec<u16>,
}

impl From<&WorktreeInfo> for WorktreeOut {
    fn from(w: &WorktreeInfo) -> Self {
        Self {
            branch: w.branch.clone(),
            slug: w.slug.clone(),
            path: w.path.to_string_lossy().into_owned(),
            state: w.state,
            ports: w
                .ports
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        PortOut {
                            port: p.port,
                            env: p.env.clone(),
                            url: format!("http://localhost:{}", p.port),
                            listening: p.listening,
                        },
                    )
                })
                .collect(),
            url: w.url.clone(),
            leftover: w.leftover.clone(),
            repo: w.repo.to_string_lossy().into_owned(),
            database: w.database.clone(),
            vhost: w.vhost.clone(),
            redis_prefix: w.redis_prefix.clone(),
            redis_db: w.redis_db,
            hooks_pending: w.hooks_pending,
            processes: w
                .processes
                .iter()
                .map(|(p, state)| ProcessOut {
                    name: p.name.clone(),
                    command: p.command.clone(),
                    pid: p.pid,
                    running: *state == crate::dev::ProcessState::Running,
                    exit_code: match state {
                        crate::dev::ProcessState::Exited(code) => *code,
                        crate::dev::ProcessState::Running => None,
                    },
                    log: p.log.as_ref().map(|l| l.to_string_lossy().into_owned()),
                })
                .collect(),
            containers: w
                .containers
                .iter()
                .map(|c| ContainerOut {
                    name: c.name.clone(),
                    service: c.service.clone(),
                    image: c.image.clone(),
                    state: c.state.clone(),
                    health: c.health.clone(),
                    ports: c.ports.clone(),
                })
                .collect(),
            usage: w.usage.clone(),
        }
    }
}

/// `pwt rm`.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RemoveOut {
    /// What was asked for.
    pub target: String,
    /// Something was removed (`false`: there was nothing to do, see `reason`).
    pub removed: bool,
    /// Why there was nothing to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The branch whose worktree went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// What went (`database "demo_x"`, `the worktree`, `container …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what: Option<Vec<String>>,
    /// The data was kept (`--keep-data`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_kept: Option<bool>,
    /// The branch was deleted (`--delete-branch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_deleted: Option<bool>,
}

impl RemoveOut {
    /// Of a removal of `target`.
    pub fn of(target: &str, removal: &crate::remove::Removal) -> Self {
        match removal {
            crate::remove::Removal::Nothing(why) => Self {
                target: target.to_owned(),
                removed: false,
                reason: Some(why.clone()),
                branch: None,
                what: None,
                data_kept: None,
                branch_deleted: None,
            },
            crate::remove::Removal::Removed(r) => Self {
                target: target.to_owned(),
                removed: true,
                reason: None,
                branch: Some(r.branch.to_string()),
                what: Some(r.removed.iter().map(ToString::to_string).collect()),
                data_kept: Some(r.data_kept),
                branch_deleted: Some(r.branch_deleted),
            },
        }
    }
}

/// `pwt doctor`.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DoctorOut {
    /// Each check, in order.
    pub checks: Vec<CheckOut>,
}

/// One check of `pwt doctor`.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CheckOut {
    /// How it went.
    pub level: Level,
    /// What was found.
    pub check: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl DoctorOut {
    /// Of these findings.
    pub fn of(findings: &[Finding]) -> Self {
        Self {
            checks: findings
                .iter()
                .map(|f| CheckOut {
                    level: f.level,
                    check: f.what.clone(),
                    hint: f.hint.clone(),
                })
                .collect(),
        }
    }
}

/// `pwt gc`.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GcOut {
    /// What it found to do.
    pub found: Vec<GcItemOut>,
    /// What it leaves alone, and why.
    pub spared: Vec<SparedOut>,
    /// What it did.
    pub done: Vec<String>,
    /// What another pwt was busy with.
    pub skipped: Vec<GcResultOut>,
    /// What failed.
    pub failed: Vec<GcResultOut>,
    /// Services it could not ask for orphans.
    pub problems: Vec<String>,
}

/// One thing gc found.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GcItemOut {
    /// The branch it is about, when it is about one.
    pub branch: Option<String>,
    /// What gc does about it.
    pub action: String,
    /// Kept data, left until `--kept`.
    pub kept: bool,
}

/// Something gc leaves alone.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SparedOut {
    /// What.
    pub what: String,
    /// Why.
    pub why: String,
}

/// An item gc skipped, or one that failed.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GcResultOut {
    /// The item.
    pub item: String,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl GcOut {
    /// What was found (`plan`, `problems`), and what became of it.
    pub fn new(
        plan: &GcPlan,
        problems: &[String],
        req: &ReconcileRequest,
        done: Vec<String>,
        skipped: Vec<(String, String)>,
        failed: Vec<(String, String)>,
    ) -> Self {
        let item = |a: &Action| GcItemOut {
            branch: a.branch().map(str::to_owned),
            action: a.describe(),
            kept: !a.is_due(req),
        };
        Self {
            found: plan.actions.iter().map(item).collect(),
            spared: plan
                .spared
                .iter()
                .map(|s| SparedOut {
                    what: s.what.clone(),
                    why: s.why.clone(),
                })
                .collect(),
            done,
            skipped: skipped
                .into_iter()
                .map(|(item, why)| GcResultOut {
                    item,
                    why: Some(why),
                    error: None,
                })
                .collect(),
            failed: failed
                .into_iter()
                .map(|(item, error)| GcResultOut {
                    item,
                    why: None,
                    error: Some(error),
                })
                .collect(),
            problems: problems.to_vec(),
        }
    }
}

/// `pwt config`: each key with its value and the layer it came from.
pub type ConfigOut = BTreeMap<String, ConfigValueOut>;

/// One value of `pwt config`.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ConfigValueOut {
    /// The value.
    pub value: serde_json::Value,
    /// Its layer: `default`, a file, or `environment variable PWT_…`.
    pub source: String,
}

/// `pwt infra up` and `pwt infra status`.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct InfraOut {
    /// Each service endpoint.
    pub services: Vec<crate::infra::ServiceStatus>,
}

/// One name held in the team store (`pwt list --team`).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HoldOut {
    /// Which service.
    pub kind: pwt_core::ResourceKind,
    /// The name (or `db N`).
    pub name: String,
    /// The server, `host:port`.
    pub server: String,
    /// Who holds it.
    pub holder: String,
    /// Their repository.
    pub repo: String,
    /// Their branch.
    pub branch: String,
    /// Since when (the store's timestamp).
    pub since: String,
}

impl From<&pwt_provision::Hold> for HoldOut {
    fn from(h: &pwt_provision::Hold) -> Self {
        Self {
            kind: h.kind,
            name: h.name.clone(),
            server: h.server.clone(),
            holder: h.who.holder.clone(),
            repo: h.who.repo.clone(),
            branch: h.who.branch.clone(),
            since: h.since.clone(),
        }
    }
}

/// `pwt env --format json`: each variable and its value.
pub type EnvOut = BTreeMap<String, String>;

/// `pwt status --format json`.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StatusOut {
    /// The worktree as `pwt list` shows it, its usage measured and ports probed.
    pub worktree: WorktreeOut,
    /// Each of its services (a leased worktree's; the main worktree's are its own business).
    pub services: Vec<ServiceOut>,
    /// The last lines each `[processes]` entry logged (`pwt dev --detach`), by name.
    pub logs: BTreeMap<String, Vec<String>>,
}

/// One service of a worktree.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ServiceOut {
    /// Which service.
    pub kind: pwt_core::ResourceKind,
    /// The worktree's resource there (`demo_feat`, `/demo/feat`, `demo:feat:` or `db 3`).
    pub resource: String,
    /// What the service says of it.
    pub state: ResourceState,
    /// What the server said, when it is not `ready`.
    pub detail: Option<String>,
}

/// What a service says of a worktree's resource (`pwt status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ResourceState {
    /// `ready`: there, and this worktree's.
    #[serde(rename = "ready")]
    Ready,
    /// `missing`: not there (`pwt up` makes it again, empty).
    #[serde(rename = "missing")]
    Missing,
    /// `not ours`: something else is at the name.
    #[serde(rename = "not ours")]
    NotOurs,
    /// `unreachable`: the server did not answer.
    #[serde(rename = "unreachable")]
    Unreachable,
}

impl ResourceState {
    /// Its name in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Missing => "missing",
            Self::NotOurs => "not ours",
            Self::Unreachable => "unreachable",
        }
    }
}

/// One variable of a worktree's environment (`pwt env --explain --format json`).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EnvVarOut {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// What it is.
    pub about: String,
}

/// The schema of each command's output, by file name in `schemas/`.
#[cfg(feature = "schema")]
pub fn schemas() -> Vec<(&'static str, schemars::Schema)> {
    vec![
        ("list.json", schemars::schema_for!(Vec<WorktreeOut>)),
        ("worktree.json", schemars::schema_for!(WorktreeOut)),
        ("rm.json", schemars::schema_for!(RemoveOut)),
        ("doctor.json", schemars::schema_for!(DoctorOut)),
        ("gc.json", schemars::schema_for!(GcOut)),
        ("config.json", schemars::schema_for!(ConfigOut)),
        ("infra.json", schemars::schema_for!(InfraOut)),
        ("team.json", schemars::schema_for!(Vec<HoldOut>)),
        ("env.json", schemars::schema_for!(EnvOut)),
        ("top.json", schemars::schema_for!(crate::info::TopOut)),
        ("status.json", schemars::schema_for!(StatusOut)),
        ("env-explain.json", schemars::schema_for!(Vec<EnvVarOut>)),
    ]
}
