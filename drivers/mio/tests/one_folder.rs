//! The event loop keeps the std driver's promise about output folders: two receives into
//! one folder on the same loop cannot mix their files; the second is refused at once.

use std::time::Duration;

use ferry_core::transfer::TransferConfig;
use ferry_mio::{LoopStats, receive_all, serve};
use ferry_std::receive::ReceiveOptions;
use ferry_std::send::Sender;
use ferry_std::source::SourceTree;
use ferry_std::{ExitCode, Quiet};

/// A sender serving `content` as `x/big.bin` on its own thread.
fn sender(root: &std::path::Path, name: &str, content: u8) -> (Sender, std::path::PathBuf) {
    let source = root.join(name).join("x");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("big.bin"), vec![content; 8 << 20]).unwrap();
    let config = TransferConfig::default();
    let tree = SourceTree::scan(std::slice::from_ref(&source), &config.manifest).unwrap();
    (Sender::bind(tree, config, true, 0).unwrap(), source)
}

#[test]
fn two_receives_into_one_folder_on_one_loop_cannot_mix_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut targets = Vec::new();
    let mut serving = Vec::new();
    for (name, content) in [("a", 0xaa), ("b", 0xbb)] {
        let (mut sender, _) = sender(dir.path(), name, content);
        let options = ReceiveOptions {
            pod: true,
            port: sender.port(),
            out_dir: out.clone(),
            connect_timeout: Duration::from_secs(5),
            overwrite: false,
            config: TransferConfig::default(),
        };
        targets.push((sender.connection_string(), options));
        serving.push(std::thread::spawn(move || {
            serve(&mut sender, 1, &mut Quiet, &LoopStats::default()).is_ok()
        }));
    }
    let outcomes = receive_all(&targets, &mut Quiet, &LoopStats::default());
    let delivered: Vec<bool> = outcomes.iter().map(Result::is_ok).collect();
    assert_eq!(delivered.iter().filter(|d| **d).count(), 1, "{outcomes:?}");
    let refused = outcomes.iter().find_map(|o| o.as_ref().err()).unwrap();
    assert!(
        refused
            .to_string()
            .contains("in use by another ferry receive"),
        "{refused}"
    );
    assert_eq!(refused.exit_code(), ExitCode::Disk);
    let winner = if delivered[0] { 0xaa } else { 0xbb };
    assert_eq!(
        std::fs::read(out.join("x/big.bin")).unwrap(),
        vec![winner; 8 << 20]
    );
    // The refused receiver's sender is still waiting; the served one has finished.
    let done = serving.remove(usize::from(!delivered[0])).join().unwrap();
    assert!(done);
}
