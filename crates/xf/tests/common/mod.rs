//! Running the `xf` binary from integration tests.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The passphrase the tests' stores are encrypted under: every `xf` they run gets it in
/// `XF_PASSPHRASE`, so a store a test creates is encrypted unless it asks for `--plain`.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// The `xf` binary, with [`PASSPHRASE`] in its environment.
pub fn xf_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xf"));
    cmd.env("XF_PASSPHRASE", PASSPHRASE);
    cmd
}

/// The data key of the store at `data`, unwrapped with [`PASSPHRASE`]; `None` for a plain one.
pub fn data_key(data: &Path) -> Option<xaeroflux::DataKey> {
    let file = xaeroflux::keys::read_key_file(data).expect("a readable key file")?;
    let pass = xaeroflux::Passphrase::new(zeroize::Zeroizing::new(PASSPHRASE.to_owned()));
    Some(xaeroflux::keys::unwrap_key(&file, &pass).expect("the tests' passphrase"))
}

/// Runs `xf --data DATA ARGS…`.
pub fn xf(data: &Path, args: &[&str]) -> Output {
    xf_cmd()
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

/// (events, set fingerprint) of the store at `data`, read by a separate `xf stats`.
pub fn root(data: &Path) -> (u64, String) {
    let v = ok_json(data, &["stats"]);
    (
        v["events"].as_u64().unwrap(),
        v["set"]["fingerprint"].as_str().unwrap().to_owned(),
    )
}

/// Waits until the stores at `dirs` hold `events` events and one root, read by `xf stats`;
/// returns how long that took.
pub fn wait_converged<P: AsRef<Path>>(dirs: &[P], events: u64, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let roots: Vec<_> = dirs.iter().map(|d| root(d.as_ref())).collect();
        if roots.iter().all(|r| *r == roots[0]) && roots[0].0 == events {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "not converged on {events} events within {limit:?}: {roots:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A running `xf node`, killed when dropped.
pub struct NodeProc {
    pub child: Child,
    /// Its QUIC address with `/p2p/<peer id>`.
    pub quic: String,
    /// Its peer id.
    pub peer: String,
    /// Its stdout, line by line.
    pub lines: mpsc::Receiver<String>,
}

impl NodeProc {
    /// `xf node` on loopback, QUIC and TCP, one-second anti-entropy rounds (unless `extra`
    /// sets them).
    pub fn start(data: &Path, extra: &[&str]) -> NodeProc {
        let mut cmd = xf_cmd();
        cmd.arg("--data").arg(data).args([
            "node",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
        ]);
        if !extra.contains(&"--anti-entropy-secs") {
            cmd.args(["--anti-entropy-secs", "1"]);
        }
        cmd.args(extra);
        NodeProc::spawn(cmd, true)
    }

    /// Runs a prepared `xf node` command and waits for its peer id, and for its QUIC address
    /// if it `listens`.
    pub fn spawn(mut cmd: Command, listens: bool) -> NodeProc {
        let mut child = cmd
            // XF_NODE_LOG raises the nodes' log level when a test needs reading.
            .env(
                "XF_LOG",
                std::env::var("XF_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("xf node starts");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut peer, mut quic) = (None, None);
        while peer.is_none() || (listens && quic.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("node prints its peer id and addresses");
            if let Some(p) = line.strip_prefix("peer id: ") {
                peer = Some(p.to_owned());
            } else if let Some(a) = line.strip_prefix("listening: ") {
                if a.contains("quic-v1") {
                    quic = Some(a.to_owned());
                }
            }
        }
        let peer = peer.unwrap();
        NodeProc {
            child,
            // Printed whole, ready for `xf sync`.
            quic: quic
                .inspect(|q| {
                    assert!(
                        q.ends_with(&format!("/p2p/{peer}")),
                        "xf node prints its addresses with its peer id: {q}"
                    )
                })
                .unwrap_or_default(),
            peer,
            lines: rx,
        }
    }

    pub fn threads(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the node's status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("a thread count")
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
