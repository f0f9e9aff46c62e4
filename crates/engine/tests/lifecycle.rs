//! The lifecycle in-process, as an embedder drives it: create, adopt, remove, reconcile and
//! diagnose through the engine's API against this machine's PostgreSQL, RabbitMQ and Redis
//! and real git, with typed assertions on the results, events and errors that come back.
//! (The binary's own tests keep to what only the binary does: arguments, rendering, exit
//! codes, signals.)

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pwt::{
    Action, AdoptRequest, Approvals, BranchName, Collect, ConfigSources, CreateRequest, ErrorKind,
    Event, LeaseState, Level, LoadedConfig, Options, Project, ReconcileRequest, Released, Removal,
    RemoveRequest, ResourceKind, SetUp, SetUpOutcome, Silent, Step, WorktreeState,
};
use pwt_tests::{Sandbox, db_exists, redis_keys, redis_set, services_toml, unique, vhost_exists};

/// A repository of a test's own (with `pwt_toml` committed) in a sandbox of its own.
struct World {
    sandbox: Sandbox,
    repo: PathBuf,
}

impl World {
    fn new(pwt_toml: &str) -> Self {
        let sandbox = Sandbox::new();
        let repo = sandbox.repo("demo", Some(pwt_toml));
        Self { sandbox, repo }
    }

    /// With all three services, under a project name unique to this run; `None` (the test
    /// is skipped) when a service is down outside CI.
    fn services(tag: &str) -> Option<(Self, String)> {
        if !pwt_tests::all_services_up() {
            return None;
        }
        let project = unique(tag);
        Some((Self::new(&services_toml(&project, "prefix")), project))
    }

    /// The project, configured as the binary would (the repository's pwt.toml through the
    /// engine's own loading), with `approvals`.
    fn open(&self, approvals: Approvals) -> Project {
        self.open_at(&self.repo, approvals)
    }

    /// Another repository of the same sandbox (the same registry), opened likewise.
    fn open_at(&self, repo: &std::path::Path, approvals: Approvals) -> Project {
        let loaded = LoadedConfig::load(&ConfigSources {
            roots: pwt::config_roots(repo).expect("config roots"),
            ..ConfigSources::default()
        })
        .expect("configuration loads");
        let mut options = Options::loaded(self.sandbox.state_dir(), loaded);
        options.machine_dir = Some(self.sandbox.root().join("machine"));
        options.child_output = pwt::ChildOutput::Null;
        options.approvals = approvals;
        Project::open(repo, options).expect("project opens")
    }
}

fn create(branch: &str) -> CreateRequest {
    CreateRequest {
        branch: BranchName::parse(branch).expect("a valid branch name"),
        base: None,
        path: None,
        hooks: true,
        keep_on_failure: false,
    }
}

fn remove(target: &str) -> RemoveRequest {
    RemoveRequest {
        target: target.into(),
        hooks: true,
        ..RemoveRequest::default()
    }
}

fn database(set_up: &SetUp) -> String {
    set_up
        .lease
        .resources
        .database
        .as_ref()
        .expect("a database")
        .as_str()
        .to_owned()
}

fn vhost(set_up: &SetUp) -> String {
    set_up
        .lease
        .resources
        .vhost
        .as_ref()
        .expect("a vhost")
        .as_str()
        .to_owned()
}

fn prefix(set_up: &SetUp) -> String {
    set_up
        .lease
        .resources
        .redis_prefix()
        .expect("a Redis prefix")
        .as_str()
        .to_owned()
}

/// The leases this project's registry holds.
fn leases(p: &Project) -> Vec<String> {
    p.state()
        .expect("registry reads")
        .leases
        .iter()
        .map(|l| l.branch.to_string())
        .collect()
}

