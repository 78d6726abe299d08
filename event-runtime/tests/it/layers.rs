//! The runtime's layers (ARCHITECTURE.md): each top-level module of `src/` imports only the
//! layers below it. Read from the sources, so a new upward import fails here, naming the file.

use std::path::Path;

/// Bottom to top.
const LAYERS: [&str; 13] = [
    "clock",
    "wire",
    "config",
    "event",
    "transport",
    "handler",
    "metrics",
    "pipeline",
    "outbox",
    "tooling",
    "http",
    "app",
    "testing",
];

/// The code of a file without its unit tests and comments (doc links name any layer).
fn code_of(text: &str) -> String {
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn layer_of(src: &Path, file: &Path) -> Option<&'static str> {
    let rel = file.strip_prefix(src).ok()?;
    let top = rel.components().next()?.as_os_str().to_str()?;
    let top = top.strip_suffix(".rs").unwrap_or(top);
    LAYERS.iter().copied().find(|l| *l == top)
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_layer_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    let mut checked = 0;
    for file in &files {
        let Some(own) = layer_of(&src, file) else {
            continue; // lib.rs and private.rs sit above every layer
        };
        checked += 1;
        let rank = |l: &str| LAYERS.iter().position(|x| *x == l);
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if let (Some(to), Some(from)) = (rank(&name), rank(own)) {
                if to > from {
                    upward.push(format!("{} imports crate::{name}", file.display()));
                }
            }
        }
    }
    assert!(checked > 40, "only {checked} files read: has src/ moved?");
    assert!(
        upward.is_empty(),
        "imports from a higher layer:\n{}",
        upward.join("\n")
    );
}
