//! The app's secret, and the HMAC-SHA256 it signs what it writes for itself with: retry
//! bookkeeping and dead letters. Also the digest that bounds a key from outside.
//!
//! The secret is `EVENTS_SIGNING_KEY` (or [`crate::App::with_signing_key`]); never anything
//! derived from public data such as the app id. Without one, a process draws a random key
//! of its own, which holds only for as long as the process lives.

use std::sync::OnceLock;

use hmac::Mac as _;

/// The shortest secret accepted, in bytes.
pub(crate) const MIN_SIGNING_KEY_BYTES: usize = 16;

/// The secret retry bookkeeping and dead letters are signed with; its `Debug` never shows it.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// A key from secret bytes.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        SigningKey(secret.as_ref().to_vec())
    }

    /// This process's own random key: the same for every app of the process, and gone with
    /// it (what it signed cannot be verified by another process).
    pub(crate) fn process() -> SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(|| {
            let mut secret = [0u8; 32];
            // No OS randomness is a broken host; no key guessable from outside will do instead.
            getrandom::fill(&mut secret).expect("the operating system's random source failed");
            SigningKey(secret.to_vec())
        })
        .clone()
    }

    /// The MAC of `parts`, each length-prefixed, so no two different lists sign alike.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> hmac::Hmac<sha2::Sha256> {
        let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The signature of `parts`, as lowercase hex.
    pub(crate) fn sign(&self, parts: &[&[u8]]) -> String {
        hex(&self.mac(parts).finalize().into_bytes())
    }

    /// Whether `signature` (hex) is this key's signature of `parts`, compared in constant time.
    pub(crate) fn verify(&self, parts: &[&[u8]], signature: &str) -> bool {
        unhex(signature).is_some_and(|given| self.mac(parts).verify_slice(&given).is_ok())
    }
}

/// `value` when it is at most `max` bytes, else `sha256:` and its digest in hex (71 bytes):
/// a key from outside (an event id, a partition key) made fit for a URL or a store, and still
/// distinct for distinct values (a short value that itself starts with `sha256:` is digested
/// too, so no value can pass for another's digest).
pub(crate) fn bounded(value: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if value.len() <= max && !value.starts_with(DIGESTED) {
        return value.into();
    }
    use sha2::Digest as _;
    format!("{DIGESTED}{}", hex(&sha2::Sha256::digest(value.as_bytes()))).into()
}

const DIGESTED: &str = "sha256:";

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_never_shows_in_debug_output() {
        let key = SigningKey::new("a secret from the secret store");
        assert_eq!(format!("{key:?}"), "SigningKey(..)");
    }

    #[test]
    fn signatures_verify_with_their_key_only() {
        let key = SigningKey::new("0123456789abcdef");
        let sig = key.sign(&[b"a", b"bc"]);
        assert!(key.verify(&[b"a", b"bc"], &sig));
        assert!(!key.verify(&[b"ab", b"c"], &sig), "length-prefixed parts");
        assert!(!SigningKey::new("another key, 16+").verify(&[b"a", b"bc"], &sig));
        assert!(!key.verify(&[b"a", b"bc"], "zz"));
        assert!(!key.verify(&[b"a", b"bc"], "é"));
    }

    #[test]
    fn the_process_key_is_random_and_stable() {
        let a = SigningKey::process();
        assert_eq!(a.0, SigningKey::process().0);
        assert_eq!(a.0.len(), 32);
        assert_ne!(a.0, [0u8; 32]);
    }

    #[test]
    fn long_values_are_digested() {
        assert_eq!(bounded("short", 10), "short");
        let long = "x".repeat(10_000);
        let digested = bounded(&long, 200);
        assert_eq!(digested.len(), 71);
        assert!(digested.starts_with("sha256:"));
        assert_ne!(digested, bounded(&"y".repeat(10_000), 200));
        assert_ne!(
            bounded(&digested, 200),
            digested,
            "a digest given as a value is not one"
        );
    }
}
