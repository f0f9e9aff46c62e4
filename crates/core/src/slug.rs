//! Slugs: the short, readable, unique name of a worktree that every resource name derives
//! from.

use std::fmt;

use crate::hash::{hex_prefix, stable_hash, stable_hash_parts};

/// The longest slug, in bytes. Short enough that `<project>_<slug>` still fits Postgres'
/// 63-byte identifiers and `<slug>.localhost` stays readable.
pub const MAX_SLUG_LEN: usize = 40;

/// The slug every repository's main worktree holds implicitly; no branch gets it.
pub const MAIN_SLUG: &str = "main";

/// A worktree's slug: `[a-z0-9]` runs joined by single `-`, 1 to 40 bytes.
///
/// Valid as a DNS label, a directory name and (with `-` → `_`) a Postgres identifier; never
/// contains `:`, `/` or `.`, so it cannot escape a path or a Redis key namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Slug(String);

/// A string that is not a valid slug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid slug {0:?}: a slug is 1 to 40 characters of a-z, 0-9 and single '-' between them")]
pub struct SlugError(pub String);

impl Slug {
    /// Checks a stored slug (from the registry or a command line).
    pub fn parse(s: &str) -> Result<Self, SlugError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_SLUG_LEN
            && !s.starts_with('-')
            && !s.ends_with('-')
            && !s.contains("--")
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(SlugError(s.to_owned()))
        }
    }

    /// Derives the slug of `branch`, given which slugs other branches of the same repository
    /// already hold.
    ///
    /// Readable first: `feature/login` → `feature-login`. Unique always: a `-` and six hex
    /// digits of the hash of the raw branch bytes are appended when the readable form is
    /// empty (then the hex digits alone are the slug), longer than 40 bytes (cut first), or
    /// taken. If even that is taken, longer hashes and then numbered hashes are tried, so
    /// the result is never a taken slug.
    pub fn derive(branch: &str, is_taken: impl Fn(&str) -> bool) -> Self {
        let readable = readable_form(branch);
        let hash = stable_hash(branch.as_bytes());
        if !readable.is_empty() && readable.len() <= MAX_SLUG_LEN && !is_taken(&readable) {
            return Self(readable);
        }
        for hex_len in [6, 8, 10, 12, 16] {
            let candidate = with_suffix(&readable, &hex_prefix(hash, hex_len));
            if !is_taken(&candidate) {
                return Self(candidate);
            }
        }
        (1u64..)
            .map(|n| {
                let h = stable_hash_parts(&[branch.as_bytes(), &n.to_le_bytes()]);
                with_suffix(&readable, &hex_prefix(h, 6))
            })
            .find(|c| !is_taken(c))
            .map(Self)
            .expect("the candidates are endless and the taken set is finite")
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Slug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Slug::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Lowercase ASCII letters and digits kept, every other run of characters one `-`, trimmed.
fn readable_form(branch: &str) -> String {
    let mut out = String::with_capacity(branch.len());
    let mut pending_dash = false;
    for c in branch.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c);
        } else {
            pending_dash = true;
        }
    }
    out
}

/// `base` cut so that `base-hex` fits in [`MAX_SLUG_LEN`], or `hex` alone for an empty base.
fn with_suffix(base: &str, hex: &str) -> String {
    let room = MAX_SLUG_LEN - hex.len() - 1;
    // `base` is ASCII, so any byte index is a char boundary.
    let cut = base[..base.len().min(room)].trim_end_matches('-');
    if cut.is_empty() {
        hex.to_owned()
    } else {
        format!("{cut}-{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn free(b: &str) -> String {
        Slug::derive(b, |_| false).0
    }

    #[test]
    fn readable_cases() {
        let table = [
            ("feature/login", "feature-login"),
            ("feature-notifications", "feature-notifications"),
            ("FEAT/X", "feat-x"),
            ("feat_x", "feat-x"),
            ("--a__b--", "a-b"),
            (
                "feat/x\";DROP_DATABASE_prod;--",
                "feat-x-drop-database-prod",
            ),
            ("feat/$(touch${IFS}pwned)", "feat-touch-ifs-pwned"),
            ("feat/`id`", "feat-id"),
            ("feat/x'y", "feat-x-y"),
            ("postgres", "postgres"),
            ("template1", "template1"),
        ];
        for (branch, slug) in table {
            assert_eq!(free(branch), slug, "{branch}");
        }
    }

    #[test]
    fn golden_hash_suffixes() {
        // Pinned: changing these would rename users' worktrees and resources.
        assert_eq!(free("🚀"), "ff06d3");
        assert_eq!(
            free(&"a".repeat(300)),
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-ee7717"
        );
        let taken: HashSet<&str> = ["feat-x"].into();
        assert_eq!(
            Slug::derive("FEAT/X", |s| taken.contains(s)).0,
            "feat-x-720f1d"
        );
    }

    #[test]
    fn collisions_get_distinct_slugs() {
        let mut taken = HashSet::new();
        for b in ["feat/x", "FEAT/X", "feat-x", "feat_x", "Feat.X"] {
            let s = Slug::derive(b, |s| taken.contains(s));
            assert!(taken.insert(s.0.clone()), "{b} got a taken slug {s}");
        }
        assert_eq!(taken.len(), 5);
        assert!(taken.contains("feat-x"));
    }

    #[test]
    fn long_names_sharing_a_prefix_are_distinct() {
        let prefix = "p".repeat(70);
        let a = free(&format!("{prefix}/{}", "a".repeat(229)));
        let b = free(&format!("{prefix}/{}", "b".repeat(229)));
        assert_ne!(a, b);
        assert!(a.len() <= MAX_SLUG_LEN && b.len() <= MAX_SLUG_LEN);
    }

    #[test]
    fn nfc_and_nfd_differ() {
        let nfc = "f\u{e9}at/\u{fc}n\u{ef}";
        let nfd = "fe\u{301}at/u\u{308}ni\u{308}";
        assert_ne!(free(nfc), free(nfd));
    }

    #[test]
    fn even_exhausted_hashes_terminate() {
        // Every hash-suffixed candidate of the first kind taken: the numbered ones follow.
        let branch = "FEAT/X";
        let h = stable_hash(branch.as_bytes());
        let taken: HashSet<String> = std::iter::once("feat-x".to_owned())
            .chain([6, 8, 10, 12, 16].map(|n| with_suffix("feat-x", &hex_prefix(h, n))))
            .collect();
        let s = Slug::derive(branch, |s| taken.contains(s));
        assert!(!taken.contains(s.as_str()));
        assert!(Slug::parse(s.as_str()).is_ok());
    }

    #[test]
    fn parse_rejects_bad() {
        for bad in [
            "",
            "-a",
            "a-",
            "a--b",
            "A",
            "a.b",
            "a/b",
            "a:b",
            &"a".repeat(41),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn derived_slugs_are_valid_and_deterministic(branch in "\\PC{0,120}") {
            let a = Slug::derive(&branch, |_| false);
            prop_assert!(Slug::parse(a.as_str()).is_ok(), "{:?} -> {:?}", branch, a);
            prop_assert_eq!(&a, &Slug::derive(&branch, |_| false));
            prop_assert!(!a.as_str().contains(['.', '/', ':']));
        }

        #[test]
        fn distinct_branches_get_distinct_slugs(
            branches in proptest::collection::hash_set("[a-zA-Z0-9/_.-]{1,60}", 1..40)
        ) {
            let mut taken = HashSet::new();
            for b in &branches {
                let s = Slug::derive(b, |s| taken.contains(s));
                prop_assert!(taken.insert(s.0));
            }
        }
    }
}
