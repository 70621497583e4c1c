//! Running the `xf` binary from integration tests.
#![allow(dead_code)] // each test file uses a different subset

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Runs `xf --data DATA ARGS…`.
pub fn xf(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xf"))
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .expect("xf runs")
}

/// Runs `xf --json` and returns its last stdout line.
pub fn ok_json(data: &Path, args: &[&str]) -> Value {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let out = xf(data, &full);
    assert!(
        out.status.success(),
        "xf {args:?} on {} failed ({}): {}",
        data.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let last = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Asserts a failure (exit 1 with a one-line reason) and returns stderr.
pub fn failure(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected failure exit 1, got {:?}",
        out.status
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.starts_with("error: "),
        "one-line reason on stderr: {stderr}"
    );
    stderr
}

/// Events stored in the store at `data`.
pub fn count(data: &Path) -> u64 {
    ok_json(data, &["stats"])["events"].as_u64().unwrap()
}
