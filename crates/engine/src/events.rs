//! What the library tells its caller while it works: progress on slow steps, warnings, the
//! hooks and processes it runs or stops. The caller passes a [`Reporter`]; the library never
//! prints.

/// One thing worth telling.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A step starts (`creating worktree ../demo.feat ...`).
    Step(String),
    /// Steps still running after this many seconds (sent once a second after the first).
    Waiting {
        /// What is running.
        what: Vec<String>,
        /// Seconds since they started.
        seconds: u64,
    },
    /// Something the user should know; the operation goes on.
    Warning(String),
    /// A hook command starts.
    Hook {
        /// `post-create` or `pre-remove`.
        stage: &'static str,
        /// The command.
        command: String,
    },
}

/// Receives [`Event`]s.
pub trait Reporter {
    /// Called for each event, in order.
    fn report(&mut self, event: Event);
}

/// A reporter that drops everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Reporter for Silent {
    fn report(&mut self, _event: Event) {}
}

/// A reporter that keeps every event, for tests and for callers that show them later.
#[derive(Clone, Debug, Default)]
pub struct Collect(pub Vec<Event>);

impl Reporter for Collect {
    fn report(&mut self, event: Event) {
        self.0.push(event);
    }
}

impl<F: FnMut(Event)> Reporter for F {
    fn report(&mut self, event: Event) {
        self(event);
    }
}
