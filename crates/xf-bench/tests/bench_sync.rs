//! `xf-bench` as a reader of `docs/benchmarks.md` runs it: ours next to the reference, in JSON.

use std::process::Command;

use serde_json::Value;

/// Runs `xf-bench --json ARGS…` and returns its report.
fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_xf-bench"))
        .arg("--json")
        .args(args)
        .output()
        .expect("xf-bench runs");
    assert!(
        out.status.success(),
        "xf-bench {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let last = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn bench_sync_reports_ours_next_to_negentropy() {
    let r = bench(&["sync", "--events", "20000", "--diff", "100"]);
    assert_eq!(r["events"], 20000);
    assert_eq!(
        (r["only_a"].as_u64(), r["only_b"].as_u64()),
        (Some(50), Some(50))
    );
    assert!(r["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(r["machine"]["cpu"].is_string());
    let ours = &r["ours"];
    assert_eq!(ours["roots_equal"], true, "{r}");
    assert_eq!(ours["exact_transfer"], true, "{r}");
    assert_eq!(ours["events_a_to_b"], 50);
    assert_eq!(ours["events_b_to_a"], 50);
    for field in [
        "round_trips",
        "recon_bytes",
        "bytes_per_difference",
        "total_bytes",
        "event_bytes",
        "wall_ms",
        "responder_busy_ms",
        "initiator_busy_ms",
    ] {
        assert!(ours[field].as_f64().unwrap() > 0.0, "ours.{field}: {r}");
    }
    let neg = &r["negentropy"];
    assert_eq!(neg["verified"], true, "{r}");
    assert_eq!(
        (neg["have"].as_u64(), neg["need"].as_u64()),
        (Some(50), Some(50))
    );
    for field in [
        "round_trips",
        "recon_bytes",
        "bytes_per_difference",
        "wall_ms",
    ] {
        assert!(
            neg[field].as_f64().unwrap() > 0.0,
            "negentropy.{field}: {r}"
        );
    }
    assert!(r["ratio"]["recon_bytes"].as_f64().unwrap() > 0.0);
    assert!(r["ratio"]["round_trips"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_sync_empty_peer_moves_every_event() {
    let r = bench(&["sync", "--events", "5000", "--empty-peer"]);
    let ours = &r["ours"];
    assert_eq!(ours["roots_equal"], true, "{r}");
    assert_eq!(ours["events_a_to_b"], 5000, "{r}");
    assert_eq!(ours["events_b_to_a"], 0, "{r}");
    assert!(ours["total_vs_event_bytes"].as_f64().unwrap() > 0.0);
    assert_eq!(r["negentropy"]["have"], 5000);
    assert_eq!(r["negentropy"]["verified"], true);
}
