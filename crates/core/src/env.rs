//! The environment of a worktree, and the file formats it is written in.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::ser::SerializeMap;

use crate::config::{Config, is_env_name};
use crate::template::{TemplateContext, TemplateError, Templates};

/// Ordered variables, each name once. Later `set`s replace earlier values in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    vars: Vec<(String, String)>,
}

/// A variable that cannot be part of an environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// Bad name.
    #[error(
        "environment variable name {0:?} is not valid (letters, digits and '_', not starting with a digit)"
    )]
    Name(String),
    /// Newline, carriage return or NUL in a value.
    #[error(
        "value of {0} contains a newline, carriage return or NUL, which env files cannot carry the same way for every reader"
    )]
    Value(String),
    /// A template did not render.
    #[error(transparent)]
    Template(#[from] TemplateError),
}

impl Environment {
    /// Sets `name` to `value`, checking both.
    pub fn set(&mut self, name: &str, value: impl Into<String>) -> Result<(), EnvError> {
        let value = value.into();
        if !is_env_name(name) {
            return Err(EnvError::Name(name.to_owned()));
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err(EnvError::Value(name.to_owned()));
        }
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_owned(), value)),
        }
        Ok(())
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All variables in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}

impl serde::Serialize for Environment {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.vars.len()))?;
        for (k, v) in &self.vars {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// What the environment of one worktree is built from.
#[derive(Clone, Debug)]
pub struct WorktreeFacts {
    /// Template variables (branch, slug, repo, project, ports).
    pub ctx: TemplateContext,
    /// True for the main worktree, which gets the defaults.
    pub is_main: bool,
}

/// The port the proxy listens on, from `proxy.listen` (`127.0.0.1:8080`, `[::1]:8080`).
/// The proxy's port when `proxy.listen` names none.
pub const DEFAULT_PROXY_PORT: u16 = 8080;

pub fn proxy_port(listen: &str) -> Option<u16> {
    listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// Builds the worktree's environment: pwt's variables, then `extra` (from provisioning), then
/// the `[env]` table, whose templates may override any of them.
pub fn build_environment(
    config: &Config,
    facts: &WorktreeFacts,
    extra: &[(String, String)],
    templates: &Templates,
) -> Result<Environment, EnvError> {
    let ctx = &facts.ctx;
    let mut env = Environment::default();
    let feature = if facts.is_main {
        "main"
    } else {
        ctx.slug.as_str()
    };
    env.set("FEATURE", feature)?;
    for (name, svc) in config.services() {
        if let Some(port) = ctx.ports.get(&name) {
            env.set(&svc.env, port.to_string())?;
        }
    }
    let proxy_port = config.proxy_port();
    env.set(
        "COMPOSE_PROJECT_NAME",
        if facts.is_main {
            ctx.project.clone()
        } else {
            format!("{}-{}", ctx.project, ctx.slug)
        },
    )?;
    let scheme = config.proxy.scheme();
    env.set(
        "OAUTH_REDIRECT_URI",
        format!("{scheme}://localhost:{proxy_port}{}", config.proxy.callback),
    )?;
    env.set("OAUTH_STATE_PREFIX", format!("{}~", ctx.slug))?;
    env.set("PWT_SLUG", ctx.slug.clone())?;
    env.set("PWT_BRANCH", ctx.branch.clone())?;
    env.set(
        "PWT_URL",
        if facts.is_main {
            format!("{scheme}://localhost:{proxy_port}")
        } else {
            format!("{scheme}://{}.localhost:{proxy_port}", ctx.slug)
        },
    )?;
    for (k, v) in extra {
        env.set(k, v.clone())?;
    }
    if !config.env.is_empty() {
        let mut ctx = ctx.clone();
        ctx.vars = env
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        for (k, template) in &config.env {
            let value = templates.render(&format!("env.{k}"), template, &ctx)?;
            env.set(k, value)?;
        }
    }
    Ok(env)
}

/// What the variable `name` of a worktree's environment is, in a few words: for people
/// and agents reading `pwt env --explain` (or the MCP server's `environment` tool).
pub fn describe_variable(config: &Config, name: &str) -> String {
    if config.env.contains_key(name) {
        return "set by [env] in pwt.toml".to_owned();
    }
    if let Some((service, _)) = config.services().into_iter().find(|(_, s)| s.env == name) {
        return format!("the port of service {service:?} (its own in each worktree)");
    }
    let known = match name {
        "FEATURE" => "the worktree's slug (`main` in the main worktree)",
        "PWT_SLUG" => "the worktree's slug: its name in URLs, databases and files",
        "PWT_BRANCH" => "the worktree's branch",
        "PWT_URL" => "the worktree's URL through `pwt proxy` (<slug>.localhost)",
        "COMPOSE_PROJECT_NAME" => "the Docker Compose project of the worktree",
        "OAUTH_REDIRECT_URI" => {
            "the one OAuth redirect URI all worktrees share (`pwt proxy` routes it by `state`)"
        }
        "OAUTH_STATE_PREFIX" => {
            "begin each OAuth `state` with it (`<slug>~`) so the login returns to this worktree"
        }
        "DATABASE_URL" => "the worktree's own PostgreSQL database",
        "DATABASE_NAME" => "the name of the worktree's PostgreSQL database",
        "CONTAINER_DATABASE_URL" => "DATABASE_URL as seen from a container on PWT_NETWORK",
        "RABBITMQ_URL" => "the worktree's own RabbitMQ vhost (AMQP URL)",
        "RABBITMQ_VHOST" => "the name of the worktree's RabbitMQ vhost",
        "RABBITMQ_VHOST_ENCODED" => "RABBITMQ_VHOST percent-encoded, for URLs",
        "CONTAINER_RABBITMQ_URL" => "RABBITMQ_URL as seen from a container on PWT_NETWORK",
        "REDIS_URL" => "the worktree's Redis (its own DB index in db mode)",
        "REDIS_KEY_PREFIX" => "start every Redis key with it: the worktree's own key space",
        "REDIS_DB" => "the worktree's own Redis DB index",
        "CONTAINER_REDIS_URL" => "REDIS_URL as seen from a container on PWT_NETWORK",
        "PWT_NETWORK" => "the Docker network the shared services run on",
        "PWT_BROWSER_PROFILE" => {
            "a browser profile of the worktree's own (`pwt open`; Playwright's persistent context, playwright-mcp's --user-data-dir): its cookies stay its own, on any origin"
        }
        _ => "set by pwt",
    };
    known.to_owned()
}

/// The words that open every file pwt writes (after the comment sign): how `pwt doctor
/// --rebuild` recognises them.
pub const FILE_MARK: &str = "Written by pwt";

/// The header pwt puts at the top of the files it writes.
fn header(comment: &str, slug: &str, registry: &str) -> String {
    let of = if registry.is_empty() {
        String::new()
    } else {
        format!(" (registry {registry})")
    };
    format!(
        "{comment} {FILE_MARK} for worktree `{slug}`{of}; `pwt up` rewrites it.\n\
         {comment} pwt will not overwrite this file once edited: put your own settings elsewhere.\n"
    )
}

/// Quotes `value` for a dotenv file so that bash (`set -a; . file`), python-dotenv (and
/// Docker Compose v1, which reads with it), Node's dotenv, Compose v2 and direnv's `dotenv`
/// all read back exactly `value`, evaluating nothing in it; or says why no spelling does.
///
/// Single quotes are literal for all of them, except that python-dotenv unescapes `\\` and
/// `\'` inside them and expands `${…}` in every value, quoted or not. A value holding `'`
/// goes in double quotes, which all read literally as long as the value holds none of `"`
/// `$` `` ` `` `\`.
pub fn dotenv_quote(value: &str) -> Result<String, &'static str> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err("it holds a control character");
    }
    if value
        .find("${")
        .is_some_and(|i| value[i + 2..].contains('}'))
    {
        return Err("python-dotenv would expand its `${…}`");
    }
    if !value.contains('\'') {
        if value.contains("\\\\") || value.ends_with('\\') {
            return Err("python-dotenv would unescape its backslashes");
        }
        Ok(format!("'{value}'"))
    } else if !value.contains(['"', '$', '`', '\\']) {
        Ok(format!("\"{value}\""))
    } else {
        Err("it holds both ' and one of \" $ ` \\")
    }
}

