//! The team store in the lifecycle: with a `[team]` section, the names of a lease's database,
//! vhost and Redis prefix or DB index are claimed there (a unique key per server and name)
//! before anything is created, so people and machines sharing the servers never get the same
//! one; they are let go when the data goes; gc lets go only its own holder's.

use pwt_alloc::Lease;
use pwt_core::{Config, DbName, RedisPrefix, RedisSlot, ResourceKind, Resources, Vhost};
use pwt_provision::{Hold, Holder, TeamStore};

use crate::error::{Error, ErrorKind, Result};
use crate::leases::Avoid;
use crate::project::Project;

/// Gives a lease (by branch) the next names of some kinds, keeping away from `Avoid`.
pub(crate) type Reassign<'a> = dyn FnMut(&str, &[ResourceKind], &Avoid) -> Result<Lease> + 'a;

/// One claimable name: (kind, server, name).
type Item = (String, String, String);

impl Project {
    /// The project's team part, when `[team]` is configured: what it claims and lets go in
    /// the team store, as this pwt's holder.
    pub(crate) fn team(&self) -> Option<Team> {
        let url = self.config.team_url()?;
        Some(Team {
            store: TeamStore::new(&url),
            holder: self.options.holder.clone(),
            repo: self.repo.key(),
            servers: ResourceKind::ALL.map(|k| server_of(&self.config, k)),
        })
    }

    /// Everything the team store holds, for `pwt list --team`.
    pub fn team_holds(&self) -> Result<Vec<Hold>> {
        let Some(team) = self.team() else {
            return Err(Error::new(ErrorKind::Config, "no team store is configured")
                .hint("add a `[team]` section to pwt.toml (its url defaults to [postgres] url)"));
        };
        team.holds()
    }
}

/// The server a kind of resource lives on: its URL's host and port.
fn server_of(config: &Config, kind: ResourceKind) -> Option<String> {
    let url = match kind {
        ResourceKind::Database => config.postgres.as_ref().map(|p| p.url.clone()),
        ResourceKind::Vhost => config.rabbitmq.as_ref().map(|m| m.management_url.clone()),
        ResourceKind::Redis => config.redis.as_ref().map(|r| r.url.clone()),
    }?;
    let u = url::Url::parse(&url).ok()?;
    Some(format!(
        "{}:{}",
        u.host_str()?,
        u.port_or_known_default().unwrap_or(0)
    ))
}

/// The team part of a project: the store, this pwt's holder, and the servers its resources
/// live on (a hold names its server).
pub(crate) struct Team {
    store: TeamStore,
    holder: String,
    repo: String,
    /// By [`ResourceKind::ALL`]'s order.
    servers: [Option<String>; 3],
}

impl Team {
    /// This pwt's holder for a branch.
    fn holder(&self, branch: &str) -> Holder {
        Holder {
            holder: self.holder.clone(),
            repo: self.repo.clone(),
            branch: branch.to_owned(),
        }
    }

    fn server_of(&self, kind: ResourceKind) -> Option<String> {
        let i = ResourceKind::ALL.iter().position(|k| *k == kind)?;
        self.servers[i].clone()
    }

    fn items(&self, resources: &Resources) -> Vec<Item> {
        let mut out = Vec::new();
        let mut push = |kind: ResourceKind, name: String| {
            if let Some(server) = self.server_of(kind) {
                out.push((kind.as_str().to_owned(), server, name));
            }
        };
        if let Some(d) = &resources.database {
            push(ResourceKind::Database, d.to_string());
        }
        if let Some(v) = &resources.vhost {
            push(ResourceKind::Vhost, v.to_string());
        }
        match &resources.redis {
            Some(RedisSlot::Prefix(p)) => push(ResourceKind::Redis, p.to_string()),
            Some(RedisSlot::Db(n)) => push(ResourceKind::Redis, format!("db {n}")),
            None => {}
        }
        out
    }

    /// What others hold in the team store on this project's servers, as resources for the
    /// plan to keep away from.
    pub(crate) fn held_by_others(&self, branch: &str) -> Result<Vec<Resources>> {
        let me = self.holder(branch);
        Ok(self
            .holds()?
            .into_iter()
            .filter(|h| h.who != me)
            .filter_map(|h| self.resource_of_hold(&h))
            .collect())
    }

    fn resource_of_hold(&self, h: &Hold) -> Option<Resources> {
        let mut r = Resources::default();
        let kind = match h.kind.as_str() {
            "database" => ResourceKind::Database,
            "vhost" => ResourceKind::Vhost,
            "redis" => ResourceKind::Redis,
            _ => return None,
        };
        if self.server_of(kind).as_deref() != Some(h.server.as_str()) {
            return None;
        }
        match kind {
            ResourceKind::Database => r.database = DbName::parse(&h.name).ok(),
            ResourceKind::Vhost => r.vhost = Vhost::parse(&h.name).ok(),
            ResourceKind::Redis => {
                r.redis = match h.name.strip_prefix("db ").map(str::parse::<u16>) {
                    Some(Ok(n)) => Some(RedisSlot::Db(n)),
                    _ => RedisPrefix::parse(&h.name).ok().map(RedisSlot::Prefix),
                };
            }
        }
        Some(r)
    }

