//! Cookies that work and stay home. A worktree's app that sets `Domain=localhost` (a common
//! development setting) loses its session behind `<slug>.localhost` — browsers drop a
//! cookie whose domain is a public-suffix-like parent of the host, as Chromium does for
//! `localhost` — and where it is kept, every worktree would share it. The proxy makes such a
//! cookie host-only (removes its `Domain` attribute) for the host the browser used, so the
//! browser keeps it, and only for that worktree.

/// `set_cookie` (one `Set-Cookie` value) with each `Domain` attribute that names
/// `localhost`, the request's host, or a parent of it removed; `None` when nothing changes.
/// `host` is the `Host` the browser sent (a port is ignored).
pub fn host_only(set_cookie: &str, host: &str) -> Option<String> {
    let host = crate::route::host_name(host)?;
    let mut parts = set_cookie.split(';');
    let first = parts.next()?;
    // A `__Host-` cookie with a Domain is refused by browsers in production too: left as
    // sent, so development does not accept what production drops.
    if first.trim_start().starts_with("__Host-") {
        return None;
    }
    let mut kept = vec![first];
    let mut changed = false;
    for attr in parts {
        let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
        if name.trim().eq_ignore_ascii_case("domain") && names_home(&normalize(value), &host) {
            changed = true;
            continue;
        }
        kept.push(attr);
    }
    changed.then(|| kept.join(";"))
}

/// `Domain` values as browsers compare them: trimmed, without a leading or trailing dot,
/// lower case.
fn normalize(domain: &str) -> String {
    domain
        .trim()
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// The domain is `localhost`, the host itself, or a parent of the host.
fn names_home(domain: &str, host: &str) -> bool {
    !domain.is_empty()
        && (domain == "localhost"
            || domain == host
            || host
                .strip_suffix(domain)
                .is_some_and(|rest| rest.ends_with('.')))
}

#[cfg(test)]
mod tests {
    use super::host_only;

    #[test]
    fn domains_naming_home_are_dropped() {
        let host = "feat-a.localhost:8080";
        for (sent, want) in [
            (
                "sid=1; Domain=localhost; Path=/; HttpOnly",
                Some("sid=1; Path=/; HttpOnly"),
            ),
            ("sid=1; domain=.localhost", Some("sid=1")),
            ("sid=1; DOMAIN=LOCALHOST.", Some("sid=1")),
            ("sid=1;Domain= localhost ;Path=/", Some("sid=1;Path=/")),
            ("sid=1; Domain=feat-a.localhost", Some("sid=1")),
            ("__Host-sid=1; Domain=localhost; Secure; Path=/", None),
            // Two: the browser would take the last; both name home, both go.
            ("sid=1; Domain=localhost; Domain=.localhost", Some("sid=1")),
            // Already host-only, or some other site's: left as sent.
            ("sid=1; Path=/", None),
            ("sid=1; Domain=example.com", None),
            ("sid=1; Domain=other.localhost", None),
            ("sid=1; Domain=", None),
            // A value that only looks like one.
            ("sid=domain=localhost; Path=/", None),
            ("sid=1; Domain=a.localhost", None),
            ("sid=1; Domain=calhost", None),
        ] {
            assert_eq!(host_only(sent, host).as_deref(), want, "{sent}");
        }
        // On localhost itself (the callback, path routes, the main worktree).
        assert_eq!(
            host_only("sid=1; Domain=localhost", "localhost:8080").as_deref(),
            Some("sid=1")
        );
        assert_eq!(host_only("sid=1; Domain=localhost", ""), None);
    }
}