/// The `.env.worktree` text, and the variables left out (each with why) because no quoting
/// reads the same in every dotenv reader (see [`dotenv_quote`]).
///
/// The header names the worktree's slug and the registry (`registry`, empty for none) that
/// wrote it, so a file another registry rewrote is told from this one's.
pub fn render_dotenv(
    env: &Environment,
    slug: &str,
    registry: &str,
) -> (String, Vec<(String, &'static str)>) {
    let mut out = header("#", slug, registry);
    let skipped = assignments(&mut out, env, "=", dotenv_quote);
    (out, skipped)
}

/// The variables whose container-side values (`CONTAINER_<name>`) a container reads under
/// their own name.
const CONTAINER_SIDE: [&str; 3] = ["DATABASE_URL", "RABBITMQ_URL", "REDIS_URL"];

/// Renders the env file for containers, in Docker's env-file format: `KEY=value` lines,
/// nothing quoted, read alike by `docker run --env-file`, Compose v1's and v2's `env_file:`.
/// A container reads `DATABASE_URL`, `RABBITMQ_URL` and `REDIS_URL` as it reaches the
/// services on the shared network (their `CONTAINER_*` values). A value those readers
/// would not all take literally is left out, with why.
pub fn render_docker(
    env: &Environment,
    slug: &str,
    registry: &str,
) -> (String, Vec<(String, &'static str)>) {
    let mut inside = Environment::default();
    for (k, v) in env.iter() {
        let v = match CONTAINER_SIDE.contains(&k) {
            true => env.get(&format!("CONTAINER_{k}")).unwrap_or(v),
            false => v,
        };
        // Every name in `env` was set through `Environment::set` already.
        let _ = inside.set(k, v.to_owned());
    }
    let mut out = header("#", slug, registry);
    let skipped = assignments(&mut out, &inside, "=", docker_literal);
    (out, skipped)
}

/// A value as Docker's env-file format carries it (literally, to the end of the line),
/// when Compose's `env_file:` readers read it the same: they strip surrounding blanks,
/// take a leading quote as quoting, expand `$`, treat ` #` as a comment and (v1, through
/// python-dotenv) may unescape `\`.
pub fn docker_literal(value: &str) -> Result<String, &'static str> {
    if value.chars().any(char::is_control) {
        return Err("it holds a control character");
    }
    if value.trim() != value {
        return Err("it begins or ends with a blank, which Compose strips");
    }
    if value.starts_with(['\'', '"']) {
        return Err("it begins with a quote, which Compose takes as quoting");
    }
    if value.contains('$') {
        return Err("Compose would expand its `$`");
    }
    if value.contains('\\') {
        return Err("Compose v1 may unescape its backslash");
    }
    // Python's `\s` (python-dotenv, Compose v1's reader) is any Unicode blank: a no-break
    // or em space before `#` starts a comment too.
    let comment = value
        .char_indices()
        .any(|(i, c)| c.is_whitespace() && value[i + c.len_utf8()..].starts_with('#'));
    if comment {
        return Err("Compose would read ` #…` as a comment");
    }
    Ok(value.to_owned())
}

/// Appends `KEY<sep>VALUE` for every variable `spell` can write; returns the others, each
/// with why.
fn assignments(
    out: &mut String,
    env: &Environment,
    sep: &str,
    spell: fn(&str) -> Result<String, &'static str>,
) -> Vec<(String, &'static str)> {
    let mut skipped = Vec::new();
    for (k, v) in env.iter() {
        match spell(v) {
            Ok(v) => {
                let _ = writeln!(out, "{k}{sep}{v}");
            }
            Err(why) => skipped.push((k.to_owned(), why)),
        }
    }
    skipped
}

/// A TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A value as mise reads it literally: mise renders every `[env]` value as a Tera template
/// and then expands `$NAME` (`$$` for one `$`), so the value goes inside `{% raw %}` when it
/// holds a brace, `%` or `#`, and each `$` doubled. A value that could end the raw block
/// has no such spelling.
fn mise_value(value: &str) -> Result<String, &'static str> {
    if value.contains("endraw") {
        return Err("it could end mise's raw block (`endraw`)");
    }
    let value = value.replace('$', "$$");
    Ok(if value.contains(['{', '}', '%', '#']) {
        toml_string(&format!("{{% raw %}}{value}{{% endraw %}}"))
    } else {
        toml_string(&value)
    })
}