#[test]
fn create_provisions_each_service_and_remove_releases_each() {
    let Some((w, project)) = World::services("lc") else {
        return;
    };
    let p = w.open(Approvals::Trust);
    let mut events = Collect::default();
    let set_up = p
        .create(&create("feature/a"), &mut events)
        .expect("created");

    assert_eq!(set_up.outcome, SetUpOutcome::Created);
    assert_eq!(set_up.lease.state, LeaseState::Ready);
    let (db, vh, pre) = (database(&set_up), vhost(&set_up), prefix(&set_up));
    assert_eq!(db, format!("{project}_feature_a"));
    assert!(db_exists(&db), "database {db} exists");
    assert!(vhost_exists(&vh), "vhost {vh} exists");
    assert!(
        set_up
            .env
            .get("DATABASE_URL")
            .is_some_and(|u| u.ends_with(&format!("/{db}"))),
        "DATABASE_URL names the database: {:?}",
        set_up.env.get("DATABASE_URL")
    );
    let path = set_up.lease.path.clone();
    assert!(path.join(".env.worktree").is_file(), "env file written");
    assert!(
        events
            .0
            .contains(&Event::Step(Step::AddWorktree { path: path.clone() })),
        "the worktree's step was reported: {:?}",
        events.0
    );
    let listed = p.list(false).expect("list");
    let row = listed
        .iter()
        .find(|i| i.branch == "feature/a")
        .expect("listed");
    assert_eq!(row.state, WorktreeState::Ready);
    assert_eq!(row.database.as_deref(), Some(db.as_str()));

    let key = format!("{pre}session");
    redis_set(pwt_tests::REDIS_URL, &key, "1");
    let Removal::Removed(removed) = p
        .remove(&remove("feature/a"), &mut Silent)
        .expect("removed")
    else {
        panic!("nothing removed");
    };
    let kinds: Vec<ResourceKind> = removed
        .removed
        .iter()
        .filter_map(|r| match r {
            Released::Resource { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect();
    for kind in ResourceKind::ALL {
        assert!(
            kinds.contains(&kind),
            "{kind} released: {:?}",
            removed.removed
        );
    }
    assert!(removed.removed.contains(&Released::Worktree));
    assert!(!db_exists(&db), "database {db} dropped");
    assert!(!vhost_exists(&vh), "vhost {vh} deleted");
    assert_eq!(
        redis_keys(pwt_tests::REDIS_URL, &format!("{pre}*")),
        Vec::<String>::new()
    );
    assert!(!path.exists(), "worktree directory gone");
    assert!(leases(&p).is_empty(), "no lease left");
}

#[test]
fn a_service_down_rolls_back_everything_the_set_up_made() {
    if !pwt_tests::all_services_up() {
        return;
    }
    let project = unique("rb");
    let dead = format!("amqp://guest:guest@127.0.0.1:{}", pwt_tests::free_port());
    let toml = services_toml(&project, "prefix")
        .replace(pwt_tests::AMQP_URL, &dead)
        .replace(
            pwt_tests::MANAGEMENT_URL,
            &format!("http://127.0.0.1:{}", pwt_tests::free_port()),
        );
    let w = World::new(&toml);
    let p = w.open(Approvals::Trust);
    let e = p
        .create(&create("feature/b"), &mut Silent)
        .expect_err("RabbitMQ is down");
    assert_eq!(e.kind(), ErrorKind::Service, "{}", e.report());
    assert!(
        e.report().contains("RabbitMQ at http://127.0.0.1:"),
        "names the service: {}",
        e.report()
    );
    let rollback = e.rollback().expect("a rollback is reported");
    assert!(rollback.stuck.is_empty(), "{rollback:?}");
    assert!(
        rollback.undone.contains(&Released::Worktree),
        "the worktree went again: {rollback:?}"
    );
    assert!(!db_exists(&format!("{project}_feature_b")));
    assert_eq!(
        redis_keys(pwt_tests::REDIS_URL, &format!("{project}:feature-b:*")),
        Vec::<String>::new()
    );
    assert!(leases(&p).is_empty(), "no lease left");
    assert!(
        !w.sandbox.root().join("demo.feature-b").exists(),
        "no worktree directory left"
    );
    assert_eq!(
        w.sandbox.git(&w.repo, &["branch", "--list", "feature/b"]),
        "",
        "the branch this run made went too"
    );
}

/// A removal asked with `--keep-data` that stopped half-way (Docker went away, a kill): the
/// `pwt rm` that finishes it keeps the data too, asked again or not.
#[test]
fn a_resumed_removal_keeps_what_the_first_run_kept() {
    let Some((w, project)) = World::services("rk") else {
        return;
    };
    let p = w.open(Approvals::Trust);
    let set_up = p.create(&create("kept"), &mut Silent).expect("created");
    let db = database(&set_up);
    // What `pwt rm kept --keep-data` leaves when it stops right after marking the lease.
    let file = w.sandbox.state_dir().join("registry.json");
    let mut reg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("registry")).expect("json");
    let lease = reg["leases"]
        .as_array_mut()
        .expect("leases")
        .iter_mut()
        .find(|l| l["branch"] == "kept")
        .expect("lease");
    lease["state"] = "removing".into();
    lease["keep"] = serde_json::json!(["database", "vhost", "redis"]);
    lease["leftover"] = serde_json::json!(["worktree"]);
    std::fs::write(&file, reg.to_string()).expect("write");
    let removal = p.remove(&remove("kept"), &mut Silent).expect("finished");
    assert!(matches!(removal, Removal::Removed(_)), "{removal:?}");
    assert!(
        db_exists(&db),
        "the resumed removal dropped the kept database {db}"
    );
    let state = p.state().expect("registry");
    assert!(
        state.kept.iter().any(|k| k
            .resources
            .database
            .as_ref()
            .is_some_and(|d| d.as_str() == db)),
        "{:?}",
        state.kept
    );
    // Cleaned up by this test: the kept data goes with gc --kept.
    let plan = p
        .reconcile_plan(&ReconcileRequest {
            kept: true,
            all_repos: false,
        })
        .expect("plan");
    for a in plan.plan.actions.iter().filter(|a| {
        a.is_due(&ReconcileRequest {
            kept: true,
            all_repos: false,
        })
    }) {
        p.reconcile(a, &mut Silent).expect("kept data goes");
    }
    assert!(!db_exists(&db), "{project}");
}

#[test]
fn a_failing_hook_rolls_back_each_resource_and_says_which() {
    let Some((_, project)) = World::services("hk") else {
        return;
    };
    let toml = format!(
        "{}[hooks]\npost-create = [\"exit 3\"]\n",
        services_toml(&project, "prefix")
    );
    let w = World::new(&toml);
    let p = w.open(Approvals::Trust);
    let e = p
        .create(&create("hook"), &mut Silent)
        .expect_err("the hook fails");
    assert_eq!(e.kind(), ErrorKind::Hook, "{}", e.report());
    let rollback = e.rollback().expect("a rollback is reported");
    assert!(rollback.stuck.is_empty(), "{rollback:?}");
    for kind in ResourceKind::ALL {
        assert!(
            rollback
                .undone
                .iter()
                .any(|r| matches!(r, Released::Resource { kind: k, .. } if *k == kind)),
            "{kind} undone: {rollback:?}"
        );
    }
    assert!(rollback.undone.contains(&Released::Worktree));
    assert!(!db_exists(&format!("{project}_hook")));
    assert!(!vhost_exists(&format!("/{project}/hook")));
    assert!(leases(&p).is_empty());
}

#[test]
fn adopt_sets_up_a_worktree_git_made_and_again_keeps_its_names() {
    if !pwt_tests::all_services_up() {
        return;
    }
    let toml = format!(
        "{}[hooks]\npost-create = [\"echo \\\"$FEATURE $FRONTEND_PORT\\\" >> hook.log\"]\n",
        services_toml(&unique("ad"), "prefix")
    );
    let w = World::new(&toml);
    let p = w.open(Approvals::Trust);
    let dir = w.sandbox.root().join("by-hand");
    w.sandbox.git(
        &w.repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "by-hand",
            dir.to_str().expect("utf-8"),
        ],
    );
    let adopt = AdoptRequest {
        target: Some(pwt::Selector::Path(dir.clone())),
        hooks: true,
        ..AdoptRequest::default()
    };
    let first = p.adopt(&adopt, &mut Silent).expect("adopted");
    assert_eq!(first.outcome, SetUpOutcome::Adopted);
    assert_eq!(
        first.lease.path,
        std::fs::canonicalize(&dir).expect("canonical")
    );
    let env_file = dir.join(".env.worktree");
    let env_text = std::fs::read_to_string(&env_file).expect("env file");
    let again = p.adopt(&adopt, &mut Silent).expect("again");
    assert_eq!(again.outcome, SetUpOutcome::UpToDate);
    assert_eq!(
        std::fs::read_to_string(&env_file).expect("env file"),
        env_text
    );
    let log = std::fs::read_to_string(dir.join("hook.log")).expect("the hook ran");
    assert_eq!(
        log,
        format!("by-hand {}\n", first.lease.ports["frontend"]),
        "once, with the worktree's environment"
    );
    assert_eq!(
        w.sandbox.git(&dir, &["status", "--porcelain"]),
        "?? hook.log\n",
        "pwt's own files are ignored"
    );
    assert_eq!(again.lease.ports, first.lease.ports);
    assert_eq!(again.lease.resources, first.lease.resources);
    assert!(db_exists(&database(&first)));
    let e = p
        .remove(&remove("by-hand"), &mut Silent)
        .expect_err("hook.log is the user's");
    assert_eq!(e.kind(), ErrorKind::Refused, "{}", e.report());
    assert!(dir.join("hook.log").exists() && db_exists(&database(&first)));
    let forced = RemoveRequest {
        force: true,
        ..remove("by-hand")
    };
    p.remove(&forced, &mut Silent).expect("removed");
    assert!(!db_exists(&database(&first)));
}

#[test]
fn reconcile_releases_a_worktree_deleted_outside_pwt() {
    let Some((w, _)) = World::services("gc") else {
        return;
    };
    let p = w.open(Approvals::Trust);
    let set_up = p.create(&create("gone"), &mut Silent).expect("created");
    let db = database(&set_up);
    w.sandbox.git(
        &w.repo,
        &[
            "worktree",
            "remove",
            "--force",
            set_up.lease.path.to_str().expect("utf-8"),
        ],
    );
    let found = p
        .reconcile_plan(&ReconcileRequest::default())
        .expect("a plan");
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    let [Action::Gone(lease)] = found.plan.actions.as_slice() else {
        panic!("one Gone action expected: {:?}", found.plan.actions);
    };
    assert_eq!(lease.branch.as_str(), "gone");
    assert!(db_exists(&db), "a plan changes nothing");
    p.reconcile(&found.plan.actions[0], &mut Silent)
        .expect("reconciled");
    assert!(!db_exists(&db), "its database dropped");
    assert!(leases(&p).is_empty(), "its lease released");
    let after = p
        .reconcile_plan(&ReconcileRequest::default())
        .expect("a plan");
    assert!(after.plan.actions.is_empty(), "{:?}", after.plan.actions);
}

#[test]
fn diagnose_reports_a_database_dropped_by_hand() {
    let Some((w, _)) = World::services("dx") else {
        return;
    };
    let p = w.open(Approvals::Trust);
    let set_up = p.create(&create("doc"), &mut Silent).expect("created");
    let db = database(&set_up);
    let about_db = |findings: &[pwt::Finding]| {
        findings
            .iter()
            .filter(|f| f.level != Level::Ok && f.what.contains(&db))
            .count()
    };
    assert_eq!(about_db(&p.diagnose()), 0, "{:?}", p.diagnose());
    pwt_tests::sql(
        pwt_tests::POSTGRES_URL,
        &format!("DROP DATABASE \"{db}\" WITH (FORCE)"),
    );
    let findings = p.diagnose();
    assert_eq!(about_db(&findings), 1, "{findings:?}");
    let hint = findings
        .iter()
        .find(|f| f.what.contains(&db))
        .and_then(|f| f.hint.clone());
    assert!(
        hint.as_deref().is_some_and(|h| h.contains("pwt up doc")),
        "{hint:?}"
    );
    let up = p
        .adopt(
            &AdoptRequest {
                target: Some("doc".into()),
                hooks: true,
                ..AdoptRequest::default()
            },
            &mut Silent,
        )
        .expect("pwt up makes it again");
    assert_eq!(up.outcome, SetUpOutcome::UpToDate);
    assert!(db_exists(&db));
    p.remove(&remove("doc"), &mut Silent).expect("removed");
}

/// Processes are approved before they start, not before a set-up that never runs them; a
/// cancelled foreground run through a flag of its own leaves the project usable.
#[test]
fn processes_need_approval_to_start_only_and_a_run_stops_on_its_own_flag() {
    let w = World::new(
        "[ports]\nrange = [29800, 29849]\n[ports.services]\nweb = { env = \"WEB_PORT\", main = 8000 }\n[processes]\nweb = \"echo up; exec sleep 600\"\n",
    );
    let p = w.open(Approvals::default());
    let set_up = p
        .create(&create("quiet"), &mut Silent)
        .expect("nothing of the file runs");
    let e = p
        .start_processes(Some(&"quiet".into()), false, &mut Silent)
        .expect_err("the processes need approval");
    assert_eq!(e.kind(), ErrorKind::Unapproved, "{}", e.report());
    let p = w.open(Approvals::Trust);
    let spawned = p
        .start_processes(Some(&"quiet".into()), false, &mut Silent)
        .expect("started");
    assert_eq!(spawned[0].slug, set_up.lease.slug.as_str());
    let stop = pwt::Cancel::default();
    let lines: Mutex<Vec<String>> = Mutex::default();
    let code = std::thread::scope(|scope| {
        let flag = stop.clone();
        scope.spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            flag.cancel();
        });
        p.supervise(spawned, &stop, &|event| {
            if let pwt::Supervision::Line { line, .. } = event {
                lines
                    .lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(line).into_owned());
            }
        })
    });
    assert_eq!(code, None, "stopped");
    assert_eq!(lines.lock().expect("lock").as_slice(), ["up"]);
    assert!(p.running_processes(set_up.lease.slug.as_str()).is_empty());
    p.create(&create("after"), &mut Silent)
        .expect("the project goes on");
}

