//! Compile-fail and compile-pass tests of `#[event_handler]` and `#[derive(Event)]`.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p event-tests --test ui`
//! and review the diff.

use std::path::{Path, PathBuf};

#[test]
fn ui() {
    contracts_beside_trybuild_project();
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/event_handler/fail/*.rs");
    t.pass("ui/event_handler/pass/*.rs");
    t.compile_fail("ui/derive_event/fail/*.rs");
    t.pass("ui/derive_event/pass/*.rs");
}

/// trybuild builds the cases as a crate of its own, in `<target>/tests/trybuild/event-tests/`,
/// so that is the `CARGO_MANIFEST_DIR` a case's `#[event(contract = "...")]` is relative to.
/// The fixtures under `ui/contracts/` are copied there, and the cases write
/// `contract = "contracts/<file>"`, as a user's crate would.
fn contracts_beside_trybuild_project() {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is <target>/tmp");
    let project = target.join("tests/trybuild").join(env!("CARGO_PKG_NAME"));
    let into = project.join("contracts");
    let _ = std::fs::remove_dir_all(&into);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/contracts"),
        &into,
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}