/// The `.mise.local.toml` text, one `[env]` table in which mise evaluates nothing, and the
/// variables left out (see [`mise_value`]). With a `$` in any value the file turns on
/// mise's `env_shell_expand` for itself, so `$$` reads as `$` whatever the user's default.
pub fn render_mise(
    env: &Environment,
    slug: &str,
    registry: &str,
) -> (String, Vec<(String, &'static str)>) {
    let mut out = header("#", slug, registry);
    if env.iter().any(|(_, v)| v.contains('$')) {
        out.push_str("[settings]\nenv_shell_expand = true\n");
    }
    out.push_str("[env]\n");
    let skipped = assignments(&mut out, env, " = ", mise_value);
    (out, skipped)
}

/// POSIX-shell `export` lines, each value single-quoted (any byte is safe that way).
pub fn render_sh(env: &Environment) -> String {
    let mut out = String::new();
    for (k, v) in env.iter() {
        let _ = writeln!(out, "export {k}='{}'", v.replace('\'', "'\\''"));
    }
    out
}

/// fish `set -gx` lines.
pub fn render_fish(env: &Environment) -> String {
    let mut out = String::new();
    for (k, v) in env.iter() {
        let escaped = v.replace('\\', "\\\\").replace('\'', "\\'");
        let _ = writeln!(out, "set -gx {k} '{escaped}'");
    }
    out
}

/// Parses `KEY=value` lines the way the cooperative scan needs: enough of dotenv and of a
/// mise `[env]` table (`KEY = "value"`) to find ports written by pwt, by older scripts or by
/// hand. Quotes are stripped; `export ` prefixes, comments and section headers are skipped.
pub fn parse_assignments(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim();
        if !is_env_name(k) {
            continue;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        out.insert(k.to_owned(), v.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortService;

    fn facts(slug: &str, is_main: bool) -> WorktreeFacts {
        WorktreeFacts {
            ctx: TemplateContext {
                branch: "feature/notifications".into(),
                slug: slug.into(),
                repo: "demo".into(),
                project: "demo".into(),
                ports: BTreeMap::from([("frontend".into(), 21000), ("backend".into(), 21001)]),
                vars: Default::default(),
            },
            is_main,
        }
    }

    fn seed_config() -> Config {
        let mut c = Config::default();
        c.ports.services.insert(
            "frontend".into(),
            PortService {
                env: "FRONTEND_PORT".into(),
                main: Some(3000),
            },
        );
        c.ports.services.insert(
            "backend".into(),
            PortService {
                env: "BACKEND_PORT".into(),
                main: Some(5000),
            },
        );
        c.env
            .insert("API".into(), "http://localhost:{{ ports.backend }}".into());
        c.env
            .insert("DJANGO_PORT".into(), "{{ vars.BACKEND_PORT }}".into());
        c
    }

    #[test]
    fn builds_seed_variables() {
        let env = build_environment(
            &seed_config(),
            &facts("feature-notifications", false),
            &[],
            &Templates::new(),
        )
        .expect("builds");
        assert_eq!(env.get("FEATURE"), Some("feature-notifications"));
        assert_eq!(env.get("FRONTEND_PORT"), Some("21000"));
        assert_eq!(env.get("BACKEND_PORT"), Some("21001"));
        assert_eq!(env.get("API"), Some("http://localhost:21001"));
        assert_eq!(env.get("DJANGO_PORT"), Some("21001"));
        assert_eq!(
            env.get("PWT_URL"),
            Some("http://feature-notifications.localhost:8080")
        );
        assert_eq!(
            env.get("OAUTH_REDIRECT_URI"),
            Some("http://localhost:8080/auth/callback")
        );
        assert_eq!(
            env.get("COMPOSE_PROJECT_NAME"),
            Some("demo-feature-notifications")
        );
    }

    #[test]
    fn main_gets_defaults() {
        let env = build_environment(&seed_config(), &facts("main", true), &[], &Templates::new())
            .expect("builds");
        assert_eq!(env.get("FEATURE"), Some("main"));
        assert_eq!(env.get("PWT_URL"), Some("http://localhost:8080"));
        assert_eq!(env.get("COMPOSE_PROJECT_NAME"), Some("demo"));
    }

    #[test]
    fn any_blank_before_a_hash_is_a_comment_to_compose() {
        for v in ["a #b", "a\t#b", "a\u{a0}#b", "a\u{2003}#b", "a\u{3000}#b"] {
            assert!(docker_literal(v).is_err(), "{v:?}");
        }
        for v in ["a#b", "#lead", "a\u{a0}b", "\u{200b}#x"] {
            assert_eq!(docker_literal(v).as_deref(), Ok(v), "{v:?}");
        }
    }

    #[test]
    fn newlines_are_refused() {
        let mut env = Environment::default();
        assert!(matches!(env.set("A", "x\ny"), Err(EnvError::Value(_))));
        assert!(matches!(env.set("1A", "x"), Err(EnvError::Name(_))));
        let mut c = seed_config();
        c.env.insert("BAD".into(), "{{ slug }}\nx".into());
        assert!(build_environment(&c, &facts("x", false), &[], &Templates::new()).is_err());
    }

    #[test]
    fn dotenv_quoting() {
        assert_eq!(dotenv_quote("a b$c`d\"e\\f"), Ok("'a b$c`d\"e\\f'".into()));
        assert_eq!(dotenv_quote("feat/x'y"), Ok("\"feat/x'y\"".into()));
        assert!(dotenv_quote("x'y$z").is_err());
        assert!(dotenv_quote("feat/${HOME}").is_err());
        assert!(dotenv_quote("a\\\\b").is_err());
        assert!(dotenv_quote("ends\\").is_err());
        assert_eq!(dotenv_quote("${ no close"), Ok("'${ no close'".into()));
        let mut env = Environment::default();
        env.set("A", "1").expect("valid");
        env.set("B", "x'$").expect("valid");
        let (text, skipped) = render_dotenv(&env, "s", "");
        assert!(text.contains("A='1'\n"));
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].0, "B");
    }

    #[test]
    fn round_trip_through_parser() {
        let mut env = Environment::default();
        env.set("FRONTEND_PORT", "21000").expect("valid");
        env.set("X", "a=b 'c'").expect("valid");
        let parsed = parse_assignments(&render_dotenv(&env, "s", "").0);
        assert_eq!(parsed["FRONTEND_PORT"], "21000");
        assert_eq!(parsed["X"], "a=b 'c'");
        let parsed = parse_assignments(&render_mise(&env, "s", "").0);
        assert_eq!(parsed["FRONTEND_PORT"], "21000");
        assert_eq!(
            parse_assignments("export DJANGO_PORT=8012\n")["DJANGO_PORT"],
            "8012"
        );
    }

    #[test]
    fn mise_and_shell_escaping() {
        let mut env = Environment::default();
        env.set("A", "q\"\\'\t").expect("valid");
        assert!(
            render_mise(&env, "s", "")
                .0
                .contains("A = \"q\\\"\\\\'\\t\"\n")
        );
        assert_eq!(render_sh(&env), "export A='q\"\\'\\''\t'\n");
        assert_eq!(render_fish(&env), "set -gx A 'q\"\\\\\\'\t'\n");
        env.set("B", "pa$$w{{x}}").expect("valid");
        env.set("C", "{% endraw %}").expect("valid");
        let (text, skipped) = render_mise(&env, "s", "");
        assert!(text.contains("[settings]\nenv_shell_expand = true\n[env]\n"));
        assert!(text.contains("B = \"{% raw %}pa$$$$w{{x}}{% endraw %}\"\n"));
        assert_eq!(skipped[0].0, "C");
    }
}
