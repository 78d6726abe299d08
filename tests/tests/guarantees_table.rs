//! GUARANTEES.md names, for every promise, the tests that prove it. This reads the table and
//! fails on a test that does not exist (a file moved, a test renamed), so the table cannot drift
//! from the suite it points at.

use std::path::Path;

/// Every backticked `path/file.ext` or `path/file.rs::test_name` in the text.
fn references(text: &str) -> Vec<(String, Option<String>)> {
    let mut refs = Vec::new();
    for quoted in text.split('`').skip(1).step_by(2) {
        let (path, name) = match quoted.split_once("::") {
            Some((path, name)) => (path, Some(name)),
            None => (quoted, None),
        };
        let is_file = path.contains('/')
            && !path.contains([' ', '*'])
            && [".rs", ".sh", ".py", ".json"]
                .iter()
                .any(|ext| path.ends_with(ext));
        if is_file {
            // `module::tests::name` names the test `name`.
            let name = name.map(|n| n.rsplit("::").next().unwrap_or(n).to_owned());
            refs.push((path.to_owned(), name));
        }
    }
    refs
}

#[test]
fn every_test_the_guarantees_table_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let table = std::fs::read_to_string(root.join("GUARANTEES.md")).unwrap();
    let refs = references(&table);
    assert!(refs.len() > 200, "only {} references read", refs.len());
    let mut missing = Vec::new();
    for (path, name) in &refs {
        let Ok(source) = std::fs::read_to_string(root.join(path)) else {
            missing.push(format!("{path}: no such file"));
            continue;
        };
        if let Some(name) = name {
            let defined = source.match_indices(&format!("fn {name}")).any(|(i, m)| {
                !source[i + m.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            if !defined {
                missing.push(format!("{path}: no test `{name}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "GUARANTEES.md names:\n{}",
        missing.join("\n")
    );
}
