//! Validated names of the resources a worktree owns, and the template filters that make them.

use std::fmt;

use crate::hash::{hex_prefix, stable_hash};

/// Postgres truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
pub const PG_MAX_IDENT: usize = 63;

/// The `db_ident` filter: a Postgres-safe identifier of at most 63 bytes.
///
/// Lowercase ASCII letters, digits and `_` are kept (`-` and everything else becomes `_`), so
/// the result needs no quoting to be read back, though pwt always quotes it anyway. A result
/// that would be longer than 63 bytes is cut and given a hash of the whole input, so two long
/// inputs never collapse into one name.
pub fn db_ident(input: &str) -> String {
    let mapped: String = input
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect();
    if mapped.len() <= PG_MAX_IDENT {
        return mapped;
    }
    let hex = hex_prefix(stable_hash(input.as_bytes()), 8);
    format!("{}_{hex}", &mapped[..PG_MAX_IDENT - hex.len() - 1])
}

/// The `hash_port` filter, for people who copy Worktrunk templates: a stable port in
/// 10000..=19999 from the hash of the text. pwt's own allocation does not use it: hashing
/// alone collides (4 % at 10 worktrees × 3 ports), the registry does not.
pub fn hash_port(input: &str) -> u16 {
    let offset = u16::try_from(stable_hash(input.as_bytes()) % 10_000).expect("below 10000");
    10_000 + offset
}

/// A name that is not valid for the system it is meant for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct NameError {
    /// What kind of name (`database name`, `vhost`, …).
    pub kind: &'static str,
    /// The rejected value.
    pub value: String,
    /// Why.
    pub reason: &'static str,
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `value`.
            pub fn parse(value: &str) -> Result<Self, NameError> {
                let check: fn(&str) -> Result<(), &'static str> = $check;
                check(value).map_err(|reason| NameError {
                    kind: $kind,
                    value: value.to_owned(),
                    reason,
                })?;
                Ok(Self(value.to_owned()))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn no_controls(s: &str) -> Result<(), &'static str> {
    if s.chars().any(char::is_control) {
        Err("it contains a control character")
    } else {
        Ok(())
    }
}

text_newtype!(
    /// A PostgreSQL database name: 1 to 63 bytes, no control characters. Always quoted when
    /// it reaches SQL.
    DbName,
    "database name",
    |s| {
        if s.is_empty() {
            Err("it is empty")
        } else if s.len() > PG_MAX_IDENT {
            Err("it is longer than 63 bytes, which Postgres would silently cut; use the db_ident filter or a shorter template")
        } else {
            no_controls(s)
        }
    }
);

text_newtype!(
    /// A RabbitMQ virtual host name: non-empty, no control characters, at most 255 bytes.
    Vhost,
    "vhost",
    |s| {
        if s.is_empty() {
            Err("it is empty")
        } else if s.len() > 255 {
            Err("it is longer than 255 bytes")
        } else {
            no_controls(s)
        }
    }
);

text_newtype!(
    /// A Redis key prefix: no control characters and none of the glob characters `* ? [ ] \`,
    /// so that cleanup by `SCAN MATCH <prefix>*` can never match another worktree's keys.
    RedisPrefix,
    "Redis key prefix",
    |s| {
        if s.contains(['*', '?', '[', ']', '\\']) {
            Err("it contains a glob character (* ? [ ] \\)")
        } else {
            no_controls(s)
        }
    }
);

/// A TCP port other than 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Port(u16);

impl Port {
    /// Refuses port 0, which means "any" to the kernel.
    pub fn new(port: u16) -> Result<Self, NameError> {
        if port == 0 {
            Err(NameError {
                kind: "port",
                value: "0".into(),
                reason: "port 0 means \"any port\"",
            })
        } else {
            Ok(Self(port))
        }
    }

    /// The port number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> serde::Deserialize<'de> for Port {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Port::new(u16::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn db_ident_cases() {
        assert_eq!(db_ident("feature-notifications"), "feature_notifications");
        assert_eq!(db_ident("Demo.X"), "demo_x");
        let long = db_ident(&"a".repeat(100));
        assert_eq!(long.len(), 63);
        assert_ne!(long, db_ident(&format!("{}b", "a".repeat(99))));
    }

    #[test]
    fn hash_port_golden() {
        assert_eq!(hash_port("fe-feature-notifications"), 17994);
        assert_eq!(hash_port("be-feature-notifications"), 18214);
    }

    #[test]
    fn newtypes_validate() {
        assert!(DbName::parse(&"a".repeat(63)).is_ok());
        assert!(DbName::parse(&"a".repeat(64)).is_err());
        assert!(DbName::parse("").is_err());
        assert!(Vhost::parse("/feat-x").is_ok());
        assert!(Vhost::parse("a\nb").is_err());
        assert!(RedisPrefix::parse("feat-x:").is_ok());
        assert!(RedisPrefix::parse("").is_ok());
        assert!(RedisPrefix::parse("a*").is_err());
        assert!(Port::new(0).is_err());
        assert_eq!(Port::new(80).expect("nonzero").get(), 80);
    }

    proptest! {
        #[test]
        fn db_ident_is_short_and_safe(s in "\\PC{0,200}") {
            let id = db_ident(&s);
            prop_assert!(id.len() <= PG_MAX_IDENT);
            prop_assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            prop_assert_eq!(id, db_ident(&s));
        }

        #[test]
        fn hash_port_in_range(s in "\\PC{0,50}") {
            prop_assert!((10_000..=19_999).contains(&hash_port(&s)));
        }
    }
}
