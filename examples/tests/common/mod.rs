//! What the process tests share: running `ferry`, and comparing trees.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// A running `ferry send`, and the receive command it printed.
pub(crate) struct Sending {
    pub(crate) child: Child,
    pub(crate) command: Vec<String>,
}

pub(crate) fn send(args: &[&str], paths: &[&Path], path_env: Option<&Path>) -> Sending {
    let mut command = Command::new(FERRY);
    command
        .arg("send")
        .args(args)
        .args(["--port", "0"])
        .args(paths);
    if let Some(dir) = path_env {
        command.env(
            "PATH",
            format!(
                "{}:{}",
                dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let command: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    assert_eq!(&command[..2], ["ferry", "receive"], "printed {line:?}");
    Sending { child, command }
}

impl Sending {
    /// The receive command's arguments, optionally with another token.
    pub(crate) fn receive_args(&self, token: Option<&str>) -> Vec<String> {
        let mut args = self.command[1..].to_vec();
        if let Some(token) = token {
            let (ip, _) = args[1].rsplit_once(':').unwrap();
            args[1] = format!("{ip}:{token}");
        }
        args
    }

    pub(crate) fn finish(mut self) -> (i32, String) {
        let status = wait(&mut self.child, Duration::from_secs(120));
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    }
}

pub(crate) fn wait(child: &mut Child, limit: Duration) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn receive(args: &[String], out: &Path, path_env: Option<&Path>) -> Output {
    let mut command = Command::new(FERRY);
    command.args(args).arg("-o").arg(out);
    if let Some(dir) = path_env {
        command.env(
            "PATH",
            format!(
                "{}:{}",
                dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    }
    command.output().unwrap()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub(crate) fn random_file(path: &Path, len: usize, seed: u64) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut data = vec![0u8; len];
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    fs::write(path, data).unwrap();
}

/// Asserts two trees are equal: the same names, kinds, contents and permission bits.
pub(crate) fn assert_same_tree(a: &Path, b: &Path) {
    let mut names_a: Vec<_> = fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut names_b: Vec<_> = fs::read_dir(b)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names_a.sort();
    names_b.sort();
    assert_eq!(names_a, names_b, "{} vs {}", a.display(), b.display());
    for name in names_a {
        let (pa, pb) = (a.join(&name), b.join(&name));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).unwrap(),
            fs::symlink_metadata(&pb).unwrap(),
        );
        assert_eq!(
            ma.permissions().mode() & 0o7777,
            mb.permissions().mode() & 0o7777,
            "mode of {}",
            pb.display()
        );
        assert_eq!(ma.is_dir(), mb.is_dir());
        if ma.is_dir() {
            assert_same_tree(&pa, &pb);
        } else {
            assert!(
                fs::read(&pa).unwrap() == fs::read(&pb).unwrap(),
                "{} differs",
                pb.display()
            );
        }
    }
}
