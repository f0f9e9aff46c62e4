//! Approvals of what a repository's pwt.toml runs: its `[hooks]`, its `[processes]` and the
//! `[env]` they run with (a `GIT_CONFIG_*`, `PATH` or `NODE_OPTIONS` there decides what an
//! approved `git status` or `npm run dev` does). An approval is a SHA-256 of the repository's
//! git directory and those three sections, one per line in `<state dir>/trusted-commands`.
//! The caller reads the file (it knows the configuration's layers) and asks the user.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::approvals::{Approval, Approvals, Gate};
use crate::error::{Error, ErrorKind, Result};
use crate::project::Project;
use pwt_alloc::write_atomic;

/// What to do about an unapproved pwt.toml, for a program on the engine (the `pwt` command
/// says it in its own words).
const UNAPPROVED_HINT: &str = "read them, then approve them: `Options::approvals` as `Approvals::Ask` (the user answers) or `Approvals::Trust` (automation), or `Project::set_approved` with `Project::pending_approval`'s approval (the `pwt trust` command records the same approval); it is asked again when they or their [env] change";

/// The table `name` of `file` (empty when there is none).
fn table(file: &Value, name: &str) -> serde_json::Map<String, Value> {
    file.get(name)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The commands of `file` that the configuration in `effective` would run, a line each: its
/// hooks, then its processes and `[mcp] allow` (tools an agent may use to change things).
fn commands_in(file: &Value, effective: &Value) -> (String, String) {
    let runs = |pointer: String, value: &Value| effective.pointer(&pointer) == Some(value);
    let mut hooks = String::new();
    for (stage, list) in table(file, "hooks") {
        let ours = effective
            .pointer(&format!("/hooks/{stage}"))
            .and_then(Value::as_array);
        for c in list.as_array().into_iter().flatten() {
            if ours.is_some_and(|o| o.contains(c)) {
                hooks.push_str(&format!("  [hooks] {stage}: {}\n", text(c)));
            }
        }
    }
    let mut cmds = String::new();
    for (name, cmd) in table(file, "processes") {
        if runs(format!("/processes/{name}"), &cmd) {
            cmds.push_str(&format!("  [processes] {name}: {}\n", text(&cmd)));
        }
    }
    if let Some(allow) = file
        .pointer("/mcp/allow")
        .filter(|a| runs("/mcp/allow".into(), a))
    {
        let groups: Vec<String> = allow.as_array().into_iter().flatten().map(text).collect();
        if !groups.is_empty() {
            cmds.push_str(&format!(
                "  [mcp] allow (tools an agent may use): {}\n",
                groups.join(", ")
            ));
        }
    }
    (hooks, cmds)
}

impl Project {
    /// What of `file` (the repository's pwt.toml, parsed) `gate` needs approved, or `None`.
    /// The key covers this repository and all three sections, whatever `gate` uses.
    pub(crate) fn approval(&self, file: &Value, gate: Gate) -> Option<Approval> {
        let table = |name: &str| table(file, name);
        // Only what the configuration in effect would run: the file's entries that are in it
        // (a caller's own configuration may leave them out, or replace them).
        let effective = serde_json::to_value(&self.config).unwrap_or_default();
        let runs = |pointer: String, value: &Value| effective.pointer(&pointer) == Some(value);
        let (hooks, cmds) = commands_in(file, &effective);
        let mut env = String::new();
        // An entry that only says again what pwt sets itself (`FEATURE = "{{ slug }}"`, as
        // the seed workflow writes it) changes nothing, so it is written without asking;
        // any other can make a shell, git or a runtime act (`PS0`, `PSQLRC`, `BASH_ENV`).
        for (name, v) in table("env") {
            if runs(format!("/env/{name}"), &v) && !self.restates_pwt(&name, &text(&v)) {
                env.push_str(&format!("  [env] {name} = {}\n", text(&v)));
            }
        }
        let needed = (gate.hooks && !hooks.is_empty())
            || (gate.processes && !cmds.is_empty())
            || (gate.env && !env.is_empty());
        let cmds = hooks + &cmds;
        if !needed {
            return None;
        }
        let section = |name: &str| file.get(name).cloned().unwrap_or(Value::Null);
        let mut of = serde_json::json!({
            "repository": self.repo.common_dir,
            // It reaches the commands as COMPOSE_PROJECT_NAME.
            "project": section("project"),
            "hooks": section("hooks"),
            "processes": section("processes"),
            "env": section("env"),
        });
        // Only when there is one, so approvals given before `[mcp]` existed still hold.
        if let Some(mcp) = file.get("mcp") {
            of["mcp"] = mcp.clone();
        }
        Some(Approval {
            commands: !cmds.is_empty(),
            env: !env.is_empty(),
            shown: (cmds + &env)
                .chars()
                .filter(|c| *c == '\n' || !c.is_control())
                .collect(),
            key: Sha256::digest(of.to_string().as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        })
    }

    /// Whether the `[env]` entry `name = template` only says again what pwt sets itself
    /// for `name`: rendered for two made-up worktrees, it gives exactly pwt's own value.
    fn restates_pwt(&self, name: &str, template: &str) -> bool {
        let mut config = self.config.clone();
        config.env.clear();
        ["pwt-probe-a", "b7"].iter().enumerate().all(|(i, slug)| {
            let ports = self
                .config
                .services()
                .into_keys()
                .zip(40000 + 10 * i as u16..)
                .collect();
            let ctx = self.context(&format!("probe/{slug}"), slug, &ports);
            let facts = pwt_core::WorktreeFacts {
                ctx: ctx.clone(),
                is_main: false,
            };
            let Ok(own) = pwt_core::build_environment(&config, &facts, &[], &self.templates) else {
                return false;
            };
            let Some(own_value) = own.get(name) else {
                return false;
            };
            let mut ctx = ctx;
            ctx.vars = own
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            self.templates
                .render(&format!("env.{name}"), template, &ctx)
                .is_ok_and(|v| v == own_value)
        })
    }

    /// What of the repository's pwt.toml (as the configuration was loaded) `gate` needs
    /// approved, or `None`.
    pub fn pending_approval(&self, gate: Gate) -> Option<Approval> {
        let table = self.project_table.as_ref()?;
        self.approval(table, gate)
    }

    /// Returns when what `gate` uses of the repository's pwt.toml is approved, or the policy
    /// lets it go ahead; else [`crate::ErrorKind::Unapproved`], naming what. For callers that
    /// act on the file's say themselves (`pwt mcp`'s `[mcp] allow`).
    pub fn approve(&self, gate: Gate) -> Result<()> {
        self.require_approval(gate)
    }

    /// Returns when what `gate` uses of the repository's pwt.toml is approved, or the
    /// policy ([`Approvals`]) lets it go ahead; else the refusal, showing what needs
    /// approval and why. Every entry point that runs the file's commands or writes its
    /// `[env]` calls it.
    pub(crate) fn require_approval(&self, gate: Gate) -> Result<()> {
        let Some(a) = self.pending_approval(gate) else {
            return Ok(());
        };
        if self.is_approved(&a) {
            return Ok(());
        }
        match &self.options.approvals {
            Approvals::Trust => return Ok(()),
            Approvals::Ask(ask) if ask(&a) => return self.set_approved(&a, true),
            _ => {}
        }
        let file = self.project_file.as_deref().map_or_else(
            || "the repository's pwt.toml".to_owned(),
            |p| p.display().to_string(),
        );
        Err(Error::new(
            ErrorKind::Unapproved,
            format!(
                "{file} {} which you have not approved for this repository on this machine; nothing was done:\n{}",
                a.what(),
                a.shown.trim_end()
            ),
        )
        .hint(UNAPPROVED_HINT))
    }

    fn approvals(&self) -> std::path::PathBuf {
        self.options.state_dir.join("trusted-commands")
    }

    /// Whether this user approved it on this machine.
    pub fn is_approved(&self, a: &Approval) -> bool {
        std::fs::read_to_string(self.approvals())
            .is_ok_and(|s| s.lines().any(|l| l.trim() == a.key))
    }

    /// Records the approval (`on`) or withdraws it.
    pub fn set_approved(&self, a: &Approval, on: bool) -> Result<()> {
        let path = self.approvals();
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        let mut lines: Vec<&str> = current.lines().filter(|l| l.trim() != a.key).collect();
        if on {
            lines.push(&a.key);
        }
        let mut body = lines.join("\n");
        body.push('\n');
        Ok(write_atomic(&path, body.as_bytes())?)
    }
}