/// Two calls of one process (threads of an embedder, an MCP server's calls) setting up one
/// branch at once: one sets it up, the other is refused (busy, or it exists by then),
/// never a second set-up over the first.
#[test]
fn two_threads_of_one_process_never_set_up_one_branch_twice() {
    let w = World::new(
        "[ports]\nrange = [29850, 29899]\n[ports.services]\nweb = { env = \"WEB_PORT\", main = 8000 }\n[hooks]\npost-create = [\"sleep 1\"]\n",
    );
    for round in 0..3 {
        let branch = format!("twice-{round}");
        let results: Vec<pwt::Result<SetUp>> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..2)
                .map(|_| {
                    let (w, branch) = (&w, &branch);
                    scope.spawn(move || {
                        w.open(Approvals::Trust)
                            .create(&create(branch), &mut Silent)
                    })
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().expect("no panic"))
                .collect()
        });
        let made: Vec<&SetUp> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(made.len(), 1, "{results:?}");
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(
                matches!(e.kind(), ErrorKind::Busy | ErrorKind::Exists),
                "{}",
                e.report()
            );
            // Said as it is: no "interrupted" set-up to roll back, no other pwt.
            if e.kind() == ErrorKind::Busy {
                assert!(
                    e.to_string().contains("another call in this process"),
                    "{}",
                    e.report()
                );
            }
        }
        let p = w.open(Approvals::Trust);
        let state = p.state().expect("registry");
        let lease = state
            .leases
            .iter()
            .find(|l| l.branch.as_str() == branch)
            .expect("one lease");
        assert_eq!(lease.state, LeaseState::Ready);
        assert_eq!(lease.path, made[0].lease.path);
    }
}

