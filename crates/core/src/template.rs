//! Templates: every configurable name is a minijinja template rendered per worktree.
//!
//! Undefined variables are errors (strict mode), so a typo such as `{{ slgu }}` is reported
//! with the key it came from instead of silently rendering as an empty string.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::names::{db_ident, hash_port};

/// What a template can refer to.
#[derive(Clone, Debug, Serialize)]
pub struct TemplateContext {
    /// The branch name, raw. Never put it in a path, a shell or SQL: use `slug`.
    pub branch: String,
    /// The worktree's slug (`main` for the main worktree).
    pub slug: String,
    /// The repository directory name.
    pub repo: String,
    /// The project name.
    pub project: String,
    /// Leased ports by service name.
    pub ports: BTreeMap<String, u16>,
    /// In `[env]` templates: every variable pwt has set before them (`{{ vars.DATABASE_URL }}`),
    /// so any name an app expects can be made from pwt's values. Empty elsewhere.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
}

/// A template that does not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template for `{key}` ({template:?}) does not render: {message}")]
pub struct TemplateError {
    /// The configuration key the template came from.
    pub key: String,
    /// The template text.
    pub template: String,
    /// minijinja's explanation.
    pub message: String,
}

/// A template engine with pwt's filters, set up once per process.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// The engine: strict undefined, no auto-escaping, filters `db_ident` and `hash_port`.
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.add_filter("db_ident", |s: String| db_ident(&s));
        env.add_filter("hash_port", |s: String| hash_port(&s));
        Self { env }
    }

    /// Renders `template`, naming `key` in the error.
    pub fn render(
        &self,
        key: &str,
        template: &str,
        ctx: &TemplateContext,
    ) -> Result<String, TemplateError> {
        self.env.render_str(template, ctx).map_err(|e| {
            let mut message = e.kind().to_string();
            if let Some(detail) = e.detail() {
                message.push_str(": ");
                message.push_str(detail);
            }
            if e.kind() == minijinja::ErrorKind::UndefinedError {
                message.push_str(
                    " (known: branch, slug, repo, project, ports.<name>, and in [env] vars.<NAME>)",
                );
            }
            TemplateError {
                key: key.to_owned(),
                template: template.to_owned(),
                message,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> TemplateContext {
        TemplateContext {
            branch: "feature/Login".into(),
            slug: "feature-login".into(),
            repo: "demo".into(),
            project: "demo".into(),
            ports: BTreeMap::from([("frontend".into(), 20001)]),
            vars: Default::default(),
        }
    }

    #[test]
    fn renders_with_filters() {
        let t = Templates::new();
        let r = |s| t.render("k", s, &ctx()).expect("renders");
        assert_eq!(
            r("{{ project }}_{{ slug | db_ident }}"),
            "demo_feature_login"
        );
        assert_eq!(r("../{{ repo }}.{{ slug }}"), "../demo.feature-login");
        assert_eq!(
            r("http://localhost:{{ ports.frontend }}"),
            "http://localhost:20001"
        );
        assert_eq!(r("{{ branch }}"), "feature/Login");
        assert!(
            r("{{ ('fe-' ~ branch) | hash_port }}")
                .parse::<u16>()
                .is_ok()
        );
    }

    #[test]
    fn typo_is_an_error_naming_key_and_variable() {
        let t = Templates::new();
        let e = t
            .render("postgres.database", "{{ slgu }}", &ctx())
            .expect_err("strict");
        let msg = e.to_string();
        assert!(msg.contains("postgres.database"), "{msg}");
        assert!(msg.contains("undefined"), "{msg}");
        assert!(t.render("k", "{{ ports.nope }}", &ctx()).is_err());
        assert!(t.render("k", "{{ slug | nofilter }}", &ctx()).is_err());
    }
}

/// Whether an `[env]` entry of a repository's pwt.toml is inert enough to write without the
/// user's approval: its value can only ever be an identifier made of pwt's own names (the
/// template is `{{ slug }}`, `{{ project }}`, `{{ repo }}`, `{{ ports.NAME }}`, optionally
/// through `db_ident`, `lower` or `upper`, joined by letters, digits, `_` and `-`), and its
/// name is not one programs take a file, directory, program or options from (anything
/// with `PATH`, `FILE`, `DIR`, `HOME`, `CONFIG`, `OPTIONS`, `LIB`, `PRELOAD`, a shell's,
/// git's, a language runtime's or a package manager's variables, …), where even
/// `feature-a` could name a file the branch carries. Everything else is shown for approval:
/// direnv and mise load the env files into every shell of the worktree.
pub fn env_entry_is_inert(name: &str, template: &str) -> bool {
    !names_code(name) && identifier_template(template)
}

/// Name parts and prefixes of variables that point programs at files, programs or options.
const CODE_PARTS: &[&str] = &[
    "PATH",
    "FILE",
    "DIR",
    "HOME",
    "CONFIG",
    "CONF",
    "OPTION",
    "OPTS",
    "ENV",
    "LIB",
    "PRELOAD",
    "AUDIT",
    "COMMAND",
    "CMD",
    "PROGRAM",
    "EXEC",
    "WRAPPER",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "BROWSER",
    "SHELL",
    "PROMPT",
    "HOOK",
    "PLUGIN",
    "MODULE",
    "INCLUDE",
    "INIT",
    "PROFILE",
    "STARTUP",
    "RC",
    "LOADER",
    "PROXY",
    "CERT",
    "CA",
    "SSL",
    "TLS",
    "KEY",
    "SECRET",
    "TOKEN",
    "INDEX",
    "REGISTRY",
    "MIRROR",
    "TERMINFO",
    "LESSOPEN",
    "LESSCLOSE",
    "IFS",
    "PS1",
    "PS2",
    "PS3",
    "PS4",
    "TMP",
    "TEMP",
    "TMPDIR",
    "CC",
    "CXX",
    "LD",
    "FLAGS",
];
const CODE_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "GIT_",
    "SSH_",
    "GPG",
    "GNUPG",
    "BASH",
    "ZDOT",
    "XDG_",
    "PWT_",
    "DIRENV_",
    "MISE_",
    "NODE_",
    "NPM_",
    "YARN_",
    "PNPM_",
    "BUN_",
    "DENO_",
    "PYTHON",
    "PIP_",
    "UV_",
    "POETRY_",
    "CONDA",
    "VIRTUAL_ENV",
    "PERL",
    "RUBY",
    "GEM_",
    "BUNDLE_",
    "JAVA",
    "_JAVA",
    "JDK_",
    "MAVEN",
    "GRADLE",
    "CARGO_",
    "RUST",
    "GO",
    "DOCKER_",
    "COMPOSE_FILE",
    "KUBE",
    "AWS_",
    "GOOGLE_",
    "AZURE_",
    "LC_",
    "LANG",
    "TZ",
    "TERM",
    "DISPLAY",
    "WAYLAND",
    "DBUS",
    "SUDO",
    "MAIL",
];

fn names_code(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    CODE_PREFIXES.iter().any(|p| upper.starts_with(p))
        || upper.split('_').any(|part| {
            CODE_PARTS
                .iter()
                .any(|c| part == *c || part.ends_with(c) && c.len() >= 4)
        })
}

/// `{{ slug }}`-like expressions joined by identifier characters, and nothing else.
fn identifier_template(template: &str) -> bool {
    let literal_ok = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        if !literal_ok(&rest[..open]) {
            return false;
        }
        let Some(close) = rest[open..].find("}}") else {
            return false;
        };
        if !inert_expression(&rest[open + 2..open + close]) {
            return false;
        }
        rest = &rest[open + close + 2..];
    }
    literal_ok(rest)
}

fn inert_expression(expr: &str) -> bool {
    let mut parts = expr.split('|').map(str::trim);
    let head = parts.next().unwrap_or_default();
    let var_ok = matches!(head, "slug" | "project" | "repo")
        || head.strip_prefix("ports.").is_some_and(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    var_ok && parts.all(|f| matches!(f, "db_ident" | "lower" | "upper"))
}

#[cfg(test)]
mod env_entry_tests {
    use super::env_entry_is_inert;

    #[test]
    fn identifiers_of_pwt_names_under_plain_names_are_inert() {
        for (name, value) in [
            ("FEATURE", "{{ slug }}"),
            ("COMPOSE_PROJECT_NAME", "{{ project }}-{{ slug }}"),
            ("POSTGRES_DB", "{{ project }}_{{ slug | db_ident }}"),
            ("VITE_PORT", "{{ ports.frontend }}"),
            ("SESSION_COOKIE_NAME", "session_{{slug}}"),
            ("MODE", "development"),
        ] {
            assert!(env_entry_is_inert(name, value), "{name} = {value}");
        }
    }

    #[test]
    fn what_could_run_code_or_point_anywhere_needs_approval() {
        for (name, value) in [
            // Names programs take files, programs or options from.
            ("BASH_ENV", "{{ slug }}"),
            ("ENV", "x"),
            ("PATH", "{{ slug }}"),
            ("NODE_OPTIONS", "-rx"),
            ("GIT_CONFIG_GLOBAL", "x"),
            ("LD_PRELOAD", "x"),
            ("PYTHONPATH", "x"),
            ("PWT_TRUST_HOOKS", "1"),
            ("DOCKER_HOST", "x"),
            ("PIP_INDEX_URL", "x"),
            ("MY_CONFIG_FILE", "x"),
            ("EDITOR", "vim"),
            // Values that are more than an identifier of pwt's names.
            ("DATABASE_URL", "postgres://evil.example/{{ slug }}"),
            ("FEATURE", "{{ branch }}"),
            ("FEATURE", "a b"),
            ("FEATURE", "{% if 1 %}x{% endif %}"),
            ("FEATURE", "{{ slug ~ '/x' }}"),
            ("FEATURE", "{{ slug | replace('a', '/') }}"),
            ("FEATURE", "{{ slug"),
            ("FEATURE", "$(id)"),
        ] {
            assert!(!env_entry_is_inert(name, value), "{name} = {value}");
        }
    }
}
