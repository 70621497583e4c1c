//! `xf` on encrypted stores: a new user's files give nothing away; a wrong or missing
//! passphrase exits 1 with one line and changes nothing; `passwd`, `rekey` and `encrypt` keep
//! every event and the set; plain and encrypted stores open and sync with each other.

use std::path::Path;
use std::process::Output;

mod common;
use common::{failure, ok_json, xf, xf_cmd, PASSPHRASE};

/// Runs `xf` with `XF_PASSPHRASE` set to `passphrase` (or unset) and extra environment.
fn xf_with(data: &Path, args: &[&str], passphrase: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = xf_cmd();
    match passphrase {
        Some(p) => cmd.env("XF_PASSPHRASE", p),
        None => cmd.env_remove("XF_PASSPHRASE"),
    };
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.arg("--data")
        .arg(data)
        .args(args)
        .output()
        .expect("xf runs")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Every file under `dir`, by name.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn data_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files(dir)
        .into_iter()
        .filter(|(n, _)| n != "lock.mdb" && n != "node.lock")
        .collect()
}

#[test]
fn a_new_user_searching_their_files_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("me");
    let init = ok_json(&data, &["init"]);
    assert_eq!(init["encrypted"], true);
    let key = init["public_key"].as_str().unwrap().to_owned();
    let text = "the blue heron nests at the weir 2291";
    let topic = "riverside-birders";
    let post = ok_json(&data, &["post", text, "--topic", topic]);
    let id = post["id"].as_str().unwrap().to_owned();
    ok_json(&data, &["profile", "--name", "Heron Watcher"]);
    assert_eq!(ok_json(&data, &["stats"])["encrypted"], true);
    // What was posted reads back with the passphrase.
    let got = ok_json(&data, &["get", &id[..12]]);
    assert_eq!(got["id"], id.as_str());

    let topic_id = xaeroflux::Topic::named(topic).0;
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("post text", text.as_bytes().to_vec()),
        ("topic name", topic.as_bytes().to_vec()),
        ("profile name", b"Heron Watcher".to_vec()),
        ("author key (hex)", key.clone().into_bytes()),
        ("author key (raw)", unhex(&key)),
        ("event id (hex)", id.clone().into_bytes()),
        ("event id (raw)", unhex(&id)),
        ("topic id (raw)", topic_id.to_vec()),
        ("topic id (hex)", hex(&topic_id).into_bytes()),
    ];
    let all = files(&data);
    assert!(all.iter().any(|(n, _)| n == "data.mdb"));
    for (name, bytes) in &all {
        for (what, needle) in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == &needle[..]),
                "{name} holds the {what}"
            );
        }
    }
}

#[test]
fn a_wrong_or_missing_passphrase_exits_1_with_one_line_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    ok_json(&data, &["init"]);
    ok_json(&data, &["post", "hello"]);
    let before = data_files(&data);
    for args in [
        &["stats"][..],
        &["post", "should not be stored"],
        &["feed"],
        &["export", "/dev/null"],
    ] {
        let err = failure(&xf_with(&data, args, Some("not the passphrase"), &[]));
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("wrong passphrase"), "{err}");
        // No terminal here: a missing passphrase says what to set.
        let err = failure(&xf_with(&data, args, None, &[]));
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("XF_PASSPHRASE"), "{err}");
    }
    assert_eq!(
        data_files(&data),
        before,
        "a refused command changed a file"
    );
    assert_eq!(ok_json(&data, &["stats"])["events"], 1);
}

#[test]
fn passwd_rewraps_the_key_and_rewrites_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    ok_json(&data, &["init"]);
    ok_json(&data, &["post", "kept across the change"]);
    let mdb = std::fs::read(data.join("data.mdb")).unwrap();
    let out = xf_with(
        &data,
        &["--json", "passwd"],
        Some(PASSPHRASE),
        &[("XF_NEW_PASSPHRASE", "a brand new passphrase")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(data.join("data.mdb")).unwrap(), mdb);
    failure(&xf_with(&data, &["stats"], Some(PASSPHRASE), &[]));
    let out = xf_with(
        &data,
        &["--json", "stats"],
        Some("a brand new passphrase"),
        &[],
    );
    assert!(out.status.success());
    // The old passphrase cannot change it back.
    let err = failure(&xf_with(
        &data,
        &["passwd"],
        Some(PASSPHRASE),
        &[("XF_NEW_PASSPHRASE", "x")],
    ));
    assert!(err.contains("wrong passphrase"), "{err}");
}