/// A repository whose committed pwt.toml runs a post-create hook.
fn hooked() -> World {
    World::new("[hooks]\npost-create = [\"touch hook-ran\"]\n")
}

#[test]
fn an_unapproved_hook_never_runs_and_nothing_is_made() {
    let w = hooked();
    let p = w.open(Approvals::default());
    let e = p
        .create(&create("refused"), &mut Silent)
        .expect_err("refused by default");
    assert_eq!(e.kind(), ErrorKind::Unapproved, "{}", e.report());
    assert!(leases(&p).is_empty());
    assert!(!w.sandbox.root().join("demo.refused").exists());

    // Asked and declined: the same; the callback saw the command.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&seen);
    let p = w.open(Approvals::Ask(Arc::new(move |a: &pwt::Approval| {
        log.lock().expect("lock").push(a.shown.clone());
        false
    })));
    let e = p
        .create(&create("declined"), &mut Silent)
        .expect_err("declined");
    assert_eq!(e.kind(), ErrorKind::Unapproved);
    let shown = seen.lock().expect("lock").clone();
    assert_eq!(shown.len(), 1, "asked once: {shown:?}");
    assert!(shown[0].contains("touch hook-ran"), "{shown:?}");
    assert!(leases(&p).is_empty());

    // Asked and approved: it runs, and the approval is remembered.
    let p = w.open(Approvals::Ask(Arc::new(|_: &pwt::Approval| true)));
    let set_up = p
        .create(&create("approved"), &mut Silent)
        .expect("approved");
    assert!(set_up.lease.path.join("hook-ran").exists(), "the hook ran");
    let p = w.open(Approvals::default());
    let again = p
        .create(&create("remembered"), &mut Silent)
        .expect("remembered");
    assert!(again.lease.path.join("hook-ran").exists());
}

