//! `pwt mcp`: a Model Context Protocol server over stdio, for an agent working in a
//! worktree (or, started with `--repository`, in any worktree of a repository).
//!
//! Reading is always on: the worktree's status (ports listening or not, its database, vhost
//! and Redis slot answering or why not, what runs and what it uses, log tails), its
//! environment with what each variable is, the repository's worktrees, the team store's
//! holds, a fresh OAuth `state`. What changes things comes in groups ([`McpTools`]) that are
//! offered — listed in `tools/list` at all — only when `[mcp] allow` or `--allow` names them.
//!
//! Each call opens the repository afresh through the caller's [`Opener`] (so it sees what
//! other pwt runs did meanwhile) on a blocking thread, at most [`CONCURRENT_CALLS`] at once.
//! A tool's failure is a tool error carrying the same message and hint as the CLI's; a call
//! for another worktree than the server's, or for a tool not offered, is refused.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use pwt::{Approvals, BranchName, CreateRequest, Project, RemoveRequest, Selector, Silent};
use pwt_core::McpTools;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, ServiceExt as _};
use serde_json::{Value, json};

/// Opens the repository the server serves, configured as the caller's CLI would (its
/// configuration layers, its approvals).
pub type Opener = Arc<dyn Fn() -> pwt::Result<Project> + Send + Sync>;

/// At most this many tool calls run at once; more wait their turn.
pub const CONCURRENT_CALLS: usize = 4;

/// What the server answers for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One worktree, by its root: a call naming another is refused.
    Worktree(PathBuf),
    /// Every worktree of the repository: calls name one (default: the main worktree).
    Repository,
}

/// The server.
#[derive(Clone)]
pub struct Server {
    open: Opener,
    scope: Scope,
    /// The worktree the server runs in (the agent's), never removed by a tool.
    home: Option<PathBuf>,
    allow: BTreeSet<McpTools>,
    team: bool,
    turns: Arc<tokio::sync::Semaphore>,
}

/// One tool: its name, what it does, the group it belongs to (`None`: reading), its
/// parameters (name, JSON type, what it is).
struct Spec {
    name: &'static str,
    about: &'static str,
    group: Option<McpTools>,
    params: &'static [(&'static str, &'static str, &'static str)],
    required: &'static [&'static str],
}

const WORKTREE: (&str, &str, &str) = (
    "worktree",
    "string",
    "Branch, slug or path of the worktree (default: the server's own).",
);

