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
    let s = well_formed(traceparent)?;
    Some(TraceParent {
        version: unhex::<1>(&s[0..2])[0],
        trace_id: unhex(&s[3..35]),
        parent_id: unhex(&s[36..52]),
        flags: unhex::<1>(&s[53..55])[0],
    })
}

/// Whether `traceparent` names a trace: what [`parse`] accepts, checked without decoding it.
pub(crate) fn names_a_trace(traceparent: &str) -> bool {
    well_formed(traceparent).is_some()
}

/// `traceparent` without the spaces and tabs around it, when [`parse`] accepts it.
fn well_formed(traceparent: &str) -> Option<&[u8]> {
    let mut s = traceparent.as_bytes();
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    if s.len() < 55 || s[2] != b'-' || s[35] != b'-' || s[52] != b'-' {
        return None;
    }
    let version = [s[0], s[1]];
    // Version 00 is exactly 55 characters; later versions may append `-...`.
    if version == *b"ff" || (version == *b"00" && s.len() != 55) || (s.len() > 55 && s[55] != b'-')
    {
        return None;
    }
    let word = |at: usize| {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    let trace_id = [word(3), word(11), word(19), word(27)];
    let parent_id = [word(36), word(44)];
    let short = u64::from_le_bytes([s[0], s[1], s[53], s[54], b'0', b'0', b'0', b'0']);
    let zeros = u64::from_le_bytes([b'0'; 8]);
    let all_hex = trace_id
        .iter()
        .chain(&parent_id)
        .fold(lower_hex(short), |all, &w| all & lower_hex(w));
    let named = trace_id != [zeros; 4] && parent_id != [zeros; 2];
    (all_hex && named).then_some(s)
}

/// Whether the eight bytes of `word` are all lowercase hex digits, checked together: a trace
/// context is read on every delivery, and a test per byte costs a branch each.
fn lower_hex(word: u64) -> bool {
    const fn splat(b: u8) -> u64 {
        u64::from_le_bytes([b; 8])
    }
    const HIGH: u64 = splat(0x80);
    // For bytes below 0x80, `b + (0x80 - lo)` has its high bit set exactly when `b >= lo`, and
    // `b + (0x7f - hi)` exactly when `b > hi`; neither sum carries into the next byte.
    let within = |lo: u8, hi: u8| {
        (word.wrapping_add(splat(0x80 - lo)) & !word.wrapping_add(splat(0x7f - hi))) & HIGH
    };
    word & HIGH == 0 && (within(b'0', b'9') | within(b'a', b'f')) == HIGH
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

/// Each byte's value as a lowercase hex digit (`0xff` for any other byte), for decoding digits
/// already checked.
const HEX_DIGIT: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// `N` bytes from `2 N` lowercase hex digits that [`well_formed`] checked.
fn unhex<const N: usize>(digits: &[u8]) -> [u8; N] {
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = HEX_DIGIT[pair[0] as usize] << 4 | HEX_DIGIT[pair[1] as usize];
    }
    bytes
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

    /// The specification's rules, one character at a time.
    fn reference(traceparent: &str) -> Option<TraceParent> {
        let s = traceparent.trim_matches([' ', '\t']);
        let hex = |part: &str| {
            let ok = part
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
            ok.then(|| {
                (0..part.len() / 2)
                    .map(|i| u8::from_str_radix(&part[2 * i..2 * i + 2], 16).unwrap())
                    .collect::<Vec<u8>>()
            })
        };
        if !s.is_char_boundary(55.min(s.len())) || s.len() < 55 {
            return None;
        }
        let (version, rest) = (hex(s.get(0..2)?)?[0], &s[2..]);
        let well_placed =
            rest.starts_with('-') && s.as_bytes()[35] == b'-' && s.as_bytes()[52] == b'-';
        if version == 0xff || !well_placed || (version == 0 && s.len() != 55) {
            return None;
        }
        if s.len() > 55 && s.as_bytes()[55] != b'-' {
            return None;
        }
        let trace_id: [u8; 16] = hex(s.get(3..35)?)?.try_into().ok()?;
        let parent_id: [u8; 8] = hex(s.get(36..52)?)?.try_into().ok()?;
        let flags = hex(s.get(53..55)?)?[0];
        (trace_id != [0; 16] && parent_id != [0; 8]).then_some(TraceParent {
            version,
            trace_id,
            parent_id,
            flags,
        })
    }

    #[test]
    fn every_one_byte_change_is_read_as_the_rules_say() {
        let samples = [
            TP,
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz",
        ];
        for sample in samples {
            for at in 0..sample.len() {
                for byte in 0..=127u8 {
                    let mut bytes = sample.as_bytes().to_vec();
                    bytes[at] = byte;
                    let changed = String::from_utf8(bytes).unwrap();
                    assert_eq!(parse(&changed), reference(&changed), "{changed:?}");
                    assert_eq!(names_a_trace(&changed), reference(&changed).is_some());
                }
            }
        }
        for text in [
            "\u{e9}\u{e9}-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            " \t00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\t ",
        ] {
            assert_eq!(parse(text), reference(text), "{text:?}");
        }
    }

    #[test]
    fn the_word_check_agrees_with_one_byte_at_a_time() {
        let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
        for byte in 0..=255u8 {
            for at in 0..8 {
                let mut word = *b"0a9f3c7e";
                word[at] = byte;
                let expected = word.iter().all(|&c| hex(c));
                assert_eq!(lower_hex(u64::from_le_bytes(word)), expected, "{word:?}");
            }
        }
    }

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
