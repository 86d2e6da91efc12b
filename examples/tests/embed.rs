//! The embedding template (`examples/embed.rs`) really moves a tree.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

#[test]
fn the_embedding_example_receives_a_tree_identical() {
    // Examples are built by `cargo test`, but not by `cargo test --test embed` alone.
    let built = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "ferry-examples",
            "--example",
            "embed",
        ])
        .status()
        .unwrap();
    assert!(built.success());
    let target = std::env::current_exe().unwrap();
    let example: PathBuf = target
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/embed");
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("tree");
    std::fs::create_dir_all(source.join("sub/empty")).unwrap();
    random_file(&source.join("sub/data.bin"), 3 << 20, 5);
    random_file(&source.join("small"), 100, 6);
    let run = Command::new(&example)
        .arg(&source)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("done: "), "{stdout}");
    assert_same_tree(&source, &dir.path().join("embed-out/tree"));
}

/// The template stays short enough to read in one sitting, and uses the one session
/// surface (outputs drained by `poll_output`, disk commands through `carry_out`).
#[test]
fn the_embedding_example_stays_a_short_read_of_the_session_surface() {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/embed.rs")).unwrap();
    let lines = source.lines().count();
    assert!(lines < 150, "examples/embed.rs has {lines} lines");
    for verb in [
        "poll_output",
        "carry_out",
        "poll_transmit",
        "handle_input",
        "handle_timeout",
    ] {
        assert!(
            source.contains(verb),
            "examples/embed.rs does not show {verb}"
        );
    }
}