const SPECS: &[Spec] = &[
    Spec {
        name: "status",
        about: "The worktree now: each port and whether something listens on it, its database, vhost and Redis slot and whether each answers with this worktree's (or why not), what runs for it (pwt dev processes, processes working in it, listeners on its ports) with CPU and memory, and the last lines of each process log. Same as `pwt status --format json`.",
        group: None,
        params: &[
            WORKTREE,
            (
                "log_lines",
                "integer",
                "Lines of each process log (default 20, at most 500).",
            ),
        ],
        required: &[],
    },
    Spec {
        name: "environment",
        about: "Each variable of the worktree's environment (what its env files hold) with its value and what it is: the port of which service, its database URL, its Redis prefix, its URL through the proxy, the OAuth redirect URI. Same as `pwt env --explain --format json`.",
        group: None,
        params: &[WORKTREE],
        required: &[],
    },
    Spec {
        name: "worktrees",
        about: "Every worktree of the repository: branch, state, ports (listening or not), URL, database, vhost, Redis slot, processes and what they use. Same as `pwt list --format json`.",
        group: None,
        params: &[],
        required: &[],
    },
    Spec {
        name: "team_holds",
        about: "Who holds which database, vhost and Redis name on the shared servers (the team store). Same as `pwt list --team --format json`.",
        group: None,
        params: &[],
        required: &[],
    },
    Spec {
        name: "oauth_state",
        about: "A fresh OAuth `state` for a login that must come back to this worktree through the single redirect URI, and that URI. Same as `pwt state`.",
        group: None,
        params: &[WORKTREE],
        required: &[],
    },
    Spec {
        name: "start_processes",
        about: "Start the worktree's [processes] (detached, logging; `pwt dev --detach`).",
        group: Some(McpTools::Processes),
        params: &[WORKTREE],
        required: &[],
    },
    Spec {
        name: "stop_processes",
        about: "Stop what `pwt dev` started for the worktree (SIGTERM, then SIGKILL; `pwt stop`).",
        group: Some(McpTools::Processes),
        params: &[WORKTREE],
        required: &[],
    },
    Spec {
        name: "up",
        about: "Set the worktree up again: make any missing database, vhost or Redis slot, rewrite its env files (`pwt up`).",
        group: Some(McpTools::Up),
        params: &[WORKTREE],
        required: &[],
    },
    Spec {
        name: "reset_database",
        about: "Drop the worktree's database and make it again as a copy of the main worktree's (its clients are disconnected).",
        group: Some(McpTools::ResetDatabase),
        params: &[WORKTREE],
        required: &[],
    },
    Spec {
        name: "create_worktree",
        about: "Create a worktree for a branch with its own ports, database, vhost and Redis slot (`pwt new`).",
        group: Some(McpTools::Worktrees),
        params: &[
            (
                "branch",
                "string",
                "The branch (made from `base` or HEAD when new).",
            ),
            (
                "base",
                "string",
                "Where a new branch starts (default: HEAD).",
            ),
        ],
        required: &["branch"],
    },
    Spec {
        name: "remove_worktree",
        about: "Remove a worktree and everything pwt set up for it (`pwt rm`); refused with uncommitted changes unless `force`. Never the server's own worktree, never the main one.",
        group: Some(McpTools::Worktrees),
        params: &[
            (
                "worktree",
                "string",
                "Branch, slug or path of the worktree to remove.",
            ),
            (
                "force",
                "boolean",
                "Remove even with uncommitted or untracked changes (they are lost).",
            ),
            (
                "keep_data",
                "boolean",
                "Keep its database, vhost and Redis data.",
            ),
        ],
        required: &["worktree"],
    },
];