#[test]
fn a_hand_built_configuration_cannot_run_the_repositorys_hook_unapproved() {
    let w = hooked();
    let loaded = LoadedConfig::load(&ConfigSources {
        roots: pwt::config_roots(&w.repo).expect("roots"),
        ..ConfigSources::default()
    })
    .expect("loads");
    // The file's configuration passed as if it were the caller's own.
    for options in [
        Options::new(w.sandbox.state_dir(), loaded.config.clone()),
        Options::loaded(
            w.sandbox.state_dir(),
            LoadedConfig::from_config(loaded.config.clone()),
        ),
    ] {
        let p = Project::open(&w.repo, options).expect("opens");
        let e = p
            .create(&create("by-hand"), &mut Silent)
            .expect_err("the file's hook still needs approval");
        assert_eq!(e.kind(), ErrorKind::Unapproved, "{}", e.report());
        assert!(leases(&p).is_empty());
    }
    // A configuration of the caller's own that runs nothing of the file's needs nothing.
    let mut options = Options::new(w.sandbox.state_dir(), pwt::Config::default());
    options.machine_dir = Some(w.sandbox.root().join("machine"));
    let p = Project::open(&w.repo, options).expect("opens");
    let set_up = p.create(&create("own"), &mut Silent).expect("created");
    assert!(!set_up.lease.path.join("hook-ran").exists());
    // Removal asks only about pre-remove hooks, and an empty target names nothing.
    let e = p
        .remove(&RemoveRequest::default(), &mut Silent)
        .expect_err("empty target");
    assert_eq!(e.kind(), ErrorKind::Invalid, "{}", e.report());
    let w2 = w.open(Approvals::default());
    w2.remove(&remove("own"), &mut Silent)
        .expect("no pre-remove hook, nothing to approve");
}

#[test]
fn a_committed_worktree_path_is_confined_however_the_configuration_is_passed() {
    let w = World::new("[worktree]\npath = \"../.hidden-{{ slug }}/wt\"\n");
    let loaded = LoadedConfig::load(&ConfigSources {
        roots: pwt::config_roots(&w.repo).expect("roots"),
        ..ConfigSources::default()
    })
    .expect("loads");
    let mut options = Options::new(w.sandbox.state_dir(), loaded.config);
    options.machine_dir = Some(w.sandbox.root().join("machine"));
    let p = Project::open(&w.repo, options).expect("opens");
    let e = p
        .create(&create("escape"), &mut Silent)
        .expect_err("confined");
    assert_eq!(e.kind(), ErrorKind::Invalid, "{}", e.report());
    assert!(!w.sandbox.root().join(".hidden-escape").exists());
}

#[test]
fn removal_of_a_worktree_with_an_unapproved_pre_remove_hook_is_refused() {
    let w = World::new("[hooks]\npre-remove = [\"touch /dev/null\"]\n");
    let trusted = w.open(Approvals::Trust);
    let set_up = trusted
        .create(&create("keep"), &mut Silent)
        .expect("created");
    let p = w.open(Approvals::default());
    let e = p.remove(&remove("keep"), &mut Silent).expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Unapproved);
    assert!(set_up.lease.path.exists(), "nothing removed");
    let without_hooks = RemoveRequest {
        hooks: false,
        ..remove("keep")
    };
    p.remove(&without_hooks, &mut Silent)
        .expect("no hook, nothing to approve");
    assert!(!set_up.lease.path.exists());
}

#[test]
fn a_set_up_cancelled_midway_is_rolled_back() {
    let Some((w, project)) = World::services("cx") else {
        return;
    };
    let p = w.open(Approvals::Trust);
    let cancel = p.cancel().clone();
    // Cancelled as git adds the worktree (what Ctrl-C does in the binary).
    let mut on_step = |e: Event| {
        if matches!(e, Event::Step(Step::AddWorktree { .. })) {
            cancel.cancel();
        }
    };
    let e = p
        .create(&create("stop"), &mut on_step)
        .expect_err("cancelled");
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{}", e.report());
    assert!(!db_exists(&format!("{project}_stop")));
    assert!(leases(&p).is_empty());
    assert!(!w.sandbox.root().join("demo.stop").exists());
}

