//! Routing decisions, as pure functions of the route table and the request line: testable
//! without sockets, and shared by the server and `pwt proxy caddyfile`.

use std::collections::BTreeMap;

/// One worktree the proxy can reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its slug (`main` for the main worktree).
    pub slug: String,
    /// Its branch, for pages.
    pub branch: String,
    /// The port `proxy.route` names.
    pub port: u16,
}

/// Everything the proxy routes to. Built from the registry alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// Leased worktrees by slug.
    pub worktrees: BTreeMap<String, Target>,
    /// The main worktree, when it has a port for `proxy.route`.
    pub main: Option<Target>,
    /// The one OAuth redirect path (`/auth/callback`).
    pub callback: String,
    /// The proxy's port as the worktrees' env files name it (`PWT_URL`,
    /// `OAUTH_REDIRECT_URI`).
    pub port: u16,
    /// Path routes `/<slug>/…` reach the worktree without the `/<slug>` prefix.
    pub strip_prefix: bool,
    /// A `Set-Cookie` whose `Domain` names `localhost` or the host (or a parent) is made
    /// host-only for the host the browser used ([`crate::host_only`]).
    pub host_only_cookies: bool,
    /// The worktrees' URLs and the redirect URI are `https://` (`proxy.https`).
    pub https: bool,
}

impl RouteTable {
    /// `https` or `http`: the scheme of the worktrees' proxy URLs.
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }
}

/// What the server knows of a request when it decides.
#[derive(Clone, Copy, Debug, Default)]
pub struct Req<'a> {
    /// Method.
    pub method: &'a str,
    /// `Host`.
    pub host: Option<&'a str>,
    /// Path, as received.
    pub path: &'a str,
    /// Query, exactly as received.
    pub query: Option<&'a str>,
    /// An `application/x-www-form-urlencoded` body of a POST to the callback path
    /// (form_post), read by the server up to its bound.
    pub form: Option<&'a str>,
    /// The port this proxy listens on: a callback is sent back to where its login began
    /// on this port, never on one a `Host` header named.
    pub port: u16,
    /// A browser's top-level navigation (`Sec-Fetch-Mode: navigate`): a path route sends it
    /// to the worktree's own name, where a page's absolute paths reach the worktree too.
    pub navigate: bool,
    /// The request came over TLS: the proxy's own redirects stay on `https`.
    pub tls: bool,
}

impl Req<'_> {
    /// `https` over TLS, else `http`.
    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// Where a login the proxy saw begin came from: the host name the browser used, exactly
/// (lowercased; a trailing dot kept, as the browser keeps its cookies apart by it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `<slug>.localhost`: the callback is sent back there, with that origin's cookies.
    SlugHost {
        /// The name, e.g. `feat-x.localhost`.
        name: String,
    },
    /// One of the proxy's own names (`localhost`, `127.0.0.1`, `[::1]`), where the main
    /// worktree and the `/<slug>/` path routes are: a callback arriving on that very name is
    /// forwarded; on another, it is sent to that name first.
    Proxy {
        /// The name, e.g. `localhost` or `[::1]`.
        name: String,
    },
}

/// A `state` the proxy saw a worktree send to an authorization endpoint with the registered
/// redirect URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learned {
    /// The worktree's slug.
    pub slug: String,
    /// Where the login began.
    pub origin: Origin,
    /// It began over HTTPS: the callback is sent back on `https`, whatever scheme it
    /// arrives on (storage is kept per scheme).
    pub tls: bool,
}

