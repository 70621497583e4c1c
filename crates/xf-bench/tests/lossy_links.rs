//! Two nodes converge over QUIC through the seeded loss-and-delay relay, on an in-order and on a
//! reordering link, at 0, 5 and 20% loss, five seeds each (`xf-bench lossy`, one process per
//! link, loss and seed, all at once: the runs mostly wait on the simulated link). The base
//! seed is printed, and `XF_LOSSY_SEED` replays it; each run's own seed is in its report. The
//! times are figures for `docs/benchmarks.md`, not asserted here: what must hold is that every
//! run converges.

use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;

const SEEDS: u64 = 5;
/// Events in A (B holds a tenth as many others).
const EVENTS: &str = "300";
/// A run that has not converged by then fails the test.
const LIMIT_SECS: &str = "420";

#[test]
fn every_seed_converges_in_order_and_reordered_at_0_5_and_20_percent_loss() {
    // Kept small: run i's generator and relay seeds derive from it (× 1000).
    let base = xaeroflux_bench::seed_from_env("XF_LOSSY_SEED") % 1_000_000;
    eprintln!("lossy links: base seed {base} (XF_LOSSY_SEED={base} replays it)");
    let started = Instant::now();
    let mut runs = Vec::new();
    for link in ["in-order", "reordering"] {
        for loss in ["0", "0.05", "0.2"] {
            for i in 0..SEEDS {
                let seed = (base + i).to_string();
                let child = Command::new(env!("CARGO_BIN_EXE_xf-bench"))
                    .args(["--json", "lossy", "--events", EVENTS, "--seeds", "1"])
                    .args(["--seed", &seed, "--link", link, "--loss", loss])
                    .args(["--limit-secs", LIMIT_SECS])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("starting xf-bench lossy");
                runs.push((link, loss, seed, child));
            }
        }
    }
    let mut failures = Vec::new();
    for (link, loss, seed, child) in runs {
        let out = child
            .wait_with_output()
            .expect("waiting for xf-bench lossy");
        let what = format!("{link} link, loss {loss}, --seed {seed}");
        if !out.status.success() {
            failures.push(format!(
                "{what}: exited {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            continue;
        }
        let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
        let cell = report["links"]
            .as_object()
            .and_then(|l| l.values().next())
            .and_then(|l| l["by_loss_percent"].as_object())
            .and_then(|c| c.values().next())
            .cloned()
            .expect("one link and one loss rate");
        let run = &cell["runs"][0];
        eprintln!(
            "{what}: converged {} in {:.1} s, relay {:.1} KB/s, sessions failed {}",
            run["converged"],
            run["seconds"].as_f64().unwrap_or(f64::NAN),
            run["relay_goodput_bytes_per_s"]
                .as_f64()
                .unwrap_or(f64::NAN)
                / 1000.0,
            run["sessions_failed"]
        );
        if run["converged"] != true {
            failures.push(format!("{what}: not converged: {run}"));
        }
        if run["through_relay"] != true {
            failures.push(format!("{what}: the events went around the relay: {run}"));
        }
    }
    eprintln!("30 runs in {:?}", started.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
