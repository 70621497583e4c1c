//! `xf dm`, `xf inbox` and `xf group …`: three people on three stores, envelopes carried by
//! `xf sync --local`, every command with `--json`, and clear refusals.

mod common;

use std::path::Path;

use common::{failure, ok_json, xf};

fn init(dir: &Path) -> String {
    ok_json(dir, &["init"])["public_key"]
        .as_str()
        .unwrap()
        .to_string()
}

fn sync(a: &Path, b: &Path) {
    ok_json(a, &["sync", "--local", b.to_str().unwrap()]);
}

fn texts(v: &serde_json::Value) -> Vec<String> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn three_people_talk_in_a_group_and_privately() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let [a, b, c] = [dirs[0].path(), dirs[1].path(), dirs[2].path()];
    let (alice, bob, carol) = (init(a), init(b), init(c));
    // Each publishes a key bundle with its first conversation command.
    for d in [a, b, c] {
        let inbox = ok_json(d, &["inbox"]);
        assert_eq!(inbox["conversations"].as_array().unwrap().len(), 0);
    }
    sync(a, b);
    sync(a, c);

    let created = ok_json(a, &["group", "create", "hikers"]);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);
    ok_json(a, &["group", "add", "hikers", &bob, &carol]);
    ok_json(a, &["group", "send", &id[..8], "trail at nine"]);
    sync(a, b);
    sync(a, c);
    let read = ok_json(b, &["group", "read", "hikers"]);
    assert_eq!(texts(&read), vec!["trail at nine"]);
    assert_eq!(read["conversation"]["members"].as_array().unwrap().len(), 3);
    ok_json(c, &["group", "send", "hikers", "count me in"]);
    sync(c, a);
    sync(a, b);
    for d in [a, b, c] {
        let read = ok_json(d, &["group", "read", "hikers"]);
        assert_eq!(texts(&read), vec!["trail at nine", "count me in"]);
    }
    let list = ok_json(b, &["group", "list"]);
    assert_eq!(list[0]["name"], "hikers");
    assert_eq!(list[0]["kind"], "group");

    // A direct message from Bob to Alice.
    let dm = ok_json(b, &["dm", &alice, "a word in private"]);
    assert_eq!(dm["sent"], true);
    sync(b, a);
    let inbox = ok_json(a, &["inbox"]);
    let direct: Vec<_> = inbox["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "direct")
        .collect();
    assert_eq!(direct.len(), 1);
    assert_eq!(direct[0]["peer"], bob.as_str());
    assert_eq!(direct[0]["newest"][0]["text"], "a word in private");
    // Carol's store holds the envelope after a sync, and cannot read it.
    sync(c, a);
    let carol_inbox = ok_json(c, &["inbox"]);
    assert!(carol_inbox["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["kind"] == "group"));

    // Only an admin removes; Carol is removed and reads nothing after.
    let out = xf(b, &["group", "remove", "hikers", &carol]);
    assert!(failure(&out).contains("only admins"), "{out:?}");
    ok_json(a, &["group", "remove", "hikers", &carol]);
    sync(a, b);
    sync(a, c);
    ok_json(b, &["group", "send", "hikers", "carol went home"]);
    sync(b, a);
    sync(b, c);
    assert_eq!(texts(&ok_json(a, &["group", "read", "hikers"])).len(), 3);
    assert_eq!(texts(&ok_json(c, &["group", "read", "hikers"])).len(), 2);
    let out = xf(c, &["group", "send", "hikers", "hello?"]);
    assert!(failure(&out).contains("not a member"), "{out:?}");
    // Bob leaves; the group goes on with Alice alone.
    ok_json(b, &["group", "leave", "hikers"]);
    let out = xf(b, &["group", "send", "hikers", "still here"]);
    failure(&out);
    // Unknown and ambiguous names are refused with a reason.
    let out = xf(a, &["group", "read", "no-such-group"]);
    assert!(failure(&out).contains("no conversation"), "{out:?}");
    // Key renewal works and the group still talks.
    ok_json(a, &["group", "update-keys"]);
    ok_json(a, &["group", "send", "hikers", "after renewal"]);
    assert_eq!(
        texts(&ok_json(a, &["group", "read", "hikers"]))
            .last()
            .unwrap(),
        "after renewal"
    );
}

#[test]
fn a_dm_to_an_author_without_a_key_bundle_says_what_to_do() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    init(dirs[0].path());
    let stranger = init(dirs[1].path());
    let out = xf(dirs[0].path(), &["dm", &stranger, "hello"]);
    let err = failure(&out);
    assert!(err.contains("no key bundle"), "{err}");
}
