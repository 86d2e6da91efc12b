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
