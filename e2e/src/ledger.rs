//! The shared JSON-lines files: one `write` per line on an `O_APPEND` file, so lines from
//! several processes (replicas) never interleave.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;

use serde_json::Value;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// An append-only JSON-lines file.
#[derive(Debug)]
pub struct AppendFile(Mutex<File>);

impl AppendFile {
    /// Opens (creates) `path` for appending.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<AppendFile> {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AppendFile(Mutex::new(f)))
    }

    /// Appends `v` as one line, in one write.
    pub fn append_json(&self, v: &Value) {
        let mut line = v.to_string();
        line.push('\n');
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(line.as_bytes()) {
            eprintln!("ledger write failed: {e}");
        }
    }
}

/// Every complete JSON line of `path` (a missing file is empty; a torn last line is skipped).
pub fn read_jsonl(path: impl AsRef<Path>) -> Vec<Value> {
    let path = path.as_ref();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    // Only the last line may be torn (a writer killed mid-append, or one still writing): it has
    // no newline yet. Any other line that does not parse is a broken ledger, and fails the test.
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let last = lines.len().saturating_sub(1);
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, line)| match serde_json::from_str(line) {
            Ok(v) => Some(v),
            Err(_) if i == last && !complete => None,
            Err(e) => panic!("{} line {}: not JSON ({e}): {line}", path.display(), i + 1),
        })
        .collect()
}
