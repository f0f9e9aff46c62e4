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
}

/// What to do with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The `/_pwt` status page.
    Status,
    /// Forward to a worktree.
    Forward(Target),
    /// No main worktree port is known and nothing else matched.
    NoRoute,
    /// OAuth callback with a registered state: redirect the browser (if it is up).
    Redirect {
        /// The worktree.
        target: Target,
        /// 302 for GET, 307 otherwise (a form_post body survives a 307).
        status: u16,
        /// `http://localhost:<port><path>?<query byte-for-byte>`.
        location: String,
    },
    /// OAuth callback that cannot be routed: a 400 page, no Location.
    Reject {
        /// What is wrong with the state.
        reason: String,
    },
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
fn host_name(host: &str) -> Option<String> {
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

impl RouteTable {
    /// A worktree by slug; `main` is the main worktree.
    pub fn find(&self, slug: &str) -> Option<&Target> {
        self.worktrees
            .get(slug)
            .or(self.main.as_ref().filter(|m| m.slug == slug))
    }

    /// Decides what to do with a request. `raw_query` is the query exactly as received.
    pub fn decide(
        &self,
        method: &str,
        host: Option<&str>,
        path: &str,
        raw_query: Option<&str>,
    ) -> Decision {
        if path == "/_pwt" || path.starts_with("/_pwt/") {
            return Decision::Status;
        }
        if path == self.callback {
            return self.callback(method, path, raw_query);
        }
        if let Some(name) = host.and_then(host_name)
            && let Some(label) = name.strip_suffix(".localhost")
            && let Some(t) = self.worktrees.get(label)
        {
            return Decision::Forward(t.clone());
        }
        let first = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        if !first.is_empty()
            && let Some(t) = self.worktrees.get(first)
        {
            return Decision::Forward(t.clone());
        }
        match &self.main {
            Some(m) => Decision::Forward(m.clone()),
            None => Decision::NoRoute,
        }
    }

    fn callback(&self, method: &str, path: &str, raw_query: Option<&str>) -> Decision {
        let reject = |reason: String| Decision::Reject { reason };
        let Some(query) = raw_query else {
            return reject("the callback has no query string, so no state".into());
        };
        let states = query_values(query, "state");
        let state = match states.as_slice() {
            [] => return reject("the callback has no state parameter".into()),
            [Some(s)] => s.clone(),
            [None] => {
                return reject("the state parameter is not valid percent-encoded UTF-8".into());
            }
            _ => {
                return reject(format!(
                    "the callback has {} state parameters; exactly one is allowed",
                    states.len()
                ));
            }
        };
        if state.is_empty() {
            return reject("the state parameter is empty".into());
        }
        let prefix = state_prefix(&state);
        let Some(target) = self.find(prefix) else {
            return reject(format!(
                "no worktree has the slug {prefix:?} (the state's text before ~)"
            ));
        };
        // Built from the registry (port) and the request's own path and query, which are
        // already valid request-target bytes; nothing from Host or the state's text.
        Decision::Redirect {
            target: target.clone(),
            status: if method == "GET" || method == "HEAD" {
                302
            } else {
                307
            },
            location: format!("http://localhost:{}{path}?{query}", target.port),
        }
    }
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
        }
    }

    fn port(d: Decision) -> u16 {
        match d {
            Decision::Forward(t) => t.port,
            other => panic!("not a forward: {other:?}"),
        }
    }

    #[test]
    fn host_path_and_fallback_routes() {
        let t = table();
        assert_eq!(
            port(t.decide("GET", Some("feat-x.localhost:8080"), "/", None)),
            21000
        );
        assert_eq!(
            port(t.decide("GET", Some("FEAT-X.LOCALHOST"), "/a", None)),
            21000
        );
        assert_eq!(
            port(t.decide("GET", Some("localhost:8080"), "/b/assets/x.js", None)),
            21002
        );
        assert_eq!(
            port(t.decide("GET", Some("localhost:8080"), "/b", None)),
            21002
        );
        assert_eq!(
            port(t.decide("GET", Some("localhost:8080"), "/bb", None)),
            3000
        );
        assert_eq!(
            port(t.decide("GET", Some("nope.localhost:8080"), "/", None)),
            3000
        );
        assert_eq!(port(t.decide("GET", None, "/", None)), 3000);
        assert_eq!(port(t.decide("GET", Some("[::1]:8080"), "/", None)), 3000);
        assert_eq!(
            t.decide("GET", Some("localhost"), "/_pwt", None),
            Decision::Status
        );
        let no_main = RouteTable {
            main: None,
            ..table()
        };
        assert_eq!(
            no_main.decide("GET", Some("localhost"), "/", None),
            Decision::NoRoute
        );
    }

    #[test]
    fn callback_redirects_byte_for_byte() {
        let t = table();
        let q = "code=abc%2B%2F&state=feat-x~R&iss=https%3A%2F%2Fidp";
        match t.decide("GET", Some("localhost:8080"), "/auth/callback", Some(q)) {
            Decision::Redirect {
                status, location, ..
            } => {
                assert_eq!(status, 302);
                assert_eq!(
                    location,
                    format!("http://localhost:21000/auth/callback?{q}")
                );
            }
            other => panic!("{other:?}"),
        }
        match t.decide(
            "POST",
            Some("localhost"),
            "/auth/callback",
            Some("state=b.x"),
        ) {
            Decision::Redirect {
                status, location, ..
            } => {
                assert_eq!(
                    (status, location.as_str()),
                    (307, "http://localhost:21002/auth/callback?state=b.x")
                );
            }
            other => panic!("{other:?}"),
        }
        // error= responses route like successes.
        assert!(matches!(
            t.decide(
                "GET",
                None,
                "/auth/callback",
                Some("error=access_denied&state=feat-x:1")
            ),
            Decision::Redirect { .. }
        ));
        assert!(matches!(
            t.decide("GET", None, "/auth/callback", Some("state=main~1")),
            Decision::Redirect { .. }
        ));
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
            match t.decide("GET", Some("evil.com"), "/auth/callback", Some(q)) {
                Decision::Reject { .. } => {}
                Decision::Redirect { location, .. } => {
                    assert!(
                        location.starts_with("http://localhost:21000/")
                            || location.starts_with("http://localhost:21002/")
                            || location.starts_with("http://localhost:3000/"),
                        "{q}: {location}"
                    );
                    assert!(!location.contains(['\r', '\n']), "{q}");
                    panic!("{q} should have been rejected, got {location}");
                }
                other => panic!("{q}: {other:?}"),
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
