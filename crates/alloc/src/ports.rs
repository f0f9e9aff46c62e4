//! Port allocation: a block of consecutive ports per worktree, preferred by hash, found by
//! linear probing, checked against leases, env files and real sockets.

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use pwt_core::stable_hash_parts;

use crate::error::AllocError;

/// What a worktree needs.
#[derive(Clone, Debug)]
pub struct PortRequest<'a> {
    /// Repository identity (its common dir), part of the preferred-block hash.
    pub repo: &'a str,
    /// The worktree's slug, the other part.
    pub slug: &'a str,
    /// Service names, in a fixed order (the block's order).
    pub services: &'a [String],
    /// Inclusive range.
    pub range: (u16, u16),
    /// Ports this branch held before, tried first.
    pub remembered: Option<&'a BTreeMap<String, u16>>,
}

/// True when nothing listens on `port` on the loopback interfaces, IPv4 and IPv6.
///
/// Binding `127.0.0.1` fails when anything listens there or on `0.0.0.0`; binding `::1` fails
/// when anything listens there or on `::` (dual-stack or not). A machine without IPv6 has
/// nothing to conflict with there, so an unavailable address counts as free.
pub fn port_is_free(port: u16) -> bool {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let free = |addr| match TcpListener::bind(addr) {
        Ok(_) => true,
        Err(e) => {
            matches!(
                e.kind(),
                std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::Unsupported
            ) || e.raw_os_error() == Some(97)
        } // EAFNOSUPPORT: no IPv6 stack
    };
    free(v4) && free(v6)
}

/// Picks the ports for `req`: the remembered ones if all are still available, else the
/// first available block from the hash-preferred one on. A port is available when it is not
/// in `taken` and `is_free` says nothing listens on it.
pub fn allocate_ports(
    req: &PortRequest<'_>,
    taken: &HashSet<u16>,
    is_free: impl Fn(u16) -> bool,
) -> Result<BTreeMap<String, u16>, AllocError> {
    let (lo, hi) = req.range;
    let available = |p: u16| (lo..=hi).contains(&p) && !taken.contains(&p) && is_free(p);
    if let Some(old) = req.remembered
        && req
            .services
            .iter()
            .all(|s| old.get(s).is_some_and(|p| available(*p)))
    {
        let distinct: HashSet<_> = req.services.iter().map(|s| old[s]).collect();
        if distinct.len() == req.services.len() {
            return Ok(req.services.iter().map(|s| (s.clone(), old[s])).collect());
        }
    }
    let n = req.services.len().max(1);
    let span = usize::from(hi - lo) + 1;
    let blocks = span / n;
    let exhausted = AllocError::PortsExhausted { needed: n, lo, hi };
    if blocks == 0 {
        return Err(exhausted);
    }
    let start = usize::try_from(
        stable_hash_parts(&[req.repo.as_bytes(), req.slug.as_bytes()]) % blocks as u64,
    )
    .expect("below the block count");
    for i in 0..blocks {
        let b = (start + i) % blocks;
        let first = usize::from(lo) + b * n;
        let ports: Vec<u16> = (first..first + n)
            .map(|p| u16::try_from(p).expect("inside the u16 range"))
            .collect();
        if ports.iter().all(|p| available(*p)) {
            return Ok(req.services.iter().cloned().zip(ports).collect());
        }
    }
    Err(exhausted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn services(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i}")).collect()
    }

    #[test]
    fn same_input_same_block_and_probing_skips_taken() {
        let s = services(2);
        let req = PortRequest {
            repo: "/r",
            slug: "a",
            services: &s,
            range: (20000, 20099),
            remembered: None,
        };
        let a = allocate_ports(&req, &HashSet::new(), |_| true).expect("ports");
        assert_eq!(
            a,
            allocate_ports(&req, &HashSet::new(), |_| true).expect("ports")
        );
        let taken: HashSet<u16> = a.values().copied().collect();
        let b = allocate_ports(&req, &taken, |_| true).expect("ports");
        assert!(b.values().all(|p| !taken.contains(p)));
        // A listening port is skipped the same way.
        let busy = a["s1"];
        let c = allocate_ports(&req, &HashSet::new(), |p| p != busy).expect("ports");
        assert!(!c.values().any(|p| *p == busy));
    }

    #[test]
    fn remembered_ports_come_back_when_free() {
        let s = services(2);
        let old = BTreeMap::from([("s0".to_owned(), 20050), ("s1".to_owned(), 20077)]);
        let req = PortRequest {
            repo: "/r",
            slug: "a",
            services: &s,
            range: (20000, 20099),
            remembered: Some(&old),
        };
        assert_eq!(
            allocate_ports(&req, &HashSet::new(), |_| true).expect("ports"),
            old
        );
        let taken = HashSet::from([20077]);
        assert_ne!(allocate_ports(&req, &taken, |_| true).expect("ports"), old);
    }

    #[test]
    fn exhaustion_is_an_error() {
        let s = services(3);
        let req = PortRequest {
            repo: "/r",
            slug: "a",
            services: &s,
            range: (20000, 20005),
            remembered: None,
        };
        let taken = HashSet::from([20001, 20004]);
        let err = allocate_ports(&req, &taken, |_| true).expect_err("full");
        assert!(
            err.to_string()
                .contains("no 3 free ports left in the range 20000-20005"),
            "{err}"
        );
        let req = PortRequest {
            range: (20000, 20001),
            ..req
        };
        assert!(allocate_ports(&req, &HashSet::new(), |_| true).is_err());
    }

    #[test]
    fn real_listeners_are_detected() {
        let l4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind v4");
        assert!(!port_is_free(l4.local_addr().expect("addr").port()));
        if let Ok(l6) = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) {
            assert!(!port_is_free(l6.local_addr().expect("addr").port()));
        }
    }

    proptest! {
        #[test]
        fn sequential_allocations_never_overlap(n in 1usize..4, count in 1usize..60, seed in 0u32..1000) {
            let s = services(n);
            let mut taken = HashSet::new();
            for i in 0..count {
                let slug = format!("b{seed}-{i}");
                let req = PortRequest { repo: "/r", slug: &slug, services: &s, range: (20000, 20199), remembered: None };
                match allocate_ports(&req, &taken, |_| true) {
                    Ok(p) => {
                        prop_assert_eq!(p.len(), n);
                        for port in p.values() {
                            prop_assert!((20000..=20199).contains(port));
                            prop_assert!(taken.insert(*port));
                        }
                    }
                    Err(_) => prop_assert_eq!(taken.len(), (200 / n) * n),
                }
            }
        }
    }
}
