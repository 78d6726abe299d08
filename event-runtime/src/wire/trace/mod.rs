//! W3C Trace Context (`traceparent`, `tracestate`): parse what arrives, continue the trace in
//! what is published. With the `otel` feature, the delivery's span joins the incoming trace and
//! what is published names the current span ([`otel`]).

use std::fmt;

#[cfg(feature = "otel")]
pub(crate) mod otel;

/// The W3C trace context an event carries: its `traceparent` and `tracestate`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// `traceparent`.
    pub traceparent: Option<String>,
    /// `tracestate`.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// What an event carried, as a trace: a `traceparent` that names no trace (malformed, or the
    /// all-zero one Dapr sends when its tracing is off) is none, and so is an empty `tracestate`
    /// or one without a `traceparent`.
    pub(crate) fn received(traceparent: Option<&str>, tracestate: Option<&str>) -> TraceContext {
        let traceparent = traceparent.filter(|t| parse(t).is_some());
        TraceContext {
            tracestate: tracestate
                .filter(|s| traceparent.is_some() && !s.trim().is_empty())
                .map(str::to_owned),
            traceparent: traceparent.map(str::to_owned),
        }
    }

    /// The context of a message sent while handling one that carried `traceparent` and
    /// `tracestate`. With the `otel` feature, the current span when OpenTelemetry records it
    /// (the delivery's, or one of the handler's inside it), so the `traceparent` names a span an
    /// exporter sees. Otherwise the same trace with a fresh span id, or a new root when none
    /// arrived; the `tracestate` is carried on unchanged.
    pub(crate) fn continued(traceparent: Option<&str>, tracestate: Option<&str>) -> TraceContext {
        #[cfg(feature = "otel")]
        if let Some(current) = otel::current() {
            return current;
        }
        let received = traceparent.and_then(parse);
        TraceContext {
            traceparent: Some(
                received
                    .map_or_else(TraceParent::new_root, |tp| tp.child())
                    .to_string(),
            ),
            tracestate: tracestate
                .filter(|s| received.is_some() && !s.trim().is_empty())
                .map(str::to_owned),
        }
    }

    /// The context of the current span, when the `otel` feature is on and OpenTelemetry records
    /// it; else none. For what is written outside a delivery's own publish path (an outbox row).
    pub(crate) fn current() -> Option<TraceContext> {
        #[cfg(feature = "otel")]
        return otel::current();
        #[cfg(not(feature = "otel"))]
        None
    }
}

/// A parsed `traceparent` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TraceParent {
    /// The format version (`00` today; `ff` is invalid).
    pub version: u8,
    /// The trace id (16 bytes, never all zero).
    pub trace_id: [u8; 16],
    /// The id of the span that sent the message (8 bytes, never all zero).
    pub parent_id: [u8; 8],
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceParent {
    /// A child in the same trace with a fresh span id, version `00`, keeping the sampled flag.
    pub(crate) fn child(&self) -> TraceParent {
        TraceParent {
            version: 0,
            trace_id: self.trace_id,
            parent_id: random_span_id(),
            flags: self.flags & 0x01,
        }
    }

    /// The root of a new, sampled trace.
    pub(crate) fn new_root() -> TraceParent {
        TraceParent {
            version: 0,
            trace_id: random_trace_id(),
            parent_id: random_span_id(),
            flags: 0x01,
        }
    }
}

impl fmt::Display for TraceParent {
    /// The header value: `vv-<trace id>-<parent id>-ff`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}-{}-{}-{:02x}",
            self.version,
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

impl std::str::FromStr for TraceParent {
    type Err = InvalidTraceParent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s).ok_or(InvalidTraceParent)
    }
}

/// A `traceparent` that is malformed, or all-zero (no trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid W3C traceparent")]
pub(crate) struct InvalidTraceParent;

/// Parses a `traceparent` header value: `version-traceid-parentid-flags` in lowercase hex of
/// 2, 32, 16 and 2 digits. `None` when it is malformed, when the version is `ff`, or when the
/// trace id or parent id is all zeros (which Dapr sends when tracing is off). A version above
/// `00` may carry more fields after the four it defines; they are ignored, as the
/// specification asks.
pub(crate) fn parse(traceparent: &str) -> Option<TraceParent> {
    let s = traceparent.trim_matches([' ', '\t']).as_bytes();
    if s.len() < 55 {
        return None;
    }
    let version = hex_byte(&s[0..2])?;
    if version == 0xff || s[2] != b'-' || s[35] != b'-' || s[52] != b'-' {
        return None;
    }
    // Version 00 is exactly 55 characters; later versions may append `-...`.
    if (version == 0 && s.len() != 55) || (s.len() > 55 && s[55] != b'-') {
        return None;
    }
    let mut trace_id = [0u8; 16];
    for (i, b) in trace_id.iter_mut().enumerate() {
        *b = hex_byte(&s[3 + 2 * i..5 + 2 * i])?;
    }
    let mut parent_id = [0u8; 8];
    for (i, b) in parent_id.iter_mut().enumerate() {
        *b = hex_byte(&s[36 + 2 * i..38 + 2 * i])?;
    }
    let flags = hex_byte(&s[53..55])?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(TraceParent {
        version,
        trace_id,
        parent_id,
        flags,
    })
}

