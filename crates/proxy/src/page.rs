//! The proxy's own HTML pages. Everything interpolated is escaped; pages are sent with
//! `Content-Security-Policy: default-src 'none'` and `Cache-Control: no-store`.

use std::fmt::Write as _;

use crate::route::{RouteTable, Target};

/// HTML-escapes `s` for text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · pwt</title>\
         <style>body{{font:15px system-ui,sans-serif;margin:2em;max-width:60em}}td,th{{padding:.2em 1em .2em 0;text-align:left}}\
         code{{background:#eee;padding:0 .2em}}</style></head>\n<body><h1>{t}</h1>\n{body}</body></html>\n",
        t = escape(title)
    )
}

fn worktree_list(table: &RouteTable, proxy_port: u16, listening: &dyn Fn(u16) -> bool) -> String {
    let mut rows = String::new();
    let all = table.main.iter().chain(table.worktrees.values());
    for t in all {
        let url = if t.slug == "main" {
            format!("{}://localhost:{proxy_port}/", table.scheme())
        } else {
            format!("{}://{}.localhost:{proxy_port}/", table.scheme(), t.slug)
        };
        let state = if listening(t.port) {
            "● listening"
        } else {
            "○ not listening"
        };
        let _ = writeln!(
            rows,
            "<tr><td><a href=\"{u}\">{s}</a></td><td>{b}</td><td><a href=\"http://localhost:{p}/\">localhost:{p}</a></td><td>{state}</td></tr>",
            u = escape(&url),
            s = escape(&t.slug),
            b = escape(&t.branch),
            p = t.port,
        );
    }
    if rows.is_empty() {
        return "<p>No worktrees are registered. <code>pwt new BRANCH</code> makes one.</p>\n"
            .into();
    }
    format!(
        "<table><tr><th>worktree</th><th>branch</th><th>direct</th><th>state</th></tr>\n{rows}</table>\n"
    )
}

/// `/_pwt`: every worktree, its links, listening or not.
pub fn status(table: &RouteTable, proxy_port: u16, listening: &dyn Fn(u16) -> bool) -> String {
    let body = format!(
        "{}<p>OAuth redirect URI: <code>{}://localhost:{proxy_port}{}</code>; state <code>&lt;slug&gt;~&lt;random&gt;</code> (<code>pwt state</code>).</p>\n",
        worktree_list(table, proxy_port, listening),
        table.scheme(),
        escape(&table.callback)
    );
    page("Worktrees", &body)
}

/// An OAuth callback that cannot be routed.
pub fn reject(
    reason: &str,
    table: &RouteTable,
    proxy_port: u16,
    listening: &dyn Fn(u16) -> bool,
) -> String {
    let body = format!(
        "<p>This OAuth callback cannot be sent to a worktree: {}.</p>\n<p>pwt routes a callback by a <code>state</code> it saw a worktree send to the identity provider (open the app at its <code>{}://&lt;slug&gt;.localhost</code> URL, through the proxy, to start the login), or by a state that starts with a worktree's slug followed by <code>~</code> (<code>pwt state BRANCH</code> prints one). Known worktrees:</p>\n{}",
        escape(reason),
        table.scheme(),
        worktree_list(table, proxy_port, listening)
    );
    page("Unroutable OAuth callback", &body)
}

/// A callback refused before routing (too large, stalled), with no list of worktrees.
pub fn reject_plain(reason: &str) -> String {
    page(
        "Unroutable OAuth callback",
        &format!(
            "<p>This OAuth callback cannot be sent to a worktree: {}.</p>\n",
            escape(reason)
        ),
    )
}

/// How to name a worktree on a command line: its branch as one shell word (quoted when it
/// holds anything but safe characters, so pasting never runs `$(…)`; and a branch, not the
/// slug, which may be another branch's name).
fn cli_name(target: &Target) -> String {
    if target.slug == "main" {
        String::new()
    } else {
        format!(" {}", pwt_core::shell_word(&target.branch))
    }
}