impl Server {
    /// A server for `scope`, offering the lifecycle groups `allow` (with those the
    /// repository's `[mcp] allow` names). `team`: the repository has a team store.
    pub fn new(open: Opener, scope: Scope, allow: BTreeSet<McpTools>, team: bool) -> Self {
        Self {
            open,
            scope,
            home: None,
            allow,
            team,
            turns: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CALLS)),
        }
    }

    /// The worktree the server process runs in (the agent's own, whatever the scope):
    /// `remove_worktree` never removes it.
    #[must_use]
    pub fn with_home(mut self, root: PathBuf) -> Self {
        self.home = Some(root);
        self
    }

    /// The tools offered, in order.
    fn offered(&self) -> impl Iterator<Item = &'static Spec> + '_ {
        SPECS.iter().filter(|s| match s.group {
            None => s.name != "team_holds" || self.team,
            Some(g) => self.allow.contains(&g),
        })
    }

    /// Serves on stdin and stdout until the client goes, or `stop` is set (SIGTERM, say:
    /// the caller's projects share its flag, so a set-up under way rolls back); then the
    /// calls under way finish before the server ends.
    pub async fn serve_stdio(
        self,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let turns = self.turns.clone();
        let running = self.serve(rmcp::transport::io::stdio()).await?;
        let token = running.cancellation_token();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            // Every turn back: nothing is under way any more.
            let all = u32::try_from(CONCURRENT_CALLS).unwrap_or(u32::MAX);
            let _done = turns.acquire_many(all).await;
            token.cancel();
        });
        running.waiting().await?;
        Ok(())
    }

    /// Runs one call on a blocking thread, in turn.
    async fn call(&self, name: String, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let _turn = self
            .turns
            .acquire()
            .await
            .map_err(|_| ErrorData::internal_error("the server is stopping", None))?;
        let me = self.clone();
        let result = tokio::task::spawn_blocking(move || me.run(&name, &args))
            .await
            .map_err(|e| ErrorData::internal_error(format!("the call failed: {e}"), None))?;
        Ok(match result {
            Ok(value) => CallToolResult::structured(value),
            // The engine's hint speaks to programs; the agent needs a person to act.
            Err(e) if e.kind() == pwt::ErrorKind::Unapproved => tool_error(&e.hint(
                "ask the user to read them and run `pwt trust` in the worktree (this server cannot ask: its stdin is the protocol), or to start it with `pwt mcp --yes`",
            )),
            Err(e) => tool_error(&e),
        })
    }

    /// The call itself.
    fn run(&self, name: &str, args: &JsonObject) -> pwt::Result<Value> {
        let project = (self.open)()?;
        let named = string(args, "worktree")?;
        let target = if name == "remove_worktree" || name == "create_worktree" {
            None
        } else {
            self.target(&project, named.as_deref())?
        };
        let target = target.as_ref();
        match name {
            "status" => {
                let lines = match args.get("log_lines") {
                    None | Some(Value::Null) => 20,
                    Some(v) => v
                        .as_u64()
                        .map(|n| usize::try_from(n).unwrap_or(pwt::MAX_LOG_LINES))
                        .ok_or_else(|| bad_arg("log_lines", "a whole number", v))?,
                };
                to_value(&project.status(target, lines)?)
            }
            "environment" => Ok(json!({ "variables": project.explained_environment(target)? })),
            "worktrees" => {
                let mut rows = project.list(true)?;
                pwt::measure_usage(&mut rows);
                let out: Vec<pwt::WorktreeOut> = rows.iter().map(pwt::WorktreeOut::from).collect();
                Ok(json!({ "worktrees": out }))
            }
            "team_holds" => {
                let holds: Vec<pwt::HoldOut> = project
                    .team_holds()?
                    .iter()
                    .map(pwt::HoldOut::from)
                    .collect();
                Ok(json!({ "holds": holds }))
            }
            "oauth_state" => {
                let state = project.oauth_state(target)?;
                let (_, env) = project.worktree_environment(target)?;
                Ok(json!({ "state": state, "redirect_uri": env.get("OAUTH_REDIRECT_URI") }))
            }
            _ => self.change(&project, name, target, args),
        }
    }

    /// The lifecycle tools.
    fn change(
        &self,
        project: &Project,
        name: &str,
        target: Option<&Selector>,
        args: &JsonObject,
    ) -> pwt::Result<Value> {
        match name {
            "start_processes" => {
                let started: Vec<Value> = project
                    .start_processes(target, true, &mut Silent)?
                    .into_iter()
                    .map(|s| json!({ "name": s.process.name, "pid": s.process.pid, "log": s.process.log }))
                    .collect();
                Ok(json!({ "started": started }))
            }
            "stop_processes" => {
                let m = project.managed(target)?;
                let stopped: Vec<Value> = project
                    .stop_dev_processes(&m.slug, std::time::Duration::from_secs(5))
                    .into_iter()
                    .map(|(p, ok)| json!({ "name": p.name, "pid": p.pid, "stopped": ok }))
                    .collect();
                Ok(json!({ "stopped": stopped }))
            }
            "up" => {
                let req = pwt::AdoptRequest {
                    target: target.cloned(),
                    hooks: true,
                    ..pwt::AdoptRequest::default()
                };
                let done = project.adopt(&req, &mut Silent)?;
                to_value(
                    &project
                        .status(Some(&pwt::Selector::Path(done.lease.path.clone())), 0)?
                        .worktree,
                )
            }
            "reset_database" => Ok(json!({ "database": project.reset_database(target)? })),
            "create_worktree" => {
                let branch = string(args, "branch")?.unwrap_or_default();
                let req = CreateRequest {
                    branch: BranchName::parse(&branch)?,
                    base: string(args, "base")?,
                    path: None,
                    hooks: true,
                    keep_on_failure: false,
                };
                let done = project.create(&req, &mut Silent)?;
                to_value(
                    &project
                        .status(Some(&pwt::Selector::Path(done.lease.path.clone())), 0)?
                        .worktree,
                )
            }
            "remove_worktree" => self.remove(project, args),
            other => Err(pwt::Error::new(
                pwt::ErrorKind::Invalid,
                format!("no tool named {other:?}"),
            )),
        }
    }

    fn remove(&self, project: &Project, args: &JsonObject) -> pwt::Result<Value> {
        let named = string(args, "worktree")?.unwrap_or_default();
        let m = project.managed(Some(&named.as_str().into()))?;
        let own = match &self.scope {
            Scope::Worktree(own) => Some(own),
            Scope::Repository => None,
        };
        if own
            .into_iter()
            .chain(self.home.as_ref())
            .any(|o| *o == m.root)
        {
            return Err(pwt::Error::new(
                pwt::ErrorKind::Refused,
                "remove_worktree never removes the worktree this server serves (the agent works in it)",
            )
            .hint("run `pwt rm` yourself when the work is done"));
        }
        let req = RemoveRequest {
            target: pwt::Selector::Path(m.root.clone()),
            force: flag(args, "force")?,
            keep_data: flag(args, "keep_data")?,
            hooks: true,
            ..RemoveRequest::default()
        };
        let out = pwt::RemoveOut::of(&named, &project.remove(&req, &mut Silent)?);
        to_value(&out)
    }

    /// The worktree a call is for: the named one, which in worktree scope must be the
    /// server's own; else the server's own (the main worktree in repository scope).
    fn target(&self, project: &Project, named: Option<&str>) -> pwt::Result<Option<Selector>> {
        match (&self.scope, named) {
            (Scope::Repository, named) => Ok(named.map(Selector::from)),
            (Scope::Worktree(own), None) => Ok(Some(Selector::Path(own.clone()))),
            (Scope::Worktree(own), Some(n)) => {
                let m = project.managed(Some(&n.into()))?;
                if m.root == *own {
                    Ok(Some(Selector::Path(own.clone())))
                } else {
                    Err(pwt::Error::new(
                        pwt::ErrorKind::Refused,
                        format!(
                            "this server answers for the worktree at {} only, not {n:?}",
                            own.display()
                        ),
                    )
                    .hint("start `pwt mcp --repository` to let an agent ask about every worktree"))
                }
            }
        }
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        let scope = match &self.scope {
            Scope::Worktree(root) => format!("the worktree at {}", root.display()),
            Scope::Repository => "every worktree of this repository".to_owned(),
        };
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("pwt", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "pwt gives each git worktree its own ports, database, RabbitMQ vhost, Redis slot and URL. This server answers for {scope}. Ask `status` when a server does not answer, `environment` for what each variable is."
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            self.offered().map(tool).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        if !self.offered().any(|s| s.name == name) {
            let off = SPECS
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| s.group)
                .map(|g| {
                    format!(
                        "; it is off: `[mcp] allow = [\"{0}\"]` in pwt.toml or `pwt mcp --allow {0}` turns it on",
                        g.as_str()
                    )
                })
                .unwrap_or_default();
            return Err(ErrorData::invalid_params(
                format!("no tool named {name:?}{off}"),
                None,
            ));
        }
        let args = request.arguments.unwrap_or_default();
        self.call(name, args).await.map(CallToolResponse::from)
    }
}

