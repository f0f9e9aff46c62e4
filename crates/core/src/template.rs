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