/// The worktree's server is not listening.
pub fn bad_gateway(target: &Target) -> String {
    let body = format!(
        "<p>Worktree <b>{}</b> (branch <code>{}</code>) has nothing listening on port {}.</p>\n<p>Start its server there, e.g. <code>pwt dev{n}</code> (its <code>[processes]</code>) or <code>pwt run{n} -- npm run dev</code>.</p>\n",
        escape(&target.slug),
        escape(&target.branch),
        target.port,
        n = escape(&cli_name(target))
    );
    page("Worktree not running", &body)
}

/// `<slug>.localhost` names no worktree: never another worktree's app instead.
pub fn unknown_worktree(
    slug: &str,
    removed: Option<(String, std::time::Duration)>,
    table: &RouteTable,
    proxy_port: u16,
    listening: &dyn Fn(u16) -> bool,
) -> String {
    let what = match removed {
        Some((branch, ago)) => format!(
            "The worktree <b>{}</b> (branch <code>{}</code>) was removed {} ago.",
            escape(slug),
            escape(&branch),
            escape(&ago_text(ago))
        ),
        None => format!("No worktree is named <b>{}</b>.", escape(slug)),
    };
    let body = format!(
        "<p>{what} Each worktree has its own name, <code>{}://&lt;slug&gt;.localhost:{proxy_port}/</code>; <code>pwt list</code> shows them.</p>\n{}",
        table.scheme(),
        worktree_list(table, proxy_port, listening)
    );
    page("No such worktree", &body)
}

fn ago_text(d: std::time::Duration) -> String {
    match d.as_secs() {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// A request that would come back to the proxy itself.
pub fn loop_detected(target: &Target, own_port: bool) -> String {
    let why = if own_port {
        format!(
            "its route port {} is the proxy's own port, so the proxy would call itself",
            target.port
        )
    } else {
        "this request has passed through the proxy too many times: a server behind it sends it back to the proxy".to_owned()
    };
    let body = format!(
        "<p>Worktree <b>{}</b> (branch <code>{}</code>) cannot be reached: {}.</p>\n<p>Keep the proxy's port (<code>proxy.listen</code>) out of <code>ports.range</code>; pwt never leases it.</p>\n",
        escape(&target.slug),
        escape(&target.branch),
        escape(&why)
    );
    page("Loop", &body)
}

/// The worktree's server took the connection but the exchange failed: it closed it, or the
/// request's body stalled.
pub fn upstream_failed(target: &Target) -> String {
    let body = format!(
        "<p>Worktree <b>{}</b> (branch <code>{}</code>) on port {} did not answer this request: its server closed the connection, or the request's body stopped arriving.</p>\n<p>Its own log says more.</p>\n",
        escape(&target.slug),
        escape(&target.branch),
        target.port,
    );
    page("Worktree did not answer", &body)
}

/// Nothing matched and the main worktree has no port.
pub fn no_route(table: &RouteTable, proxy_port: u16, listening: &dyn Fn(u16) -> bool) -> String {
    let body = format!(
        "<p>No worktree matches this request, and the main worktree has no port for the proxy route (set <code>main = PORT</code> on that service in pwt.toml).</p>\n{}",
        worktree_list(table, proxy_port, listening)
    );
    page("No route", &body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_suggested_command_is_safe_to_paste() {
        let t = crate::route::Target {
            slug: "feat-touch-ifs-pwned".into(),
            branch: "feat/$(touch${IFS}pwned)".into(),
            port: 1,
        };
        let page = super::bad_gateway(&t);
        assert!(
            page.contains("pwt dev &#39;feat/$(touch${IFS}pwned)&#39;"),
            "{page}"
        );
    }

    #[test]
    fn escapes_everything_dangerous() {
        assert_eq!(
            super::escape("<script>\"'&"),
            "&lt;script&gt;&quot;&#39;&amp;"
        );
    }
}
