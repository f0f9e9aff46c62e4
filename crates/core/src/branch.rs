//! Branch names as git accepts them.

use std::fmt;

/// A branch name that `git check-ref-format --branch` would accept.
///
/// pwt checks the name itself, before anything is allocated or any process is started, so
/// a bad name is refused with a message that says which rule it broke. Names that would
/// read as options (`-rf`) or paths (`/abs`, `../../etc`, `.git`) are all refused here.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct BranchName(String);

/// Why a branch name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid branch name {name:?}: {reason}")]
pub struct BranchNameError {
    /// The name as given.
    pub name: String,
    /// Which of git's rules it breaks.
    pub reason: &'static str,
}

impl BranchName {
    /// Checks `name` against git's rules for branch names (git-check-ref-format(1)).
    pub fn parse(name: &str) -> Result<Self, BranchNameError> {
        let fail = |reason| {
            Err(BranchNameError {
                name: name.to_owned(),
                reason,
            })
        };
        let name = name.strip_prefix("refs/heads/").unwrap_or(name);
        if name.is_empty() {
            return fail("it is empty");
        }
        if name.starts_with('-') {
            return fail("it starts with '-' and would read as an option");
        }
        if name == "HEAD" || name == "@" {
            return fail("it is a name git reserves");
        }
        if name.starts_with('/') || name.ends_with('/') {
            return fail("it starts or ends with '/'");
        }
        if name.contains("//") {
            return fail("it contains '//'");
        }
        if name.contains("..") {
            return fail("it contains '..'");
        }
        if name.contains("@{") {
            return fail("it contains '@{'");
        }
        if name.ends_with('.') {
            return fail("it ends with '.'");
        }
        if let Some(c) = name
            .chars()
            .find(|c| c.is_ascii_control() || " ~^:?*[\\".contains(*c))
        {
            return if c.is_ascii_control() {
                fail("it contains a control character")
            } else if c == ' ' {
                fail("it contains a space")
            } else {
                fail("it contains one of ~ ^ : ? * [ \\")
            };
        }
        for component in name.split('/') {
            if component.starts_with('.') {
                return fail("a path component starts with '.'");
            }
            if component.ends_with(".lock") {
                return fail("a path component ends with '.lock'");
            }
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as git shows it (without `refs/heads/`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for BranchName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BranchName::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl PartialEq<str> for BranchName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl fmt::Display for BranchName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `s` as one shell word, for commands suggested in hints and pages: as it is when it holds
/// only safe characters, else single-quoted (control characters removed), so pasting it
/// never expands `$(…)` from a branch name.
pub fn shell_word(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@%,".contains(&b));
    if safe {
        s.to_owned()
    } else {
        let printable: String = s.chars().filter(|c| !c.is_control()).collect();
        format!("'{}'", printable.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_git_accepts() {
        for ok in [
            "main",
            "feature/login",
            "feat/x\";DROP_DATABASE_prod;--",
            "feat/$(touch${IFS}pwned)",
            "feat/`id`",
            "feat/x'y",
            "FEAT/X",
            "féat/ünï",
            "🚀",
            "postgres",
            "template1",
            "a.b",
        ] {
            assert_eq!(BranchName::parse(ok).expect(ok).as_str(), ok);
        }
    }

    #[test]
    fn refuses_what_git_refuses() {
        for bad in [
            "",
            "feat/x\";DROP DATABASE prod;--",
            "-rf",
            "../../etc",
            "/abs",
            ".git",
            "a/.hidden",
            "x.lock",
            "a b",
            "a..b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "a//b",
            "a/",
            "a.",
            "@",
            "HEAD",
            "a@{1}",
            "tab\there",
        ] {
            let err = BranchName::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("invalid branch name"), "{err}");
        }
    }

    #[test]
    fn strips_refs_heads() {
        assert_eq!(
            BranchName::parse("refs/heads/x").expect("valid").as_str(),
            "x"
        );
    }
}