/// What to do with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The `/_pwt` status page.
    Status,
    /// Forward to a worktree; `path` replaces the request's path (a stripped prefix).
    Forward {
        /// The worktree.
        target: Target,
        /// The path to send instead, when the `/<slug>` prefix is stripped.
        path: Option<String>,
    },
    /// No main worktree port is known and nothing else matched.
    NoRoute,
    /// The `Host` is not a loopback name: 421, nothing else (DNS rebinding).
    Misdirected,
    /// OAuth callback with a known state: redirect the browser (if the worktree is up).
    Redirect {
        /// The worktree.
        target: Target,
        /// 302 for GET, 307 otherwise (a form_post body survives a 307).
        status: u16,
        /// Where, with the request's path and query byte for byte.
        location: String,
        /// The state and what was learned of it, learned again: the browser comes back
        /// with it on the proxy's name the login began on, where it is forwarded.
        keep: Option<(String, Learned)>,
    },
    /// `<slug>.localhost` names no worktree (any more): a 404 page, never another
    /// worktree's app.
    UnknownWorktree {
        /// The slug the host names.
        slug: String,
    },
    /// A browser navigating to a path route `/<slug>/…`: sent to `<slug>.localhost` on the
    /// proxy's port (302), with the path the worktree would have been sent and the query.
    ToSlugHost {
        /// The worktree.
        target: Target,
        /// Where.
        location: String,
    },
    /// OAuth callback that cannot be routed: a 400 page, no Location.
    Reject {
        /// What is wrong with the state.
        reason: String,
    },
}

impl Decision {
    fn forward(target: &Target) -> Self {
        Self::Forward {
            target: target.clone(),
            path: None,
        }
    }
}

/// The slug part of an OAuth `state`: the text before the first `~`, `.` or `:`, or the
/// whole value.
pub fn state_prefix(state: &str) -> &str {
    state.split(['~', '.', ':']).next().unwrap_or(state)
}

/// Percent-decodes a query component (`+` is a space, as in forms); bytes that are not
/// UTF-8 make it `None`.
pub fn decode_component(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// All values of `name` in a raw query string.
pub fn query_values(query: &str, name: &str) -> Vec<Option<String>> {
    query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(k).as_deref() == Some(name)).then(|| decode_component(v))
        })
        .collect()
}

