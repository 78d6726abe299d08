//! What a handler's run amounts to, and how its return value becomes one.

use std::fmt;

/// A boxed error, as handlers return it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result of running a handler once, in the terms the runtime acts on.
///
/// A handler may return it directly when it wants to say more than `Ok`/`Err`:
///
/// ```
/// use event_runtime::Outcome;
///
/// fn decide(stock: u32) -> Outcome {
///     match stock {
///         0 => Outcome::dead_letter("out of stock: nothing to reserve"),
///         1..=9 => Outcome::retry("stock is being replenished"),
///         _ => Outcome::Success,
///     }
/// }
/// assert!(decide(20).is_success());
/// ```
#[derive(Debug)]
pub enum Outcome {
    /// The event was handled.
    Success,
    /// A transient failure: run again according to the handler's retry schedule.
    Retry(BoxError),
    /// A permanent failure: skip the retries and send the event to the dead-letter topic.
    DeadLetter(BoxError),
    /// Acknowledge and discard the event on purpose, without dead-lettering it.
    Drop(String),
}

/// How one delivery to a handler ended: the kind of its [`Outcome`], or `Skipped` when an
/// idempotent handler had already handled the event. The one vocabulary of the metrics'
/// `outcome` label, the test journal ([`TestApp::runs`](crate::testing::TestApp::runs)) and
/// the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OutcomeKind {
    /// The handler succeeded.
    Success,
    /// The handler failed and will run again (a retry was scheduled or the broker redelivers).
    Retry,
    /// The event went to the dead-letter topic.
    DeadLetter,
    /// The handler dropped the event on purpose.
    Drop,
    /// An idempotent handler had already handled the event.
    Skipped,
}

impl OutcomeKind {
    /// Every kind, in label order.
    pub const ALL: [OutcomeKind; 5] = [
        OutcomeKind::Success,
        OutcomeKind::Retry,
        OutcomeKind::DeadLetter,
        OutcomeKind::Drop,
        OutcomeKind::Skipped,
    ];

    /// The label: `success`, `retry`, `dead_letter`, `drop` or `skipped`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Success => "success",
            OutcomeKind::Retry => "retry",
            OutcomeKind::DeadLetter => "dead_letter",
            OutcomeKind::Drop => "drop",
            OutcomeKind::Skipped => "skipped",
        }
    }

    /// The kind a label names.
    ///
    /// ```
    /// use event_runtime::OutcomeKind;
    /// assert_eq!(OutcomeKind::from_label("dead_letter"), Some(OutcomeKind::DeadLetter));
    /// assert_eq!(OutcomeKind::from_label("nope"), None);
    /// ```
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == label)
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with a label: `run.outcome == "success"`.
impl PartialEq<&str> for OutcomeKind {
    fn eq(&self, label: &&str) -> bool {
        self.as_str() == *label
    }
}

impl PartialEq<str> for OutcomeKind {
    fn eq(&self, label: &str) -> bool {
        self.as_str() == label
    }
}

impl Outcome {
    /// A transient failure with a message.
    pub fn retry(reason: impl fmt::Display) -> Self {
        Outcome::Retry(reason.to_string().into())
    }

    /// A permanent failure with a message.
    pub fn dead_letter(reason: impl fmt::Display) -> Self {
        Outcome::DeadLetter(reason.to_string().into())
    }

    /// A deliberate drop with a reason (logged).
    pub fn drop(reason: impl fmt::Display) -> Self {
        Outcome::Drop(reason.to_string())
    }