/// The tool as `tools/list` shows it.
fn tool(spec: &Spec) -> Tool {
    let properties: serde_json::Map<String, Value> = spec
        .params
        .iter()
        .map(|(name, kind, about)| {
            let mut p = json!({ "type": kind, "description": about });
            if *kind == "integer" {
                p["minimum"] = json!(0);
            }
            ((*name).to_owned(), p)
        })
        .collect();
    let schema = json!({
        "type": "object",
        "properties": properties,
        "required": spec.required,
        "additionalProperties": false,
    });
    let Value::Object(schema) = schema else {
        unreachable!("a JSON object literal")
    };
    let mut t = Tool::new(spec.name, spec.about, Arc::new(schema));
    let read_only = spec.group.is_none();
    let mut notes = ToolAnnotations::default();
    notes.read_only_hint = Some(read_only);
    notes.destructive_hint = Some(matches!(
        spec.name,
        "remove_worktree" | "reset_database" | "stop_processes"
    ));
    notes.open_world_hint = Some(false);
    t.annotations = Some(notes);
    t
}

/// A failed call as the agent sees it: the CLI's message (with its causes) and hint.
fn tool_error(e: &pwt::Error) -> CallToolResult {
    let kind = format!("{:?}", e.kind()).to_lowercase();
    let hint = e.hint_text();
    let mut r = CallToolResult::structured_error(json!({
        "error": e.to_string(),
        "kind": kind,
        "hint": hint,
        "report": e.report(),
    }));
    r.content = vec![ContentBlock::text(format!("error: {}", e.report()))];
    r
}