#[test]
fn hostile_branch_names_get_working_resources_and_nothing_runs() {
    let Some((w, project)) = World::services("hb") else {
        return;
    };
    let p = w.open(Approvals::Trust);
    let names = [
        "feat/x\";DROP_DATABASE_prod;--",
        "feat/$(touch${IFS}pwned)",
        "feat/`id`",
        "feat/x'y",
        "FEAT/X",
        "feat/x",
        "🚀",
        "postgres",
        "template1",
        "#50%{x}",
    ];
    let mut dbs = Vec::new();
    for name in names {
        let set_up = p
            .create(&create(name), &mut Silent)
            .unwrap_or_else(|e| panic!("{name:?}: {}", e.report()));
        let db = database(&set_up);
        assert!(db.starts_with(&project), "{name:?}: {db}");
        let url = set_up.env.get("DATABASE_URL").expect("DATABASE_URL");
        pwt_tests::sql(url, "CREATE TABLE t (x int)");
        let amqp = set_up.env.get("RABBITMQ_URL").expect("RABBITMQ_URL");
        pwt_tests::rt().block_on(pwt_tests::amqp_publish(amqp, "q", b"x"));
        dbs.push(db);
    }
    let mut distinct = dbs.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), names.len(), "one database each: {dbs:?}");
    assert!(db_exists("postgres") && db_exists("template1"));
    for d in [w.repo.clone(), w.sandbox.root().to_owned()] {
        assert!(!d.join("pwned").exists(), "nothing was evaluated");
    }
    for name in names {
        let forced = RemoveRequest {
            force: true,
            ..remove(name)
        };
        p.remove(&forced, &mut Silent)
            .unwrap_or_else(|e| panic!("{name:?}: {}", e.report()));
    }
    assert!(dbs.iter().all(|d| !db_exists(d)), "{dbs:?}");
}

#[test]
fn redis_db_mode_leases_distinct_indexes_until_none_is_left() {
    let Some(redis) = pwt_tests::RedisServer::start(&["--databases", "4"]) else {
        return;
    };
    let toml = format!(
        "project = \"{}\"\n[redis]\nurl = \"{}\"\nmode = \"db\"\n",
        unique("rd"),
        redis.url()
    );
    let w = World::new(&toml);
    let p = w.open(Approvals::Trust);
    // Three set-ups at once (each with a project of its own, as three pwt runs would
    // have): each gets its own index.
    let mut dbs: Vec<u16> = std::thread::scope(|scope| {
        let w = &w;
        let running: Vec<_> = (1..=3)
            .map(|i| {
                scope.spawn(move || {
                    w.open(Approvals::Trust)
                        .create(&create(&format!("r{i}")), &mut Silent)
                })
            })
            .collect();
        running
            .into_iter()
            .map(|t| {
                let set_up = t.join().expect("no panic").expect("created");
                set_up.lease.resources.redis_db().expect("a DB index")
            })
            .collect()
    });
    dbs.sort_unstable();
    assert_eq!(dbs, [1, 2, 3]);
    let e = p
        .create(&create("r4"), &mut Silent)
        .expect_err("no index left");
    assert_eq!(e.kind(), ErrorKind::Exhausted, "{}", e.report());
    assert!(
        e.report().contains("all Redis DB indexes 1-3 are leased"),
        "{}",
        e.report()
    );
    assert!(!w.sandbox.root().join("demo.r4").exists());
    assert_eq!(leases(&p).len(), 3, "the failed one left no lease");
    let freed = p
        .state()
        .expect("registry")
        .find(&p.repo().common_dir, "r2")
        .and_then(|l| l.resources.redis_db());
    p.remove(&remove("r2"), &mut Silent).expect("removed");
    let set_up = p
        .create(&create("r4"), &mut Silent)
        .expect("one is free again");
    assert_eq!(set_up.lease.resources.redis_db(), freed);
}

/// The worktree of `branch`, as the registry has it.
fn lease_path(p: &Project, branch: &str) -> PathBuf {
    p.state()
        .expect("registry")
        .find(&p.repo().common_dir, branch)
        .expect("a lease")
        .path
        .clone()
}

#[test]
fn remove_keeps_data_on_request_and_create_finds_it_again() {
    let Some((w, _)) = World::services("kd") else {
        return;
    };
    let p = w.open(Approvals::Trust);
    let first = p.create(&create("kept"), &mut Silent).expect("created");
    let db = database(&first);
    pwt_tests::sql(
        &format!("postgres://postgres@127.0.0.1:5432/{db}"),
        "CREATE TABLE t (x int); INSERT INTO t VALUES (42)",
    );
    let keep = RemoveRequest {
        keep_data: true,
        ..remove("kept")
    };
    let Removal::Removed(r) = p.remove(&keep, &mut Silent).expect("removed") else {
        panic!("nothing removed");
    };
    assert!(r.data_kept);
    assert_eq!(r.removed, [Released::Worktree]);
    assert!(db_exists(&db));
    let again = p.create(&create("kept"), &mut Silent).expect("again");
    assert_eq!(database(&again), db, "the same database");
    assert_eq!(lease_path(&p, "kept"), again.lease.path);
    p.remove(&remove("kept"), &mut Silent).expect("removed");
    assert!(!db_exists(&db));
}