    /// Whether this is [`Outcome::Success`].
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// What kind of outcome this is, for logs, metrics and the test journal.
    ///
    /// ```
    /// use event_runtime::{Outcome, OutcomeKind};
    /// assert_eq!(Outcome::drop("stale").kind(), OutcomeKind::Drop);
    /// assert_eq!(Outcome::Success.kind(), "success");
    /// ```
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Success => OutcomeKind::Success,
            Outcome::Retry(_) => OutcomeKind::Retry,
            Outcome::DeadLetter(_) => OutcomeKind::DeadLetter,
            Outcome::Drop(_) => OutcomeKind::Drop,
        }
    }

    /// Classifies an error a handler returned: [`Permanent`] anywhere in its chain means
    /// dead-letter now, anything else is retried.
    pub fn from_error(err: BoxError) -> Self {
        if is_permanent(&*err) {
            Outcome::DeadLetter(err)
        } else {
            Outcome::Retry(err)
        }
    }
}

fn is_permanent(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<Permanent>() || e.is::<PermanentMark>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Marks an error as permanent: the event goes to the dead-letter topic without retries.
///
/// It is recognised anywhere in the error's `source()` chain, also inside `anyhow::Error` and
/// under `.context(...)`.
///
/// ```
/// use event_runtime::{IntoOutcome, Outcome, Permanent};
///
/// fn parse_amount(s: &str) -> Result<u32, Permanent> {
///     s.parse().map_err(Permanent::new)
/// }
/// let err = parse_amount("ten").unwrap_err();
/// assert!(matches!(Outcome::from_error(err.into()), Outcome::DeadLetter(_)));
///
/// let wrapped: anyhow::Result<()> = Err(anyhow::Error::new(Permanent::new("unknown task")).context("completing"));
/// assert!(matches!(wrapped.into_outcome(), Outcome::DeadLetter(_)));
/// ```
#[derive(Debug)]
pub struct Permanent(PermanentMark);

/// The link of the chain that carries the mark. Wrappers such as `anyhow::Error` hide the outer
/// error's type but keep its `source()`, so the mark sits there.
#[derive(Debug)]
struct PermanentMark(BoxError);

impl Permanent {
    /// Wraps an error as permanent.
    pub fn new(err: impl Into<BoxError>) -> Self {
        Permanent(PermanentMark(err.into()))
    }
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "permanent: {}", self.0 .0)
    }
}

impl std::error::Error for Permanent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl fmt::Display for PermanentMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for PermanentMark {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Turns what a handler returns into an [`Outcome`].
///
/// Implemented for `()`, `Result<(), E>` for any error convertible into a boxed error
/// (`anyhow::Error` included), [`Outcome`] and `Result<Outcome, E>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a supported return type for an #[event_handler]",
    label = "unsupported return type",
    note = "return `()`, `Result<(), E>` where `E: Into<Box<dyn Error + Send + Sync>>` (anyhow works), or `event_runtime::Outcome`"
)]
pub trait IntoOutcome {
    /// Converts into an outcome.
    fn into_outcome(self) -> Outcome;
}

impl IntoOutcome for () {
    fn into_outcome(self) -> Outcome {
        Outcome::Success
    }
}

impl IntoOutcome for Outcome {
    fn into_outcome(self) -> Outcome {
        self
    }
}

impl<E: Into<BoxError>> IntoOutcome for Result<(), E> {
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(()) => Outcome::Success,
            Err(e) => Outcome::from_error(e.into()),
        }
    }
}

impl<E: Into<BoxError>> IntoOutcome for Result<Outcome, E> {
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(o) => o,
            Err(e) => Outcome::from_error(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_is_found_through_anyhow_and_context() {
        let plain: Result<(), anyhow::Error> = Err(anyhow::Error::new(Permanent::new("bad input")));
        assert_eq!(plain.into_outcome().kind(), "dead_letter");
        let with_context: anyhow::Result<()> =
            Err(anyhow::Error::new(Permanent::new("bad")).context("while saving"));
        assert_eq!(with_context.into_outcome().kind(), "dead_letter");
        let transient: anyhow::Result<()> = Err(anyhow::anyhow!("timeout"));
        assert_eq!(transient.into_outcome().kind(), "retry");
        let io: Result<(), std::io::Error> = Err(std::io::Error::other("disk"));
        assert_eq!(io.into_outcome().kind(), "retry");
    }
}