/// The host without its port, lowercased; `None` for IPv6 literals and empty hosts.
pub(crate) fn host_name(host: &str) -> Option<String> {
    if host.starts_with('[') {
        return None;
    }
    let name = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

/// True for the names the proxy serves: `localhost`, `*.localhost`, `127.0.0.1` and `[::1]`,
/// with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    if let Some(rest) = host.strip_prefix("[::1]") {
        return rest.is_empty() || rest.strip_prefix(':').is_some_and(all_digits);
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if port.is_some_and(|p| !all_digits(p)) {
        return false;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let label_ok =
        |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    name == "localhost"
        || name == "127.0.0.1"
        || name
            .strip_suffix(".localhost")
            .is_some_and(|sub| sub.split('.').all(label_ok))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The port in a `Host` value, if any.
pub fn host_port(host: &str) -> Option<u16> {
    host.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// The slug a `<slug>.localhost` host names.
fn slug_host(host: &str) -> Option<String> {
    host_name(host)?
        .strip_suffix(".localhost")
        .map(str::to_owned)
}

impl RouteTable {
    /// A worktree by slug; `main` is the main worktree.
    pub fn find(&self, slug: &str) -> Option<&Target> {
        self.worktrees
            .get(slug)
            .or(self.main.as_ref().filter(|m| m.slug == slug))
    }

    /// Decides what to do with a request. `learned` gives (and forgets: states are single
    /// use) what the proxy learned of a state.
    pub fn decide(
        &self,
        req: &Req<'_>,
        learned: &mut dyn FnMut(&str) -> Option<Learned>,
    ) -> Decision {
        if !req.host.is_some_and(is_loopback_host) {
            return Decision::Misdirected;
        }
        let path = req.path;
        if path == "/_pwt" || path.starts_with("/_pwt/") {
            return Decision::Status;
        }
        if let Some(slug) = req.host.and_then(slug_host) {
            match self.worktrees.get(&slug) {
                // Also the callback, when the browser came back to where its login began.
                Some(t) => return Decision::forward(t),
                None if slug == "main" => {}
                None => return Decision::UnknownWorktree { slug },
            }
        }
        if path == self.callback {
            return self.callback(req, learned);
        }
        let first = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        if !first.is_empty()
            && let Some(t) = self.worktrees.get(first)
        {
            let stripped = self.strip_prefix.then(|| {
                let rest = &path[1 + first.len()..];
                if rest.is_empty() {
                    "/".to_owned()
                } else {
                    rest.to_owned()
                }
            });
            if req.navigate && (req.method == "GET" || req.method == "HEAD") {
                let sent = stripped.as_deref().unwrap_or(path);
                let query = req.query.map(|q| format!("?{q}")).unwrap_or_default();
                return Decision::ToSlugHost {
                    target: t.clone(),
                    location: format!(
                        "{}://{first}.localhost:{}{sent}{query}",
                        req.scheme(),
                        req.port
                    ),
                };
            }
            return Decision::Forward {
                target: t.clone(),
                path: stripped,
            };
        }
        match &self.main {
            Some(m) => Decision::forward(m),
            None => Decision::NoRoute,
        }
    }

    /// The state of a callback: from the query, else from a form_post body.
    fn state_of(req: &Req<'_>) -> Result<String, String> {
        let from_query = req
            .query
            .map(|q| query_values(q, "state"))
            .unwrap_or_default();
        // Both count: a state in the query and another in the body is two states.
        let mut states = from_query;
        if let Some(form) = req.form {
            states.extend(query_values(form, "state"));
        }
        match states.as_slice() {
            [] if req.query.is_none() && req.form.is_none() => {
                Err("the callback has no query string and no form body, so no state".into())
            }
            [] => Err("the callback has no state parameter".into()),
            [Some(s)] if s.is_empty() => Err("the state parameter is empty".into()),
            [Some(s)] => Ok(s.clone()),
            [None] => Err("the state parameter is not valid percent-encoded UTF-8".into()),
            _ => Err(format!(
                "the callback has {} state parameters; exactly one is allowed",
                states.len()
            )),
        }
    }

    fn callback(
        &self,
        req: &Req<'_>,
        learned: &mut dyn FnMut(&str) -> Option<Learned>,
    ) -> Decision {
        let state = match Self::state_of(req) {
            Ok(s) => s,
            Err(reason) => return Decision::Reject { reason },
        };
        let status = if req.method == "GET" || req.method == "HEAD" {
            302
        } else {
            307
        };
        // The request's own path and query: already valid request-target bytes.
        let rest = match req.query {
            Some(q) => format!("{}?{q}", req.path),
            None => req.path.to_owned(),
        };
        if let Some(l) = learned(&state)
            && let Some(target) = self.find(&l.slug)
        {
            let here = req.host.and_then(exact_name);
            return match &l.origin {
                Origin::Proxy { name } if here.as_deref() == Some(name) && req.tls == l.tls => {
                    Decision::forward(target)
                }
                Origin::Proxy { name } | Origin::SlugHost { name } => Decision::Redirect {
                    target: target.clone(),
                    status,
                    location: format!(
                        "{}://{name}:{}{rest}",
                        if l.tls { "https" } else { "http" },
                        req.port
                    ),
                    keep: matches!(l.origin, Origin::Proxy { .. })
                        .then(|| (state.clone(), l.clone())),
                },
            };
        }
        let prefix = state_prefix(&state);
        let Some(target) = self.find(prefix) else {
            return Decision::Reject {
                reason: format!(
                    "no worktree started a login with this state, and none has the slug {prefix:?} (the state's text before ~)"
                ),
            };
        };
        // Built from the registry (port) and the request's own path and query; nothing
        // from Host or the state's text.
        Decision::Redirect {
            target: target.clone(),
            status,
            location: format!("http://localhost:{}{rest}", target.port),
            keep: None,
        }
    }

    /// True when `url` is the registered redirect URI: `http://localhost` or
    /// `https://localhost` (or `127.0.0.1`, `[::1]`) on one of `ports`, at the callback path.
    pub fn is_redirect_uri(&self, url: &str, ports: &[u16]) -> bool {
        let Some(rest) = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
        else {
            return false;
        };
        let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok()),
            None => (authority, Some(80)),
        };
        matches!(host, "localhost" | "127.0.0.1" | "[::1]")
            && port.is_some_and(|p| ports.contains(&p))
            && path == self.callback
    }
}

/// The `state` an authorization redirect carries, when its `redirect_uri` is the registered
/// one: what the proxy learns from a worktree's response `Location`.
pub fn authorization_state(table: &RouteTable, location: &str, ports: &[u16]) -> Option<String> {
    let query = location.split_once('?')?.1.split('#').next()?;
    let redirect = query_values(query, "redirect_uri");
    let [Some(uri)] = redirect.as_slice() else {
        return None;
    };
    if !table.is_redirect_uri(uri, ports) {
        return None;
    }
    match query_values(query, "state").as_slice() {
        [Some(s)] if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Where a login begins, from the `Host` of the request whose response started it.
pub fn origin_of(host: Option<&str>, slug: &str) -> Option<Origin> {
    let host = host?;
    let name = exact_name(host)?;
    if slug_host(host).as_deref() == Some(slug) {
        return Some(Origin::SlugHost { name });
    }
    let own = matches!(
        name.trim_end_matches('.'),
        "localhost" | "127.0.0.1" | "[::1]"
    );
    own.then_some(Origin::Proxy { name })
}

/// A `Host` without its port, lowercased, a trailing dot kept; `[::1]` as written.
pub(crate) fn exact_name(host: &str) -> Option<String> {
    if let Some(rest) = host.strip_prefix("[::1]") {
        return (rest.is_empty() || rest.starts_with(':')).then(|| "[::1]".to_owned());
    }
    let name = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let t = |slug: &str, port| Target {
            slug: slug.into(),
            branch: slug.into(),
            port,
        };
        RouteTable {
            worktrees: BTreeMap::from([
                ("feat-x".into(), t("feat-x", 21000)),
                ("b".into(), t("b", 21002)),
            ]),
            main: Some(t("main", 3000)),
            callback: "/auth/callback".into(),
            port: 8080,
            strip_prefix: false,
            host_only_cookies: true,
            https: false,
        }
    }

    fn none(_: &str) -> Option<Learned> {
        None
    }

    fn decide(
        t: &RouteTable,
        method: &str,
        host: Option<&str>,
        path: &str,
        query: Option<&str>,
    ) -> Decision {
        t.decide(
            &Req {
                method,
                host,
                path,
                query,
                form: None,
                port: 8080,
                navigate: false,
                tls: false,
            },
            &mut none,
        )
    }

    fn port(d: Decision) -> u16 {
        match d {
            Decision::Forward { target, .. } => target.port,
            other => panic!("not a forward: {other:?}"),
        }
    }

    #[test]
    fn host_path_and_fallback_routes() {
        let t = table();
        let get = |host: &str, path: &str| decide(&t, "GET", Some(host), path, None);
        assert_eq!(port(get("feat-x.localhost:8080", "/")), 21000);
        assert_eq!(port(get("FEAT-X.LOCALHOST", "/a")), 21000);
        assert_eq!(port(get("localhost:8080", "/b/assets/x.js")), 21002);
        assert_eq!(port(get("localhost:8080", "/b")), 21002);
        assert_eq!(port(get("localhost:8080", "/bb")), 3000);
        assert_eq!(
            get("nope.localhost:8080", "/"),
            Decision::UnknownWorktree {
                slug: "nope".into()
            }
        );
        assert_eq!(port(get("main.localhost:8080", "/")), 3000);
        assert_eq!(port(get("[::1]:8080", "/")), 3000);
        assert_eq!(port(get("127.0.0.1", "/")), 3000);
        assert_eq!(get("localhost", "/_pwt"), Decision::Status);
        let no_main = RouteTable {
            main: None,
            ..table()
        };
        assert_eq!(
            decide(&no_main, "GET", Some("localhost"), "/", None),
            Decision::NoRoute
        );
    }

    #[test]
    fn a_browser_navigating_to_a_path_route_goes_to_the_worktree_name() {
        let nav = |t: &RouteTable, method: &str, path: &str, query: Option<&str>| {
            t.decide(
                &Req {
                    method,
                    host: Some("localhost:8080"),
                    path,
                    query,
                    port: 8080,
                    navigate: true,
                    tls: false,
                    ..Req::default()
                },
                &mut none,
            )
        };
        let t = table();
        let to = |location: &str| Decision::ToSlugHost {
            target: table().worktrees["b"].clone(),
            location: location.into(),
        };
        // The prefix kept (an app with a base path), or dropped, as it would be sent.
        assert_eq!(
            nav(&t, "GET", "/b/app/", Some("x=1")),
            to("http://b.localhost:8080/b/app/?x=1")
        );
        let strip = RouteTable {
            strip_prefix: true,
            ..table()
        };
        assert_eq!(
            nav(&strip, "GET", "/b/app/", None),
            to("http://b.localhost:8080/app/")
        );
        assert_eq!(
            nav(&strip, "HEAD", "/b", None),
            to("http://b.localhost:8080/")
        );
        // Not a navigation, or not a GET: forwarded as before.
        assert_eq!(port(nav(&t, "POST", "/b/api", None)), 21002);
        assert_eq!(
            port(decide(&t, "GET", Some("localhost"), "/b/x.js", None)),
            21002
        );
        // The main worktree and unknown first segments are not path routes.
        assert_eq!(port(nav(&t, "GET", "/bb", None)), 3000);
    }

    #[test]
    fn only_loopback_names_are_served() {
        let t = table();
        for host in [
            None,
            Some("evil.com"),
            Some("evil.com:8080"),
            Some("localhost.evil.com"),
            Some("feat-x.localhost.evil.com"),
            Some("127.0.0.2"),
            Some("192.168.1.5:8080"),
            Some("[::2]:8080"),
            Some("localhost:80x"),
            Some("feat-x.localhost:8080@evil.com"),
            Some(""),
        ] {
            for path in ["/", "/_pwt", "/auth/callback", "/feat-x/"] {
                assert_eq!(
                    decide(&t, "GET", host, path, Some("state=feat-x~1")),
                    Decision::Misdirected,
                    "{host:?} {path}"
                );
            }
        }
        assert!(is_loopback_host("a.b.localhost:1"));
        assert!(is_loopback_host("[::1]"));
    }

    #[test]
    fn path_routes_can_drop_their_prefix() {
        let t = RouteTable {
            strip_prefix: true,
            ..table()
        };
        let d = decide(&t, "GET", Some("localhost:8080"), "/b/assets/x.js", None);
        assert_eq!(
            d,
            Decision::Forward {
                target: table().worktrees["b"].clone(),
                path: Some("/assets/x.js".into())
            }
        );
        let d = decide(&t, "GET", Some("localhost:8080"), "/b", None);
        assert!(matches!(d, Decision::Forward { path: Some(p), .. } if p == "/"));
        // Host routes are untouched.
        assert!(matches!(
            decide(&t, "GET", Some("b.localhost"), "/b/x", None),
            Decision::Forward { path: None, .. }
        ));
    }

    /// The status and location of a redirect, or the test fails.
    fn redirect(d: Decision) -> (u16, String) {
        match d {
            Decision::Redirect {
                status, location, ..
            } => (status, location),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn callback_redirects_byte_for_byte() {
        let t = table();
        let q = "code=abc%2B%2F&state=feat-x~R&iss=https%3A%2F%2Fidp";
        let (status, location) = redirect(decide(
            &t,
            "GET",
            Some("localhost:8080"),
            "/auth/callback",
            Some(q),
        ));
        assert_eq!(status, 302);
        assert_eq!(
            location,
            format!("http://localhost:21000/auth/callback?{q}")
        );
        let (status, location) = redirect(decide(
            &t,
            "POST",
            Some("localhost"),
            "/auth/callback",
            Some("state=b.x"),
        ));
        assert_eq!(
            (status, location.as_str()),
            (307, "http://localhost:21002/auth/callback?state=b.x")
        );
        // error= responses route like successes.
        assert!(matches!(
            decide(
                &t,
                "GET",
                Some("localhost"),
                "/auth/callback",
                Some("error=access_denied&state=feat-x:1")
            ),
            Decision::Redirect { .. }
        ));
        assert!(matches!(
            decide(
                &t,
                "GET",
                Some("localhost"),
                "/auth/callback",
                Some("state=main~1")
            ),
            Decision::Redirect { .. }
        ));
        // A callback that came back to its worktree's own origin is forwarded there.
        assert_eq!(
            port(decide(
                &t,
                "GET",
                Some("feat-x.localhost:8080"),
                "/auth/callback",
                Some("state=x")
            )),
            21000
        );
    }

    #[test]
    fn learned_states_win_and_send_the_browser_back_where_it_began() {
        let t = table();
        let mut learned = |s: &str| {
            (s == "random123").then(|| Learned {
                tls: false,
                slug: "b".into(),
                origin: Origin::SlugHost {
                    name: "b.localhost".into(),
                },
            })
        };
        // The login began on port 8080: back there, whatever port the callback's Host names.
        let req = Req {
            method: "GET",
            host: Some("localhost:65535"),
            path: "/auth/callback",
            query: Some("code=c&state=random123"),
            form: None,
            port: 8080,
            navigate: false,
            tls: false,
        };
        let (status, location) = redirect(t.decide(&req, &mut learned));
        assert_eq!(
            (status, location.as_str()),
            (
                302,
                "http://b.localhost:8080/auth/callback?code=c&state=random123"
            )
        );
        // form_post: the state from the body, a 307 so the browser posts it again.
        let req = Req {
            method: "POST",
            host: Some("localhost:8080"),
            path: "/auth/callback",
            query: None,
            form: Some("code=c&state=random123"),
            port: 8080,
            navigate: false,
            tls: false,
        };
        let (status, location) = redirect(t.decide(&req, &mut learned));
        assert_eq!(
            (status, location.as_str()),
            (307, "http://b.localhost:8080/auth/callback")
        );
        // A state in the query and another in the body are two: refused.
        assert!(matches!(
            t.decide(
                &Req {
                    query: Some("state=random123"),
                    form: Some("code=c&state=other"),
                    ..req
                },
                &mut learned
            ),
            Decision::Reject { .. }
        ));
        // A login begun on the proxy's own origin is forwarded, body and all.
        let at = |name: &str| {
            let name = name.to_owned();
            move |_: &str| {
                Some(Learned {
                    tls: false,
                    slug: "feat-x".into(),
                    origin: Origin::Proxy { name: name.clone() },
                })
            }
        };
        assert_eq!(
            port(t.decide(
                &Req {
                    form: Some("state=z"),
                    ..req
                },
                &mut at("localhost")
            )),
            21000
        );
        // Begun on 127.0.0.1 (its own cookie jar): sent there first, the state kept for it.
        match t.decide(
            &Req {
                form: Some("state=z"),
                ..req
            },
            &mut at("127.0.0.1"),
        ) {
            Decision::Redirect { location, keep, .. } => {
                assert_eq!(location, "http://127.0.0.1:8080/auth/callback");
                assert_eq!(keep.map(|(s, _)| s).as_deref(), Some("z"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            port(t.decide(
                &Req {
                    host: Some("127.0.0.1:8080"),
                    form: Some("state=z"),
                    ..req
                },
                &mut at("127.0.0.1")
            )),
            21000
        );
        // Begun over HTTPS, back over HTTPS, whatever scheme the callback came on (and the
        // other way round): storage is kept per scheme.
        for (began_tls, arrives_tls, scheme) in [(true, false, "https"), (false, true, "http")] {
            let mut learned = |_: &str| {
                Some(Learned {
                    tls: began_tls,
                    slug: "feat-x".into(),
                    origin: Origin::SlugHost {
                        name: "feat-x.localhost".into(),
                    },
                })
            };
            match t.decide(
                &Req {
                    tls: arrives_tls,
                    ..req
                },
                &mut learned,
            ) {
                Decision::Redirect { location, .. } => {
                    assert!(
                        location.starts_with(&format!("{scheme}://feat-x.localhost:8080/")),
                        "{location}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        // An unknown random state with no prefix is refused.
        assert!(matches!(
            decide(
                &t,
                "GET",
                Some("localhost"),
                "/auth/callback",
                Some("state=zzz")
            ),
            Decision::Reject { .. }
        ));
    }

    #[test]
    fn authorization_redirects_are_recognised() {
        let t = table();
        let loc = "https://idp.example/authorize?client_id=a&redirect_uri=http%3A%2F%2Flocalhost%3A8080%2Fauth%2Fcallback&state=S1&response_type=code";
        assert_eq!(authorization_state(&t, loc, &[8080]).as_deref(), Some("S1"));
        assert_eq!(
            authorization_state(&t, loc, &[9090]),
            None,
            "another port is another URI"
        );
        let other = loc.replace("%2Fauth%2Fcallback", "%2Fother");
        assert_eq!(authorization_state(&t, &other, &[8080]), None);
        let evil = loc.replace("localhost", "evil.com");
        assert_eq!(authorization_state(&t, &evil, &[8080]), None);
        let slug = |n: &str| Some(Origin::SlugHost { name: n.into() });
        let own = |n: &str| Some(Origin::Proxy { name: n.into() });
        assert_eq!(
            origin_of(Some("b.localhost:8080"), "b"),
            slug("b.localhost")
        );
        assert_eq!(
            origin_of(Some("B.localhost.:8080"), "b"),
            slug("b.localhost.")
        );
        assert_eq!(origin_of(Some("localhost:8080"), "b"), own("localhost"));
        assert_eq!(origin_of(Some("127.0.0.1:8080"), "b"), own("127.0.0.1"));
        assert_eq!(origin_of(Some("[::1]:8080"), "b"), own("[::1]"));
        assert_eq!(origin_of(Some("feat-x.localhost"), "b"), None);
    }

    #[test]
    fn crafted_states_never_redirect_elsewhere() {
        let t = table();
        for q in [
            "code=1",
            "state=",
            "state=feat-x~a&state=b~c",
            "state=feat-x%40evil.com~R",
            "state=feat-x@evil.com~R",
            "state=%2F%2Fevil.com~R",
            "state=//evil.com~R",
            "state=http:%2F%2Fevil.com~R",
            "state=feat-x%0d%0aSet-Cookie:a=b~R",
            "state=..%2F..~R",
            "state=%3Cscript%3E",
            "state=%FF",
            "state=FEAT-X~R",
        ] {
            match decide(&t, "GET", Some("localhost:8080"), "/auth/callback", Some(q)) {
                Decision::Reject { .. } => {}
                other => panic!("{q} should have been rejected: {other:?}"),
            }
        }
    }

    #[test]
    fn decoding() {
        assert_eq!(decode_component("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(decode_component("%E2%9C%93").as_deref(), Some("✓"));
        assert_eq!(decode_component("%FF"), None);
        assert_eq!(decode_component("%4"), Some("%4".into()));
        assert_eq!(state_prefix("feat-x~abc"), "feat-x");
        assert_eq!(state_prefix("feat-x.abc~d"), "feat-x");
        assert_eq!(state_prefix("feat-x"), "feat-x");
    }
}
