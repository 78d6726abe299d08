//! Batch handlers: a first argument `Vec<T>` or [`Batch<T>`] on a bulk subscription takes a
//! whole bulk delivery in one call, and its result gives each entry its own status.

use std::future::Future;

use crate::event::outcome::{IntoOutcome, Outcome};
use crate::event::Event;
use crate::handler::delivery::Delivery;

/// The events of one bulk delivery, in the order Dapr sent them, with their CloudEvent ids.
///
/// ```
/// use event_runtime::{event_handler, Batch, Event, Outcome};
///
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
/// #[event(type = "metric.sample", version = "1.0")]
/// pub struct Sample { pub user_id: String, pub value: i64 }
///
/// // One call per bulk delivery; one outcome per event, in order.
/// #[event_handler(topic = "samples", bulk(max_messages = 100, max_await_ms = 50))]
/// async fn ingest(samples: Batch<Sample>) -> Vec<Outcome> {
///     samples.iter().map(|s| if s.value < 0 { Outcome::dead_letter("negative") } else { Outcome::Success }).collect()
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<E> {
    events: Vec<E>,
    ids: Vec<String>,
}

impl<E> Batch<E> {
    /// The events.
    pub fn iter(&self) -> std::slice::Iter<'_, E> {
        self.events.iter()
    }

    /// How many events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there are none (a handler is never called with none).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The CloudEvent ids, one per event.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// The events, without their ids.
    pub fn into_vec(self) -> Vec<E> {
        self.events
    }
}

impl<E> std::ops::Deref for Batch<E> {
    type Target = [E];
    fn deref(&self) -> &[E] {
        &self.events
    }
}

impl<E> IntoIterator for Batch<E> {
    type Item = E;
    type IntoIter = std::vec::IntoIter<E>;
    fn into_iter(self) -> Self::IntoIter {
        self.events.into_iter()
    }
}

/// The first argument of a batch handler: `Vec<T>` or [`Batch<T>`] of an [`Event`] `T`.
pub trait BatchArg: Sized + Send + 'static {
    /// The event type inside.
    type Event: Event;
    /// Builds the argument from the decoded events and their ids.
    fn from_events(events: Vec<Self::Event>, ids: Vec<String>) -> Self;
}

impl<E: Event> BatchArg for Vec<E> {
    type Event = E;
    fn from_events(events: Vec<E>, _: Vec<String>) -> Self {
        events
    }
}

impl<E: Event> BatchArg for Batch<E> {
    type Event = E;
    fn from_events(events: Vec<E>, ids: Vec<String>) -> Self {
        Batch { events, ids }
    }
}

/// What a batch handler may return: one result for the whole batch (any handler return type,
/// such as `()` or `anyhow::Result<()>`), or one per event, in order (`Vec<Outcome>`,
/// `Vec<Result<(), E>>`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a supported return type for a batch #[event_handler]",
    label = "unsupported return type",
    note = "return one result for the batch (`()`, `Result<(), E>`, `Outcome`) or one per event, in order (`Vec<Outcome>`, `Vec<Result<(), E>>`)"
)]
pub trait IntoBatchOutcome {
    /// One outcome per event of a batch of `n`.
    fn into_outcomes(self, n: usize) -> Vec<Outcome>;
}

impl<T: IntoOutcome> IntoBatchOutcome for T {
    fn into_outcomes(self, n: usize) -> Vec<Outcome> {
        each(self.into_outcome(), n)
    }
}

impl<T: IntoOutcome> IntoBatchOutcome for Vec<T> {
    fn into_outcomes(self, n: usize) -> Vec<Outcome> {
        if self.len() != n {
            let problem = format!(
                "the batch handler returned {} results for {n} events",
                self.len()
            );
            return each(Outcome::retry(problem), n);
        }
        self.into_iter().map(IntoOutcome::into_outcome).collect()
    }
}

/// `outcome` for each of `n` events.
pub fn each(outcome: Outcome, n: usize) -> Vec<Outcome> {
    let copy = |o: &Outcome| match o {
        Outcome::Success => Outcome::Success,
        Outcome::Retry(e) => Outcome::Retry(e.to_string().into()),
        Outcome::DeadLetter(e) => Outcome::DeadLetter(e.to_string().into()),
        Outcome::Drop(reason) => Outcome::Drop(reason.clone()),
    };
    let mut all: Vec<Outcome> = (1..n).map(|_| copy(&outcome)).collect();
    if n > 0 {
        all.push(outcome);
    }
    all
}

/// Runs a batch handler over `deliveries`: each event decoded (one that does not decode is
/// dead-lettered alone, as a single delivery's would be), the others passed in one call, and
/// the results spread back over the deliveries, in order.
pub async fn run_batch<A, R, Fut>(
    deliveries: Vec<Delivery>,
    f: impl FnOnce(A) -> Fut,
) -> Vec<Outcome>
where
    A: BatchArg,
    Fut: Future<Output = R>,
    R: IntoBatchOutcome,
{
    let mut outcomes: Vec<Option<Outcome>> = deliveries.iter().map(|_| None).collect();
    let (mut events, mut ids, mut index) = (Vec::new(), Vec::new(), Vec::new());
    for (i, delivery) in deliveries.iter().enumerate() {
        match delivery.event_arg::<A::Event>() {
            Ok(event) => {
                events.push(event);
                ids.push(delivery.event.id.clone());
                index.push(i);
            }
            Err(outcome) => outcomes[i] = Some(outcome),
        }
    }
    drop(deliveries);
    if !events.is_empty() {
        let n = events.len();
        let ran = f(A::from_events(events, ids)).await.into_outcomes(n);
        for (i, outcome) in index.into_iter().zip(ran) {
            outcomes[i] = Some(outcome);
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Success))
        .collect()
}

/// The one outcome of a batch of one: how a batch handler runs a single delivery (its own
/// route, a retry, a delivery that is not bulk).
pub async fn one_of_batch(batch: impl Future<Output = Vec<Outcome>>) -> Outcome {
    batch
        .await
        .pop()
        .unwrap_or_else(|| Outcome::retry("the batch handler returned no result"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_result_is_every_events_and_a_list_is_each_ones() {
        let all = ().into_outcomes(3);
        assert!(all.iter().all(|o| matches!(o, Outcome::Success)) && all.len() == 3);
        let failed: Result<(), &str> = Err("down");
        let all = failed.into_outcomes(2);
        assert!(all
            .iter()
            .all(|o| matches!(o, Outcome::Retry(e) if e.to_string() == "down")));
        let each = vec![Outcome::Success, Outcome::Drop("x".into())].into_outcomes(2);
        assert!(matches!(each[..], [Outcome::Success, Outcome::Drop(_)]));
        let short = vec![Outcome::Success].into_outcomes(2);
        assert!(short.iter().all(|o| matches!(o, Outcome::Retry(_))));
    }
}
