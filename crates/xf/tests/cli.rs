//! `xf` as a person uses it: every command, JSON output, exit codes, and bad input that gets a
//! one-line reason while nothing stored changes.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::{count, failure, ok_json, xf};

#[test]
fn a_day_of_social_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("me");
    let init = ok_json(&data, &["init"]);
    let me = init["public_key"].as_str().unwrap().to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("identity.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // init again keeps the same identity.
    assert_eq!(
        ok_json(&data, &["init"])["public_key"].as_str().unwrap(),
        me
    );

    ok_json(&data, &["profile", "--name", "Ada", "--about", "engines"]);
    let post = ok_json(&data, &["post", "first post", "--topic", "rust"]);
    let post_id = post["id"].as_str().unwrap().to_owned();
    assert_eq!(post["outcome"], "stored");
    let reply = ok_json(
        &data,
        &["post", "replying to myself", "--reply-to", &post_id],
    );
    let reply_id = reply["id"].as_str().unwrap().to_owned();
    ok_json(&data, &["react", &post_id, "🔥"]);
    ok_json(&data, &["follow", &me]);

    let got = ok_json(&data, &["get", &post_id]);
    assert_eq!(got["content"], "first post");
    assert_eq!(got["kind"], "post");

    let feed = ok_json(&data, &["feed"]);
    let feed_ids: Vec<&str> = feed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(feed_ids, vec![reply_id.as_str(), post_id.as_str()]);

    let thread = ok_json(&data, &["thread", &post_id]);
    assert_eq!(thread["root"]["id"], post_id.as_str());
    let kinds: Vec<&str> = thread["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["reply", "reaction"]);

    let topical = ok_json(&data, &["query", "--topic", "rust", "--kind", "post"]);
    assert_eq!(topical.as_array().unwrap().len(), 1);
    let by_author = ok_json(&data, &["query", "--author", &me, "--limit", "2"]);
    assert_eq!(by_author.as_array().unwrap().len(), 2);
    let none = ok_json(&data, &["query", "--since", "1", "--until", "2"]);
    assert!(none.as_array().unwrap().is_empty());

    ok_json(&data, &["delete", &post_id, "--reason", "changed my mind"]);
    let out = xf(&data, &["get", &post_id]);
    assert!(failure(&out).contains("no event"));

    let stats = ok_json(&data, &["stats"]);
    assert!(stats["used_bytes"].as_u64().unwrap() > 0);
    // The Merkle index names the set and shows its shape.
    let set = &stats["set"];
    assert_eq!(set["events"], stats["events"]);
    assert_eq!(set["fingerprint"].as_str().unwrap().len(), 64);
    assert!(set["height"].as_u64().unwrap() >= 1, "{set}");
    assert!(set["leaf_pages"].as_u64().unwrap() >= 1, "{set}");
    assert!(set["branch_pages"].is_u64(), "{set}");
    let text = String::from_utf8(xf(&data, &["stats"]).stdout).unwrap();
    assert!(text.contains(&format!(
        "set root:     {}",
        set["fingerprint"].as_str().unwrap()
    )));
    assert!(text.contains("leaf pages"), "{text}");
    assert_eq!(ok_json(&data, &["verify"])["ok"], true);
}

#[test]
fn usage_errors_exit_2_and_failures_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let out = xf(&data, &["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
    let out = xf(&data, &["get", "not-hex"]);
    assert_eq!(out.status.code(), Some(2));
    // Publishing without an identity is a failure with a reason, not a crash.
    let out = xf(&data, &["post", "hi"]);
    assert!(failure(&out).contains("xf init"));
}

#[test]
fn export_import_round_trip_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    ok_json(&src, &["init"]);
    ok_json(
        &src,
        &["gen", "--events", "3000", "--authors", "50", "--seed", "3"],
    );
    let file = dir.path().join("events.xf");
    let exported = ok_json(&src, &["export", file.to_str().unwrap()]);
    let n = count(&src);
    assert_eq!(exported["exported"].as_u64().unwrap(), n);

    let report = ok_json(&dst, &["import", file.to_str().unwrap()]);
    assert_eq!(report["stored"].as_u64().unwrap(), n);
    assert_eq!(count(&dst), n);
    // Importing again stores nothing new.
    let again = ok_json(&dst, &["import", file.to_str().unwrap()]);
    assert_eq!(again["duplicates"].as_u64().unwrap(), n);

    let bytes = std::fs::read(&file).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", bytes[..bytes.len() / 2].to_vec(), "truncated"),
        (
            "garbage",
            b"definitely not an export".to_vec(),
            "not a Xaeroflux export",
        ),
        (
            "huge record",
            {
                let mut b = bytes[..16].to_vec();
                b.extend_from_slice(&(1u32 << 30).to_le_bytes());
                b
            },
            "claims",
        ),
        (
            "bad trailer",
            {
                let mut b = bytes.clone();
                let n = b.len();
                b[n - 1] ^= 1;
                b
            },
            "checksum",
        ),
    ];
    for (name, content, reason) in cases {
        let bad = dir.path().join(name);
        std::fs::write(&bad, content).unwrap();
        let out = xf(&dst, &["import", bad.to_str().unwrap()]);
        let stderr = failure(&out);
        assert!(stderr.contains(reason), "{name}: {stderr}");
        assert_eq!(count(&dst), n, "{name}: nothing lost");
    }
    assert_eq!(ok_json(&dst, &["verify"])["ok"], true);
}

