//! The tests that need process-wide state: they set environment variables, which every app reads
//! when it is built, or read the one `metrics` recorder, which sees every app's and every outbox
//! relay's series. So they have a binary of their own, apart from `tests/it/`, and take [`ENV`]
//! while they change or read that state.

#![allow(missing_docs)]

/// Held by every test of this binary while it sets, reads or clears variables or builds an app.
pub static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`ENV`], also after a test that held it panicked.
pub fn env_lock() -> std::sync::MutexGuard<'static, ()> {
    ENV.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

macro_rules! app {
    () => {
        $crate::support::app_of(module_path!())
    };
}

#[path = "../it/support/mod.rs"]
mod support;

#[cfg(feature = "sqlx")]
#[path = "../it/outbox/support.rs"]
mod outbox_support;

mod config;
#[cfg(feature = "metrics")]
mod metrics;
#[cfg(all(feature = "metrics", feature = "sqlx"))]
mod outbox_metrics;
mod settings;
mod state_and_retention;

/// The process's `metrics` recorder, installed by the first test that asks, before it builds its
/// app or outbox.
#[cfg(feature = "metrics")]
pub fn recorder() -> &'static metrics_util::debugging::Snapshotter {
    static SNAPSHOTTER: std::sync::OnceLock<metrics_util::debugging::Snapshotter> =
        std::sync::OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("the only recorder");
        snapshotter
    })
}