#[test]
fn limits_hold_a_worktrees_processes_in_a_cgroup_or_say_why_not() {
    let w = World::new(
        "[limits]\nmemory = \"64M\"\ncpu = 0.5\n[processes]\nhog = \"python3 -c 'x = bytearray(300 << 20); import time; time.sleep(30)'\"\nidle = \"sleep 30\"\n",
    );
    let p = w.open(Approvals::Trust);
    let set_up = p.create(&create("limited"), &mut Silent).expect("created");
    let slug = set_up.lease.slug.to_string();
    let mut events = Collect::default();
    let started = p
        .start_processes(Some(&slug.as_str().into()), true, &mut events)
        .expect("started");
    let warned = events.0.iter().find_map(|e| match e {
        Event::Warning(w) if w.starts_with("[limits] not applied") => Some(w.clone()),
        _ => None,
    });
    let idle = started
        .iter()
        .find(|s| s.process.name == "idle")
        .expect("idle")
        .process
        .pid;
    // The wrapper shell moves itself into the groups first thing.
    let in_group = || {
        std::fs::read_to_string(format!("/proc/{idle}/cgroup")).is_ok_and(|g| g.contains("/pwt-"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while warned.is_none() && !in_group() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let groups = std::fs::read_to_string(format!("/proc/{idle}/cgroup")).expect("its cgroups");
    match warned {
        // This machine lets pwt make groups: the processes are in the worktree's, and the
        // one that wants more memory than the limit is killed by the kernel.
        None => {
            assert!(groups.contains("/pwt-"), "{groups}");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            let hog = loop {
                let state = p
                    .dev_processes(&slug)
                    .into_iter()
                    .find(|(d, _)| d.name == "hog")
                    .expect("hog recorded")
                    .1;
                if state != pwt::ProcessState::Running || std::time::Instant::now() > deadline {
                    break state;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            };
            assert!(
                matches!(hog, pwt::ProcessState::Exited(Some(c)) if c != 0),
                "the memory hog was stopped by the limit: {hog:?}"
            );
        }
        // It does not: they run, unlimited, and the warning names why.
        Some(why) => {
            assert!(why.contains("cgroup"), "{why}");
            assert!(!groups.contains("/pwt-"), "{groups}");
        }
    }
    p.stop_dev_processes(&slug, std::time::Duration::from_secs(2));
    p.remove(
        &RemoveRequest {
            force: true,
            ..remove("limited")
        },
        &mut Silent,
    )
    .expect("removed");
}

#[test]
fn below_the_free_memory_floor_nothing_starts() {
    let w =
        World::new("[limits]\nmin_free_memory = \"1000000G\"\n[processes]\nidle = \"sleep 30\"\n");
    let p = w.open(Approvals::Trust);
    let set_up = p.create(&create("floor"), &mut Silent).expect("created");
    let e = p
        .start_processes(Some(&set_up.lease.slug.as_str().into()), true, &mut Silent)
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Exhausted, "{}", e.report());
    assert!(
        e.report().contains("limits.min_free_memory"),
        "{}",
        e.report()
    );
    assert!(p.dev_processes(set_up.lease.slug.as_str()).is_empty());
}

/// A process the test started, stopped and reaped when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gone(pid: u32) -> bool {
    // A zombie (dead, not reaped by its parent) is gone too.
    !pwt::proc::running(pid)
}

fn wait_gone(pid: u32) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !gone(pid) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

#[test]
fn gc_stops_what_runs_for_worktrees_that_are_gone_and_nothing_else() {
    let w = World::new("[processes]\nidle = \"sleep 60\"\n");
    let p = w.open(Approvals::Trust);
    // A worktree deleted by hand while its pwt dev process and a shell in it run.
    let a = p.create(&create("deleted"), &mut Silent).expect("created");
    let started = p
        .start_processes(Some(&"deleted".into()), true, &mut Silent)
        .expect("started");
    let dev = started[0].process.pid;
    let mut shell = Child(
        std::process::Command::new("sleep")
            .arg("60")
            .current_dir(&a.lease.path)
            .spawn()
            .expect("spawn"),
    );
    // Someone else's process elsewhere: never touched.
    let mut bystander = Child(
        std::process::Command::new("sleep")
            .arg("60")
            .current_dir(w.sandbox.root())
            .spawn()
            .expect("spawn"),
    );
    std::fs::remove_dir_all(&a.lease.path).expect("rm -rf");
    w.sandbox.git(&w.repo, &["worktree", "prune"]);
    // Records of a worktree whose lease went while its processes ran on.
    let b = p.create(&create("stray"), &mut Silent).expect("created");
    let stray = p
        .start_processes(Some(&"stray".into()), true, &mut Silent)
        .expect("started");
    let stray_pid = stray[0].process.pid;
    let records = |slug: &str| {
        let base = w.sandbox.state_dir().join("processes");
        let repo_dir = std::fs::read_dir(&base)
            .expect("records")
            .flatten()
            .next()
            .expect("one repository")
            .path();
        repo_dir.join(slug)
    };
    std::fs::rename(records("stray"), records("ghost")).expect("rename");
    drop(b);

    let found = p
        .reconcile_plan(&ReconcileRequest::default())
        .expect("plan");
    let described: Vec<String> = found.plan.actions.iter().map(Action::describe).collect();
    assert!(
        found
            .plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Processes { slug, running } if slug == "ghost" && running[0].pid == stray_pid)),
        "{described:?}"
    );
    assert!(
        found
            .plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Gone(l) if l.branch.as_str() == "deleted")),
        "{described:?}"
    );
    for action in &found.plan.actions {
        if matches!(action, Action::Gone(_) | Action::Processes { .. }) {
            p.reconcile(action, &mut Silent).expect("reconciled");
        }
    }
    assert!(
        wait_gone(dev),
        "the deleted worktree's pwt dev process stopped"
    );
    assert!(
        wait_gone(shell.0.id()),
        "the shell in the deleted directory stopped"
    );
    assert!(wait_gone(stray_pid), "the stray record's process stopped");
    assert!(!gone(bystander.0.id()), "a process elsewhere is untouched");
    let _ = shell.0.try_wait();
    let _ = bystander.0.try_wait();
    let again = p
        .reconcile_plan(&ReconcileRequest::default())
        .expect("plan");
    assert!(
        !again
            .plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Processes { .. } | Action::Gone(_))),
        "{:?}",
        again.plan.actions
    );
    p.remove(&remove("stray"), &mut Silent).expect("removed");
}

