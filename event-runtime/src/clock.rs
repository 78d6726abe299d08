//! Wall-clock time that follows tokio's clock, so paused-clock tests control retry due times.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static ORIGIN: OnceLock<(u64, std::time::Instant)> = OnceLock::new();

/// Milliseconds since the Unix epoch, advancing with `tokio::time` (real time in production,
/// the test's clock under `tokio::time::pause`).
pub(crate) fn now_ms() -> u64 {
    let (wall, mono) = *ORIGIN.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        (wall, tokio::time::Instant::now().into_std())
    });
    let elapsed = tokio::time::Instant::now()
        .into_std()
        .saturating_duration_since(mono);
    wall + elapsed.as_millis() as u64
}

/// `now_ms` as RFC 3339.
pub(crate) fn now_rfc3339() -> String {
    rfc3339(now_ms())
}

/// Epoch milliseconds as RFC 3339 (UTC, millisecond precision).
pub(crate) fn rfc3339(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
