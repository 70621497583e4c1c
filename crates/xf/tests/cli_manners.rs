//! `xf` as a new user meets it: text from others cannot take over the terminal, read commands
//! create nothing, short ids work, posts come from standard input or files, and mistakes get
//! the exit status and the one clear line they deserve.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::Value;

mod common;
use common::{count, failure, ok_json, xf};

/// Runs `xf --data DATA ARGS…` with `input` on its standard input.
fn xf_with_stdin(data: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = common::xf_cmd()
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xf runs");
    // xf stops reading past what a post holds: a broken pipe here is expected then.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A fresh store with an identity: its temporary directory, the data directory, the public key.
fn new_store() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("me");
    let key = ok_json(&data, &["init"])["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    (dir, data, key)
}

/// Ids and authors of every stored event, newest first.
fn events(data: &Path) -> Vec<(String, String)> {
    ok_json(data, &["query", "--limit", "10000"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["author"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn text_output_escapes_what_others_wrote() {
    let (_dir, data, me) = new_store();
    // Clears the screen, forges a second line, and reverses what follows it.
    let hostile = "hello\u{1b}[2J\r\n2026-01-01 admin: trust me\u{202e}gnp.exe\u{7}";
    let id = ok_json(&data, &["post", hostile])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok_json(&data, &["follow", &me]);
    for args in [
        vec!["query", "--kind", "post"],
        vec!["feed"],
        vec!["thread", &id],
        vec!["get", &id],
    ] {
        let text = stdout(&xf(&data, &args));
        assert_eq!(text.lines().count(), 1, "{args:?}: one line: {text:?}");
        for c in ['\u{1b}', '\r', '\u{202e}', '\u{7}'] {
            assert!(!text.contains(c), "{args:?}: {c:?} reached the terminal");
        }
        assert!(
            text.contains(r"hello\u{1b}[2J\r\n2026-01-01 admin: trust me\u{202e}gnp.exe\u{7}"),
            "{args:?}: {text}"
        );
    }
    // JSON keeps the text exactly (its own escaping makes it safe).
    assert_eq!(ok_json(&data, &["get", &id])["content"], hostile);
    // Scripts people write (and emoji sequences) are shown as they are.
    let fine = "שלום · 👩‍👩‍👧 · naïve";
    ok_json(&data, &["post", fine]);
    let text = stdout(&xf(&data, &["query", "--kind", "post", "--limit", "1"]));
    assert!(text.contains(fine), "{text}");
}

#[test]
fn read_commands_on_a_missing_store_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let id = "ab".repeat(32);
    let key = "cd".repeat(32);
    let export = dir.path().join("out.xfe");
    let export = export.to_str().unwrap();
    for args in [
        vec!["stats"],
        vec!["verify"],
        vec!["query"],
        vec!["get", &id],
        vec!["feed", "--author", &key],
        vec!["thread", &id],
        vec!["export", export],
        vec!["post", "hello?"],
        vec!["delete", &id],
    ] {
        let out = xf(&missing, &args);
        let err = failure(&out);
        assert!(
            err.contains(&format!("there is no store in {}", missing.display()))
                && err.contains("xf init"),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(!missing.exists(), "{args:?} created the directory");
    }
    assert!(!Path::new(export).exists());
    // A directory of someone else's files is refused whole, and keeps no lock file.
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("thesis.txt"), b"years of work").unwrap();
    for args in [vec!["stats"], vec!["query"], vec!["init"]] {
        let err = failure(&xf(&theirs, &args));
        assert!(
            err.contains("no store") || err.contains("not a Xaeroflux store"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 1, "{args:?}");
    }
}

#[test]
fn short_ids_name_one_event_and_ambiguity_is_reported() {
    let (_dir, data, _) = new_store();
    ok_json(
        &data,
        &["gen", "--events", "3000", "--authors", "20", "--seed", "3"],
    );
    let all = events(&data);
    assert!(all.len() > 2500, "{}", all.len());
    // A 12-digit prefix, as text output shows ids, names its event.
    let (id, _) = &all[all.len() / 2];
    let got = ok_json(&data, &["get", &id[..12]]);
    assert_eq!(got["id"], id.as_str());
    let got = ok_json(&data, &["get", &id[..12].to_ascii_uppercase()]);
    assert_eq!(got["id"], id.as_str());
    let thread = ok_json(&data, &["thread", &id[..8]]);
    assert_eq!(thread["root"]["id"], id.as_str());
    let queried = ok_json(&data, &["query", "--id", &id[..10]]);
    assert_eq!(queried[0]["id"], id.as_str());
    // Some 4-digit prefix starts two ids of 3,000 (about 68 such pairs are expected).
    let mut sorted: Vec<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
    sorted.sort_unstable();
    let pair = sorted
        .windows(2)
        .find(|w| w[0][..4] == w[1][..4])
        .expect("two ids share 4 leading digits");
    let err = failure(&xf(&data, &["get", &pair[0][..4]]));
    assert!(err.contains("ambiguous"), "{err}");
    assert!(err.contains(pair[0]) && err.contains(pair[1]), "{err}");
    // Digits no id starts with.
    let absent = (0..=0xffffu32)
        .map(|n| format!("{n:04x}"))
        .find(|p| !sorted.iter().any(|id| id.starts_with(p.as_str())))
        .expect("some 4 digits start no id");
    let err = failure(&xf(&data, &["get", &absent]));
    assert!(err.contains("no stored event id starts with"), "{err}");
    // Replying and reacting by prefix.
    let reply = ok_json(&data, &["post", "answer", "--reply-to", &id[..12]]);
    let reply = ok_json(&data, &["get", reply["id"].as_str().unwrap()]);
    assert_eq!(reply["reference"], id.as_str());
}

#[test]
fn posts_come_from_arguments_standard_input_and_files_within_the_limit() {
    let (dir, data, _) = new_store();
    let out = xf_with_stdin(
        &data,
        &["--json", "post", "-"],
        "from a pipe\nline two".as_bytes(),
    );
    let id: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let got = ok_json(&data, &["get", id["id"].as_str().unwrap()]);
    assert_eq!(got["content"], "from a pipe\nline two");
    let file = dir.path().join("note.txt");
    std::fs::write(&file, "from a file").unwrap();
    let id = ok_json(&data, &["post", "--file", file.to_str().unwrap()]);
    assert_eq!(
        ok_json(&data, &["get", id["id"].as_str().unwrap()])["content"],
        "from a file"
    );
    assert_eq!(count(&data), 2);
    // One megabyte: a clear error, not the shell's "argument list too long".
    let big = dir.path().join("big.txt");
    std::fs::write(&big, "x".repeat(1 << 20)).unwrap();
    let err = failure(&xf(&data, &["post", "--file", big.to_str().unwrap()]));
    assert!(err.contains("larger than a post holds"), "{err}");
    let err = failure(&xf_with_stdin(&data, &["post", "-"], &vec![b'y'; 1 << 20]));
    assert!(
        err.contains("standard input") && err.contains("larger"),
        "{err}"
    );
    assert_eq!(count(&data), 2, "nothing stored");
    // The help says what a post holds.
    let help = stdout(&xf(&data, &["post", "--help"]));
    assert!(help.contains("64 KiB"), "{help}");
}

#[test]
fn deleting_another_authors_event_is_refused() {
    let (_dir, data, me) = new_store();
    ok_json(
        &data,
        &["gen", "--events", "200", "--authors", "5", "--seed", "9"],
    );
    let (theirs, author) = events(&data)
        .into_iter()
        .find(|(_, author)| *author != me)
        .expect("an event by someone else");
    let before = count(&data);
    let err = failure(&xf(&data, &["delete", &theirs]));
    assert!(
        err.contains(&author) && err.contains("only its author can delete it"),
        "{err}"
    );
    assert_eq!(count(&data), before, "no deletion stored");
    assert_eq!(ok_json(&data, &["get", &theirs])["id"], theirs.as_str());
    // One's own event is deleted as before.
    let mine = ok_json(&data, &["post", "mine"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(ok_json(&data, &["delete", &mine])["outcome"], "stored");
}

#[cfg(unix)]
#[test]
fn an_identity_key_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, data, _) = new_store();
    let key = data.join("identity.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = failure(&xf(&data, &["post", "leaked?"]));
    assert!(
        err.contains("readable by other users") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(count(&data), 0);
    ok_json(&data, &["post", "private again"]);
}

#[test]
fn usage_mistakes_exit_2() {
    let (dir, data, _) = new_store();
    let other = dir.path().join("other");
    ok_json(&other, &["init"]);
    let other = other.to_str().unwrap();
    let addr = "/ip4/127.0.0.1/udp/9/quic-v1";
    for args in [
        vec!["sync", addr, "--since", "10", "--until", "5"],
        vec!["sync", addr, "--author", &"ab".repeat(32)],
        vec!["sync", ""],
        vec!["sync", "not an address"],
        vec!["sync", "--local", other, "--since", "10", "--until", "5"],
        vec!["query", "--since", "10", "--until", "5"],
        vec!["query", "--limit", "20000"],
        vec!["query", "--limit", "0"],
        vec!["feed", "--limit", "10001"],
        vec!["gen", "--authors", "0"],
        vec!["get", "zz"],
        vec!["get", "abc"],
        vec!["post"],
        vec!["post", "text", "--file", "f"],
    ] {
        let out = xf(&data, &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    // The help says which flags need --local.
    let help = stdout(&xf(&data, &["sync", "--help"]));
    assert!(help.contains("With --local only"), "{help}");
}

#[test]
fn errors_say_each_thing_once_and_never_end_empty() {
    let (_dir, data, _) = new_store();
    // A deletion of nothing: the verifier's reason, once.
    let err = failure(&xf(&data, &["delete", &"0".repeat(64)]));
    assert_eq!(err.matches("must reference an event").count(), 1, "{err}");
    // A port somebody else holds: the operating system's reason, not an empty one.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("/ip4/127.0.0.1/tcp/{}", held.local_addr().unwrap().port());
    let out = common::xf_cmd()
        .arg("--data")
        .arg(&data)
        .args(["node", "--no-mdns", "--listen", &addr])
        .env("XF_LOG", "error")
        .output()
        .unwrap();
    let err = failure(&out);
    let line = err.trim_end();
    assert!(line.contains(&addr), "{line}");
    assert!(!line.ends_with(':'), "an empty reason: {line}");
    assert!(line.to_lowercase().contains("in use"), "{line}");
}

/// Every key of a JSON value, at any depth.
fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                keys(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

#[test]
fn json_names_the_same_things_the_same_way() {
    let (dir, data, _) = new_store();
    let gen = ok_json(&data, &["gen", "--events", "300", "--seed", "5"]);
    assert!(gen["ms"].as_f64().unwrap() > 0.0, "{gen}");
    let other = dir.path().join("other");
    ok_json(&other, &["gen", "--events", "100", "--seed", "6"]);
    let stats = ok_json(&data, &["stats"]);
    let set_keys: Vec<&String> = stats["set"].as_object().unwrap().keys().collect();
    let sync = ok_json(&data, &["sync", "--local", other.to_str().unwrap()]);
    for side in ["here", "there"] {
        let got: Vec<&String> = sync["set"][side].as_object().unwrap().keys().collect();
        assert_eq!(got, set_keys, "{sync}");
    }
    assert_eq!(sync["set"]["equal"], true, "{sync}");
    assert!(sync["ms"].as_f64().unwrap() > 0.0, "{sync}");
    assert_eq!(
        ok_json(&data, &["stats"])["set"]["fingerprint"],
        sync["set"]["here"]["fingerprint"]
    );
    // Durations are milliseconds, and nothing says "seconds" or "root" for the set.
    let mut all = Vec::new();
    for v in [&gen, &stats, &sync] {
        keys(v, &mut all);
    }
    for k in &all {
        assert!(
            !k.contains("seconds") && k != "root" && k != "peer_id",
            "{k} in {all:?}"
        );
    }
    // A stream is JSON lines, each with its type.
    let file = dir.path().join("all.xfe");
    ok_json(&data, &["export", file.to_str().unwrap()]);
    let fresh = dir.path().join("fresh");
    let out = xf(&fresh, &["--json", "import", file.to_str().unwrap()]);
    let text = stdout(&out);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 2, "{text}");
    let (last, progress) = lines.split_last().unwrap();
    assert!(progress.iter().all(|l| l["type"] == "progress"), "{text}");
    assert_eq!(last["type"], "imported", "{text}");
    assert_eq!(
        last["stored"],
        ok_json(&data, &["stats"])["events"],
        "{text}"
    );
}