fn to_value(v: &impl serde::Serialize) -> pwt::Result<Value> {
    serde_json::to_value(v)
        .map_err(|e| pwt::Error::new(pwt::ErrorKind::Io, "cannot encode the answer").caused_by(e))
}

fn string(args: &JsonObject, key: &str) -> pwt::Result<Option<String>> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad_arg(key, "a string", other)),
    }
}

fn flag(args: &JsonObject, key: &str) -> pwt::Result<bool> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(bad_arg(key, "true or false", other)),
    }
}

fn bad_arg(key: &str, want: &str, got: &Value) -> pwt::Error {
    pwt::Error::new(
        pwt::ErrorKind::Invalid,
        format!("`{key}` must be {want}, not {got}"),
    )
}

/// The approvals an MCP server works with: it cannot ask (stdin is the protocol), so what
/// the repository's pwt.toml would run must be approved already (`pwt trust`) or trusted
/// by the caller.
pub fn approvals(trust: bool) -> Approvals {
    if trust {
        Approvals::Trust
    } else {
        Approvals::Refuse
    }
}

/// The groups of lifecycle tools to offer: those the repository's `[mcp] allow` names, when
/// what its pwt.toml runs is approved already (they run its hooks and processes; the server
/// cannot ask, its stdin is the protocol), and `extra` (the command line's `--allow`). When
/// the pwt.toml's are not offered, the second value says why.
pub fn offered(project: &Project, extra: &[McpTools]) -> (BTreeSet<McpTools>, Option<String>) {
    let mut allow = BTreeSet::new();
    let mut refused = None;
    let from_config = &project.config().mcp.allow;
    if !from_config.is_empty() {
        let gate = pwt::Gate {
            hooks: false,
            processes: true,
            env: false,
        };
        match project.approve(gate) {
            Ok(()) => allow.extend(from_config.iter().copied()),
            Err(e) => {
                refused = Some(format!(
                    "[mcp] allow in pwt.toml is not offered: {e}\n  hint: read them, then `pwt trust` approves them, or start the server with --yes"
                ));
            }
        }
    }
    allow.extend(extra.iter().copied());
    (allow, refused)
}

/// How each MCP client is told to start this server (`exe mcp [--repository]
/// [--allow=GROUP]…`), as its configuration says it: Claude Code's command, `.mcp.json` and
/// the files shaped like it, VS Code's, Codex CLI's.
pub fn client_configs(exe: &str, repository: bool, allow: &[McpTools]) -> String {
    let mut args = vec!["mcp".to_owned()];
    args.extend(repository.then(|| "--repository".to_owned()));
    args.extend(allow.iter().map(|g| format!("--allow={}", g.as_str())));
    let servers = json!({ "mcpServers": { "pwt": { "command": exe, "args": args } } });
    let vscode = json!({ "servers": { "pwt": { "type": "stdio", "command": exe, "args": args } } });
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    format!(
        "# Claude Code (run in the worktree):\nclaude mcp add pwt -- {exe} {}\n\n\
         # .mcp.json (Claude Code, project scope), .cursor/mcp.json (Cursor), ~/.gemini/settings.json (Gemini CLI), Windsurf:\n{}\n\n\
         # .vscode/mcp.json (VS Code):\n{}\n\n\
         # ~/.codex/config.toml (Codex CLI):\n[mcp_servers.pwt]\ncommand = {exe:?}\nargs = {}\n",
        args.join(" "),
        pretty(&servers),
        pretty(&vscode),
        serde_json::to_string(&args).unwrap_or_default()
    )
}
