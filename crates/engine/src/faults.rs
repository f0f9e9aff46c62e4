//! Named moments of the lifecycle where a crash test pauses pwt to kill it there
//! ([`FaultPoint`], one list for the code, the docs and the kill harness), and the pause
//! itself ([`Faults`]).

use std::sync::Arc;
use std::time::Duration;

use pwt_alloc::Fault;

use crate::error::{Error, ErrorKind};

/// A moment of a set-up or teardown a crash test can stop pwt at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultPoint {
    /// Holding the registry lock, inside a registry write.
    HoldLock,
    /// Inside a registry write, the new file written, not yet renamed into place.
    BeforeRename,
    /// The lease recorded `creating`, nothing else done.
    AfterLease,
    /// The resources found absent journaled as being created.
    AfterJournal,
    /// A database created, not yet marked as pwt's.
    DatabaseUnmarked,
    /// The worktree checked out and the services made.
    AfterCheckout,
    /// Between two of the main worktree's files being brought.
    BetweenCopies,
    /// The env files written.
    AfterEnvFiles,
    /// Between two post-create hooks.
    BetweenHooks,
    /// Everything done but marking the lease `ready`.
    BeforeReady,
    /// A teardown's lease marked `removing`.
    AfterMarkRemoving,
    /// A teardown's data dropped.
    AfterData,
    /// A teardown's worktree removed.
    AfterWorktree,
}

impl FaultPoint {
    /// Every point, in lifecycle order.
    pub const ALL: [FaultPoint; 13] = [
        Self::HoldLock,
        Self::BeforeRename,
        Self::AfterLease,
        Self::AfterJournal,
        Self::DatabaseUnmarked,
        Self::AfterCheckout,
        Self::BetweenCopies,
        Self::AfterEnvFiles,
        Self::BetweenHooks,
        Self::BeforeReady,
        Self::AfterMarkRemoving,
        Self::AfterData,
        Self::AfterWorktree,
    ];

    /// Its name: `after-checkout`, as `PWT_FAULT` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HoldLock => "hold-lock",
            Self::BeforeRename => "before-rename",
            Self::AfterLease => "after-lease",
            Self::AfterJournal => "after-journal",
            Self::DatabaseUnmarked => "database-unmarked",
            Self::AfterCheckout => "after-checkout",
            Self::BetweenCopies => "between-copies",
            Self::AfterEnvFiles => "after-env-files",
            Self::BetweenHooks => "between-hooks",
            Self::BeforeReady => "before-ready",
            Self::AfterMarkRemoving => "after-mark-removing",
            Self::AfterData => "after-data",
            Self::AfterWorktree => "after-worktree",
        }
    }
}

impl std::fmt::Display for FaultPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FaultPoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|p| p.as_str()).collect();
                Error::new(ErrorKind::Invalid, format!("no fault point {s:?}"))
                    .hint(format!("the points: {}", names.join(", ")))
            })
    }
}

/// A pause at one named moment of the lifecycle (crash tests: the test kills pwt there).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    at: Option<(FaultPoint, Duration)>,
}

impl Faults {
    /// Pause for `pause` at `point`.
    pub fn pause_at(point: FaultPoint, pause: Duration) -> Self {
        Self {
            at: Some((point, pause)),
        }
    }

    /// From `<point>:<milliseconds>` (`PWT_FAULT` of the `pwt` command); a missing or
    /// unreadable pause is none.
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let (point, ms) = spec.split_once(':').unwrap_or((spec, "0"));
        let pause = Duration::from_millis(ms.parse().unwrap_or(0));
        Ok(Self::pause_at(point.parse()?, pause))
    }

    /// Sleeps when `point` is the configured moment.
    pub(crate) fn pause(&self, point: FaultPoint) {
        if let Some((p, d)) = &self.at
            && *p == point
        {
            std::thread::sleep(*d);
        }
    }

    /// The registry's share of it (its write is below the engine).
    pub(crate) fn registry(&self) -> Fault {
        match &self.at {
            Some((FaultPoint::HoldLock, d)) => Fault::HoldLock(*d),
            Some((FaultPoint::BeforeRename, d)) => Fault::BeforeRename(*d),
            _ => Fault::None,
        }
    }

    /// The pause hook handed to the service clients, which name their moments in text.
    pub(crate) fn provision_pause(&self) -> Option<pwt_provision::Pause> {
        let faults = self.clone();
        self.at.is_some().then(|| {
            Arc::new(move |p: &'static str| {
                if let Ok(point) = p.parse() {
                    faults.pause(point);
                }
            }) as pwt_provision::Pause
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_reads_back_from_its_name() {
        for p in FaultPoint::ALL {
            assert_eq!(p.as_str().parse::<FaultPoint>().expect("parses"), p);
        }
        assert!("after-everything".parse::<FaultPoint>().is_err());
    }

    #[test]
    fn a_spec_names_a_point_and_a_pause() {
        let at = |spec: &str| Faults::parse(spec).expect("parses").at;
        let point = FaultPoint::ALL[0];
        let ms = |n| Some((point, Duration::from_millis(n)));
        assert_eq!(at(&format!("{point}:250")), ms(250));
        assert_eq!(at(point.as_str()), ms(0));
        assert_eq!(at(&format!("{point}:soon")), ms(0));
        let e = Faults::parse("nowhere:10").expect_err("no such point");
        assert_eq!(e.kind(), ErrorKind::Invalid);
    }
}