#[test]
fn rekey_and_encrypt_keep_every_event_the_set_and_the_author() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let init = ok_json(&data, &["--plain", "init"]);
    assert_eq!(init["encrypted"], false);
    ok_json(&data, &["gen", "--events", "2000", "--authors", "40"]);
    ok_json(&data, &["post", "mine, before encryption"]);
    let before = ok_json(&data, &["stats"]);
    assert_eq!(before["encrypted"], false);
    let done = ok_json(&data, &["encrypt"]);
    assert_eq!(done["events"], before["events"]);
    let after = ok_json(&data, &["stats"]);
    assert_eq!(after["encrypted"], true);
    assert_eq!(after["events"], before["events"]);
    assert_eq!(after["set"]["fingerprint"], before["set"]["fingerprint"]);
    assert!(ok_json(&data, &["verify"])["ok"].as_bool().unwrap());
    let key_file = std::fs::read(data.join("data.key")).unwrap();
    let rekeyed = ok_json(&data, &["rekey"]);
    assert_eq!(rekeyed["fingerprint"], after["set"]["fingerprint"]);
    assert_ne!(std::fs::read(data.join("data.key")).unwrap(), key_file);
    // The author is the same: a new post is signed by the key `init` made.
    let post = ok_json(&data, &["post", "mine, after rekeying"]);
    let got = ok_json(&data, &["get", post["id"].as_str().unwrap()]);
    assert_eq!(got["author"], init["public_key"]);
    assert!(!dir.path().join("d.reseal").exists());
    // Refusals: rekey of a plain store, encrypt of an encrypted one, a wrong passphrase.
    let plain = dir.path().join("p");
    ok_json(&plain, &["--plain", "init"]);
    assert!(failure(&xf(&plain, &["rekey"])).contains("not encrypted"));
    assert!(failure(&xf(&data, &["encrypt"])).contains("already encrypted"));
    let err = failure(&xf_with(&data, &["rekey"], Some("wrong"), &[]));
    assert!(err.contains("wrong passphrase"), "{err}");
}

#[test]
fn plain_stores_open_either_way_and_sync_with_encrypted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    let sealed = dir.path().join("sealed");
    ok_json(&plain, &["--plain", "init"]);
    ok_json(
        &plain,
        &["gen", "--events", "800", "--authors", "20", "--seed", "1"],
    );
    // A plain store opens with a passphrase set or not.
    let out = xf_with(&plain, &["--json", "stats"], None, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ok_json(&plain, &["stats"])["encrypted"], false);

    let other_pass = "the other store's passphrase";
    let out = xf_with(&sealed, &["--json", "init"], Some(other_pass), &[]);
    assert!(out.status.success());
    let out = xf_with(
        &sealed,
        &["gen", "--events", "800", "--authors", "20", "--seed", "2"],
        Some(other_pass),
        &[],
    );
    assert!(out.status.success());
    // Plain here, encrypted there (its own passphrase).
    let out = xf_with(
        &plain,
        &["--json", "sync", "--local", sealed.to_str().unwrap()],
        None,
        &[("XF_OTHER_PASSPHRASE", other_pass)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let here = ok_json(&plain, &["stats"]);
    let out = xf_with(&sealed, &["--json", "stats"], Some(other_pass), &[]);
    let there: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii_end()).unwrap();
    assert_eq!(here["set"]["fingerprint"], there["set"]["fingerprint"]);
    assert_eq!(there["encrypted"], true);
    // And the other way round, with one more event on the plain side.
    ok_json(&plain, &["post", "one more"]);
    let out = xf_with(
        &sealed,
        &["--json", "sync", "--local", plain.to_str().unwrap()],
        Some(other_pass),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = xf_with(&sealed, &["--json", "stats"], Some(other_pass), &[]);
    let there: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii_end()).unwrap();
    assert_eq!(
        ok_json(&plain, &["stats"])["set"]["fingerprint"],
        there["set"]["fingerprint"]
    );
}

#[test]
fn export_says_its_file_is_not_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    ok_json(&data, &["init"]);
    ok_json(&data, &["post", "exported in the clear"]);
    let file = dir.path().join("out.xfe");
    let out = xf(&data, &["export", file.to_str().unwrap()]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("not encrypted"), "{stdout}");
    assert_eq!(
        ok_json(&data, &["export", file.to_str().unwrap()])["encrypted"],
        false
    );
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes
        .windows(b"exported in the clear".len())
        .any(|w| w == b"exported in the clear"));
}
