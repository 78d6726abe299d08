//! Dead letters, a file per concern: [`send`] dead-letters what failed for good (and records no
//! handler can take), [`letter`] is what a dead letter holds and how it is signed, [`replay`]
//! publishes dead letters again.

pub(crate) mod letter;
pub(crate) mod replay;
pub(crate) mod send;

pub(crate) use letter::DeadLetter;
pub(crate) use send::{dead_letter_failed, dead_letter_undecodable, give_up, publish_dead_letter};