    /// Claims the lease's names in the team store; a name someone else took meanwhile is
    /// given up for the next one (`reassign` names them) when `may_move` (a lease this run
    /// made, whose names hold no data yet). A lease that had its names before keeps them:
    /// one held by another holder is refused, since moving the worktree to new names would
    /// leave its data behind. There is no fixed number of tries: each lost claim adds a
    /// name (or index) to `avoid`, so it ends when a claim holds, or when no DB index is
    /// left. Returns the lease as it ends up.
    pub(crate) fn claim(
        &self,
        lease: Lease,
        may_move: bool,
        avoid: &mut Avoid,
        reassign: &mut Reassign<'_>,
    ) -> Result<Lease> {
        let who = self.holder(lease.branch.as_str());
        let mut lease = lease;
        loop {
            let items = self.items(&lease.resources);
            let held = block_on(self.store.claim(&items, &who))?;
            if held.is_empty() {
                return Ok(lease);
            }
            if !may_move {
                return Err(self.held_elsewhere(&lease, &held));
            }
            let kinds: Vec<ResourceKind> = ResourceKind::ALL
                .into_iter()
                .filter(|k| held.iter().any(|(kind, _, _)| kind == k.as_str()))
                .collect();
            if !avoid.note(&lease.resources, &kinds) {
                return Err(self.held_elsewhere(&lease, &held));
            }
            // What others hold now, so the next names avoid all of it at once.
            avoid.held = self.held_by_others(lease.branch.as_str())?;
            lease = reassign(lease.branch.as_str(), &kinds, avoid)?;
        }
    }

    /// The refusal of a lease whose own names the team store gives to another holder.
    fn held_elsewhere(&self, lease: &Lease, held: &[Item]) -> Error {
        let holds = self.holds().unwrap_or_default();
        let lines: Vec<String> = held
            .iter()
            .map(|(kind, server, name)| {
                let by = holds
                    .iter()
                    .find(|h| h.kind.as_str() == kind && &h.server == server && &h.name == name)
                    .map_or("someone".to_owned(), |h| {
                        format!("{} (branch {:?})", h.who.holder, h.who.branch)
                    });
                format!("{kind} {name:?} on {server} is held by {by}")
            })
            .collect();
        Error::new(
            ErrorKind::Refused,
            format!(
                "the names of {:?} are held by another holder in the team store, and pwt will not move a worktree to new names (its data would be left behind); nothing was changed:\n  {}",
                lease.branch.as_str(),
                lines.join("\n  ")
            ),
        )
        .hint(format!(
            "this pwt holds as {:?}: if that holder is you under another name, run with PWT_HOLDER set to it; `pwt list --team` shows who holds what",
            self.holder
        ))
    }

    /// Lets go of what this pwt holds among `resources` (their data is gone).
    pub(crate) fn release(&self, lease: &Lease, resources: &Resources) -> Result<()> {
        let items = self.items(resources);
        if items.is_empty() {
            return Ok(());
        }
        block_on(
            self.store
                .release(&items, &self.holder(lease.branch.as_str())),
        )
    }

    /// Everything the team store holds.
    pub(crate) fn holds(&self) -> Result<Vec<Hold>> {
        block_on(self.store.holds())
    }

    /// This holder's holds for this repository that no lease or kept data of this
    /// registry accounts for and no worktree's env file declares (a pwt killed between its
    /// claim and its lease): gc lets them go. Never another holder's, and never one a
    /// worktree still uses (a lost registry leaves them all unaccounted).
    pub(crate) fn stale_holds(
        &self,
        state: &pwt_alloc::State,
        declared: &pwt_alloc::Declared,
    ) -> Result<Vec<Hold>> {
        Ok(self
            .holds()?
            .into_iter()
            .filter(|h| h.who.holder == self.holder && h.who.repo == self.repo)
            .filter(|h| {
                let r = self.resource_of_hold(h);
                let accounted = state
                    .leases
                    .iter()
                    .map(|l| &l.resources)
                    .chain(state.kept.iter().map(|k| &k.resources))
                    .any(|x| r.as_ref().is_some_and(|r| same_resource(r, x)));
                !accounted
                    && !r
                        .as_ref()
                        .is_some_and(|r| crate::plan::declares_resources(declared, r))
            })
            .collect())
    }

    /// Lets one stale hold go.
    pub(crate) fn release_hold(&self, h: &Hold) -> Result<()> {
        let item = (h.kind.as_str().to_owned(), h.server.clone(), h.name.clone());
        block_on(self.store.release(&[item], &h.who))
    }
}

/// Runs one call to the team store; an unreachable store's error says what it is.
fn block_on<T>(
    fut: impl std::future::Future<Output = Result<T, pwt_provision::ProvisionError>>,
) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime always builds");
    rt.block_on(fut).map_err(|e| {
        let plain = matches!(
            e,
            pwt_provision::ProvisionError::Unreachable { .. }
                | pwt_provision::ProvisionError::Failed { .. }
        );
        let e = Error::from(e);
        if !plain || e.hint_text().is_some() {
            e
        } else {
            e.hint("the team store (`[team]` in pwt.toml) is a PostgreSQL every member reaches; is it up? `pwt doctor` checks it")
        }
    })
}

fn same_resource(a: &Resources, b: &Resources) -> bool {
    (a.database.is_some() && a.database == b.database)
        || (a.vhost.is_some() && a.vhost == b.vhost)
        || (a.redis.is_some() && a.redis == b.redis)
}
