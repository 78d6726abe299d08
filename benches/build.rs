//! Writes the filler handlers the dispatch benchmark registers next to the measured one: one
//! event type and one `#[event_handler]` per topic (`bench-topic-NNN`), and as many more on a
//! single shared topic (`task-events-shared`), so the benchmark can compare 1, 10 and 100
//! registered handlers. Generated rather than written out so the count is one constant.

use std::fmt::Write as _;

/// Filler handlers on distinct topics, and again on the shared topic.
const FILLERS: usize = 99;

fn main() {
    let mut out = String::new();
    for (prefix, topic_of) in [
        (
            "filler",
            (|i| format!("bench-topic-{i:03}")) as fn(usize) -> String,
        ),
        ("shared", |_| "task-events-shared".to_owned()),
    ] {
        for i in 0..FILLERS {
            let ty = format!("Bench{}{i:03}", capitalize(prefix));
            let topic = topic_of(i);
            writeln!(
                out,
                r#"
/// Filler event {i} ({prefix}).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, event_runtime::Event)]
#[event(type = "bench.{prefix}.{i:03}", version = "1.0")]
pub struct {ty} {{
    /// Partition key.
    pub user_id: String,
    /// Payload.
    pub n: i64,
}}

/// Filler handler {i} ({prefix}).
#[event_runtime::event_handler(topic = "{topic}")]
pub async fn {prefix}_{i:03}(event: {ty}) {{
    std::hint::black_box(&event);
}}
"#
            )
            .expect("writing to a String cannot fail");
        }
    }
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("fillers.rs");
    std::fs::write(dest, out).expect("cannot write fillers.rs");
    println!("cargo::rerun-if-changed=build.rs");
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}