#[test]
fn forged_events_are_rejected_and_the_rest_stored() {
    use xaeroflux::{ExportWriter, Identity};
    use xaeroflux_event::Draft;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let alice = Identity::from_seed(&[1; 32]);
    let now = xaeroflux::now_ms();
    let good = alice.sign(&Draft::post(now, "real")).into_bytes();
    let mut forged = alice.sign(&Draft::post(now + 1, "forged")).into_bytes();
    forged[32 + 148 + 10] ^= 0x01; // signature byte
    let mut wrong_id = alice.sign(&Draft::post(now + 2, "wrong id")).into_bytes();
    wrong_id[3] ^= 0x01;
    let future = alice
        .sign(&Draft::post(now + 3_600_000, "from the future"))
        .into_bytes();
    let mut w = ExportWriter::new(Vec::new()).unwrap();
    for e in [&good, &forged, &wrong_id, &future] {
        w.write_event(e).unwrap();
    }
    let file = dir.path().join("mixed.xf");
    std::fs::write(&file, w.finish().unwrap().0).unwrap();
    let out = xf(&data, &["--json", "import", file.to_str().unwrap()]);
    let stderr = failure(&out);
    assert!(stderr.contains("3 events failed verification"), "{stderr}");
    let report: Value = serde_json::from_str(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(report["stored"], 1);
    let reasons: Vec<&str> = report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"].as_str().unwrap())
        .collect();
    assert!(reasons[0].contains("signature"), "{reasons:?}");
    assert!(reasons[1].contains("wrong id"), "{reasons:?}");
    assert!(reasons[2].contains("ahead of now"), "{reasons:?}");
    assert_eq!(count(&data), 1);
}

#[test]
fn a_directory_that_is_not_ours_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("thesis.txt"), b"years of work").unwrap();
    let out = xf(dir.path(), &["init"]);
    assert!(failure(&out).contains("not a Xaeroflux store"));
    assert_eq!(
        std::fs::read(dir.path().join("thesis.txt")).unwrap(),
        b"years of work"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn demo_runs() {
    let out = common::xf_cmd().arg("demo").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("alice's feed"));
    assert!(stdout.contains("carol reacted 🔥"));
    assert!(stdout.contains("0 problems"));
}

/// Runs `xf` with the data directory bind-mounted read-only in a private mount namespace
/// (needs root, as CI has; fails loudly rather than skipping where it cannot run).
fn xf_read_only(data: &Path, args: &[&str]) -> Output {
    let d = data.to_str().unwrap();
    let script =
        format!(
        "mount --bind '{d}' '{d}' && mount -o remount,bind,ro '{d}' && exec '{}' --data '{d}' {}",
        env!("CARGO_BIN_EXE_xf"),
        args.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" ")
    );
    Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .env("XF_PASSPHRASE", common::PASSPHRASE)
        .output()
        .expect("unshare runs")
}

#[test]
fn read_only_media_serve_reads_and_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ro");
    ok_json(&data, &["init"]);
    let id = ok_json(&data, &["post", "written before the media went read-only"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let probe = xf_read_only(&data, &["--json", "stats"]);
    assert!(
        probe.status.success(),
        "this test needs root and mount namespaces (`unshare --mount`): {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let got = xf_read_only(&data, &["--json", "get", &id]);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let out = xf_read_only(&data, &["post", "nope"]);
    let stderr = failure(&out);
    assert!(stderr.contains("read-only"), "{stderr}");
    assert_eq!(count(&data), 1, "nothing changed");
}
