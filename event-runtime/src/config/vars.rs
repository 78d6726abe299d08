//! [`Vars`]: an environment, read with the rules every variable shares.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::ConfigError;
use crate::wire::names::{check_component, check_topic, InvalidName};

/// An environment: a lookup, read with the rules every variable shares.
pub(super) struct Vars<'a>(pub(super) &'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    /// The variable's value; `None` when unset or empty.
    pub(super) fn get(&self, var: &str) -> Option<String> {
        (self.0)(var).filter(|v| !v.is_empty())
    }

    /// The variable parsed by `parse`, `None` when unset or empty.
    pub(super) fn parse<T>(
        &self,
        var: &'static str,
        expected: impl FnOnce() -> String,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(value) = self.get(var) else {
            return Ok(None);
        };
        match parse(&value) {
            Some(v) => Ok(Some(v)),
            None => Err(ConfigError::Invalid {
                var,
                value,
                expected: expected(),
            }),
        }
    }

    pub(super) fn port(
        &self,
        var: &'static str,
        default: u16,
        range: RangeInclusive<u16>,
    ) -> Result<u16, ConfigError> {
        let expected = || format!("a port number from {} to {}", range.start(), range.end());
        let port = self.parse(var, expected, |v| {
            v.parse().ok().filter(|p| range.contains(p))
        })?;
        Ok(port.unwrap_or(default))
    }

    pub(super) fn secs(
        &self,
        var: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        let expected = || format!("whole seconds from {} to {}", range.start(), range.end());
        let secs = self.parse(var, expected, |v| {
            v.parse().ok().filter(|s| range.contains(s))
        })?;
        Ok(Duration::from_secs(secs.unwrap_or(default)))
    }

    /// A size in bytes.
    pub(super) fn bytes(
        &self,
        var: &'static str,
        default: usize,
        range: RangeInclusive<usize>,
    ) -> Result<usize, ConfigError> {
        let expected = || format!("a size in bytes from {} to {}", range.start(), range.end());
        let bytes = self.parse(var, expected, |v| {
            v.parse().ok().filter(|b| range.contains(b))
        })?;
        Ok(bytes.unwrap_or(default))
    }

    /// A secret: unset is `None`, but set and empty (a secret reference that resolved to
    /// nothing, say) or shorter than `min` bytes is an error, never "no secret". The value
    /// stays out of the error.
    pub(super) fn secret(
        &self,
        var: &'static str,
        min: usize,
    ) -> Result<Option<String>, ConfigError> {
        match (self.0)(var) {
            None => Ok(None),
            Some(value) if value.len() >= min.max(1) => Ok(Some(value)),
            Some(value) => Err(ConfigError::Invalid {
                var,
                value: format!("<{} bytes>", value.len()),
                expected: format!("a secret of at least {} bytes", min.max(1)),
            }),
        }
    }

    /// A Dapr component name ([`check_component`]).
    pub(super) fn component(
        &self,
        var: &'static str,
        what: &'static str,
        default: &str,
    ) -> Result<String, ConfigError> {
        self.name(var, default, |v| check_component(what, v))
    }

    /// A Kafka topic name ([`check_topic`]).
    pub(super) fn topic(&self, var: &'static str, default: &str) -> Result<String, ConfigError> {
        self.name(var, default, check_topic)
    }

    pub(super) fn name(
        &self,
        var: &'static str,
        default: &str,
        check: impl FnOnce(&str) -> Result<(), InvalidName>,
    ) -> Result<String, ConfigError> {
        let Some(value) = self.get(var) else {
            return Ok(default.to_owned());
        };
        match check(&value) {
            Ok(()) => Ok(value),
            Err(e) => Err(ConfigError::Invalid {
                var,
                value,
                expected: format!("a {} name: {}", e.what, e.reason),
            }),
        }
    }

    /// One of `choices` (`(value, meaning)`, matched ignoring ASCII case), `None` when unset
    /// or empty; any other value is an error that lists them.
    pub(super) fn choice<T: Copy>(
        &self,
        var: &'static str,
        choices: &[(&str, T)],
    ) -> Result<Option<T>, ConfigError> {
        let expected = || {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("`{n}`")).collect();
            format!("one of {}", names.join(", "))
        };
        self.parse(var, expected, |v| {
            choices
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(v))
                .map(|(_, t)| *t)
        })
    }

    /// A Kubernetes name (an RFC 1123 label: at most 63 lowercase letters, digits and `-`,
    /// starting and ending with a letter or digit), `None` when unset or empty.
    pub(super) fn kubernetes_name(&self, var: &'static str) -> Result<Option<String>, ConfigError> {
        let expected = || {
            "a Kubernetes name: at most 63 lowercase letters, digits and `-`, starting and ending \
             with a letter or digit"
                .to_owned()
        };
        self.parse(var, expected, |v| is_rfc1123_label(v).then(|| v.to_owned()))
    }

    /// A secret sent in an HTTP header: unset or empty is `None`; it must be visible ASCII
    /// (no spaces, no control characters, no line breaks). The value stays out of the error.
    pub(super) fn header_secret(&self, var: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(var) {
            None => Ok(None),
            Some(v) if v.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(v)),
            Some(v) => Err(ConfigError::Invalid {
                var,
                value: format!("<{} bytes>", v.len()),
                expected: "a token of visible ASCII characters (no spaces or line breaks)"
                    .to_owned(),
            }),
        }
    }
}

fn is_rfc1123_label(v: &str) -> bool {
    let b = v.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let end = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (1..=63).contains(&b.len()) && b.iter().all(inner) && end(b.first()) && end(b.last())
}