#[test]
fn starts_at_once_start_one_set_of_processes() {
    let w = World::new("[processes]\nidle = \"exec sleep 60\"\n");
    let p = w.open(Approvals::Trust);
    let set_up = p.create(&create("twice"), &mut Silent).expect("created");
    let slug = set_up.lease.slug.to_string();
    let started: Vec<pwt::Result<Vec<pwt::Spawned>>> = std::thread::scope(|scope| {
        let w = &w;
        let slug = &slug;
        let runs: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(move || {
                    w.open(Approvals::Trust).start_processes(
                        Some(&slug.as_str().into()),
                        true,
                        &mut Silent,
                    )
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("no panic"))
            .collect()
    });
    let ok = started.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "one start wins");
    for r in &started {
        if let Err(e) = r {
            assert_eq!(e.kind(), ErrorKind::Busy, "{}", e.report());
        }
    }
    let running = p.running_processes(&slug);
    assert_eq!(running.len(), 1, "{running:?}");
    let stopped = p.stop_dev_processes(&slug, std::time::Duration::from_secs(2));
    assert!(stopped.iter().all(|(_, s)| *s));
    for r in started.into_iter().flatten() {
        for mut s in r {
            let _ = s.child.wait();
        }
    }
    p.remove(&remove("twice"), &mut Silent).expect("removed");
}

/// Two clones of one repository (one project name) on one machine: their worktrees of one
/// branch get Compose projects of their own, so neither's `pwt rm` takes down, nor its app
/// mounts the volumes of, the other's; the first keeps the plain name, and a registry
/// rebuilt from the env files keeps both.
#[test]
fn two_clones_never_share_a_compose_project() {
    // The seed workflow's `[env]` line says again what pwt sets: it means the distinct name.
    let toml = "project = \"shop\"\n[ports]\nrange = [29700, 29799]\n[ports.services]\nweb = { env = \"WEB_PORT\", main = 8000 }\n[env]\nCOMPOSE_PROJECT_NAME = \"{{ project }}-{{ slug }}\"\n";
    let w = World::new(toml);
    let other = w.sandbox.repo("clone", Some(toml));
    let (a, b) = (
        w.open(Approvals::Refuse),
        w.open_at(&other, Approvals::Refuse),
    );
    let compose = |p: &Project, set_up: &SetUp| {
        p.lease_environment(&set_up.lease)
            .expect("environment")
            .get("COMPOSE_PROJECT_NAME")
            .expect("set")
            .to_owned()
    };
    let first = a.create(&create("feat"), &mut Silent).expect("created");
    let second = b.create(&create("feat"), &mut Silent).expect("created");
    let (one, two) = (compose(&a, &first), compose(&b, &second));
    assert_eq!(one, "shop-feat");
    assert!(
        two.starts_with("shop-feat-") && two.len() == "shop-feat-".len() + 6,
        "{two}"
    );
    let written = std::fs::read_to_string(second.lease.path.join(".env.worktree")).expect("env");
    assert!(written.contains(&two), "{written}");
    // A lost registry, rebuilt from the env files: the same names.
    std::fs::remove_file(w.sandbox.state_dir().join("registry.json")).expect("registry");
    b.rebuild().expect("rebuilt");
    let state = b.state().expect("registry reads");
    let rebuilt: Vec<_> = state
        .leases
        .iter()
        .filter(|l| l.branch.as_str() == "feat")
        .collect();
    assert_eq!(rebuilt.len(), 1, "{rebuilt:?}");
    assert_eq!(rebuilt[0].compose.as_deref(), Some(two.as_str()));
}