/// The `traceparent` of a new, sampled trace: random trace and span ids.
pub(crate) fn new_root() -> String {
    TraceParent::new_root().to_string()
}

fn random_trace_id() -> [u8; 16] {
    loop {
        let id = *uuid::Uuid::new_v4().as_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

fn random_span_id() -> [u8; 8] {
    loop {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        // Bytes 0..6 and 9..11 are fully random in a v4 UUID (6 and 8 carry version/variant).
        let id = [
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[9], bytes[10],
        ];
        if id != [0; 8] {
            return id;
        }
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn child(traceparent: Option<&str>) -> String {
        TraceContext::continued(traceparent, None)
            .traceparent
            .unwrap()
    }

    #[test]
    fn tracestate_goes_with_a_traceparent_only() {
        let c = TraceContext::continued(Some(TP), Some("congo=t61rcWkgMzE"));
        assert_eq!(c.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        assert_ne!(c.traceparent.as_deref(), Some(TP));
        assert_eq!(TraceContext::continued(None, Some("a=b")).tracestate, None);
        assert_eq!(
            TraceContext::continued(Some(TP), Some(" ")).tracestate,
            None
        );
        let r = TraceContext::received(
            Some("00-00000000000000000000000000000000-0000000000000000-00"),
            Some("a=b"),
        );
        assert_eq!(r, TraceContext::default());
        let r = TraceContext::received(Some(TP), Some("a=b"));
        assert_eq!(
            (r.traceparent.as_deref(), r.tracestate.as_deref()),
            (Some(TP), Some("a=b"))
        );
    }

    #[test]
    fn parses_and_formats_round_trip() {
        let tp = parse(TP).unwrap();
        assert_eq!(tp.version, 0);
        assert_eq!(hex(&tp.parent_id), "00f067aa0ba902b7");
        assert_eq!(tp.flags, 1);
        assert_eq!(tp.to_string(), TP);
        assert_eq!(TP.parse::<TraceParent>().unwrap(), tp);
        assert_eq!(parse(&format!("  {TP}\t")), Some(tp));
    }

    #[test]
    fn rejects_malformed() {
        let bad = [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", // short flags
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", // short trace id
            "00-4bf92f3577b34da6a3ce929d0e0e47366-0f067aa0ba902b7-01", // misplaced dash
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", // 00 with a tail
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // forbidden version
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // not hex
            "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", // uppercase
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent id
            "00-00000000000000000000000000000000-0000000000000000-00", // Dapr, tracing off
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", // tail without a dash
        ];
        for b in bad {
            assert_eq!(parse(b), None, "{b:?}");
        }
    }

    #[test]
    fn accepts_future_versions_with_more_fields() {
        let tp = parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-extra").unwrap();
        assert_eq!(tp.version, 0xcc);
        assert!((tp.flags & 1 != 0));
        // A child of a future version is written as version 00 with only the known flag.
        let c = parse(&tp.child().to_string()).unwrap();
        assert_eq!((c.version, c.flags), (0, 1));
        assert_eq!(c.trace_id, tp.trace_id);
        assert!(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09").is_some());
    }

    #[test]
    fn child_keeps_the_trace_and_changes_the_span() {
        let parent = parse(TP).unwrap();
        let mut spans = std::collections::HashSet::new();
        for _ in 0..100 {
            let c = parse(&child(Some(TP))).unwrap();
            assert_eq!(c.trace_id, parent.trace_id);
            assert_ne!(c.parent_id, parent.parent_id);
            assert!((c.flags & 1 != 0));
            spans.insert(c.parent_id);
        }
        assert_eq!(spans.len(), 100);
    }

    #[test]
    fn absent_invalid_or_zero_starts_a_new_trace() {
        let zero = "00-00000000000000000000000000000000-0000000000000000-00";
        let a = parse(&child(None)).unwrap();
        let b = parse(&child(Some(zero))).unwrap();
        let c = parse(&child(Some("junk"))).unwrap();
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(b.trace_id, c.trace_id);
        assert!((a.flags & 1 != 0) && (b.flags & 1 != 0) && (c.flags & 1 != 0));
        let roots: std::collections::HashSet<String> = (0..100).map(|_| new_root()).collect();
        assert_eq!(roots.len(), 100);
        assert!(roots.iter().all(|r| parse(r).is_some()));
    }
}
