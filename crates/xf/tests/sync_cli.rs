//! `xf sync --local` as a person runs it: two stores end with the same
//! set and the same Merkle root, a repeated sync moves nothing, a fresh store gets everything,
//! and a bad `--local` directory is refused before anything is created in it.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::{count, failure, ok_json, xf};

/// Events the shared part of the fixture holds, and their creation times' upper bound.
const SHARED_EVENTS: &str = "3000";
/// Later than every generated event (they start at 2023-11-14 and grow ≤ 2 s each), earlier
/// than anything `xf post` writes now.
const GENERATED_UNTIL_MS: u64 = 1_710_000_000_000;

struct Pair {
    _dir: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
    /// Events both stores hold.
    shared: u64,
    /// Posts only A holds.
    a_posts: Vec<String>,
    /// Posts only B holds.
    b_posts: Vec<String>,
}

fn post(data: &Path, text: &str) -> String {
    ok_json(data, &["post", text])["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Two stores with the same generated graph; A has two posts of its own, B one post and a
/// second graph (other authors) of its own.
fn overlapping() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        ok_json(d, &["init"]);
        ok_json(d, &["gen", "--events", SHARED_EVENTS, "--seed", "3"]);
    }
    let shared = count(&a);
    assert_eq!(count(&b), shared);
    let a_posts = vec![post(&a, "only in a, first"), post(&a, "only in a, second")];
    let b_posts = vec![post(&b, "only in b")];
    ok_json(
        &b,
        &["gen", "--events", "1500", "--authors", "20", "--seed", "4"],
    );
    Pair {
        _dir: dir,
        a,
        b,
        shared,
        a_posts,
        b_posts,
    }
}

fn sync(from: &Path, other: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["sync", "--local", other.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok_json(from, &args)
}

fn root(data: &Path) -> String {
    ok_json(data, &["stats"])["set"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn overlapping_stores_end_with_the_union_and_equal_roots() {
    let p = overlapping();
    let (before_a, before_b) = (count(&p.a), count(&p.b));
    assert_ne!(root(&p.a), root(&p.b));
    let r = sync(&p.a, &p.b, &[]);
    assert_eq!(r["equal"], true, "{r}");
    assert_eq!(r["set"]["equal"], true, "{r}");
    assert_eq!(r["sent"]["events"], before_a - p.shared, "{r}");
    assert_eq!(r["received"]["events"], before_b - p.shared, "{r}");
    let union = before_a + before_b - p.shared;
    assert_eq!(count(&p.a), union);
    assert_eq!(count(&p.b), union);
    assert_eq!(r["set"]["here"]["events"], union);
    // The roots `xf stats` shows are the ones the sync reported.
    let fp = r["set"]["here"]["fingerprint"].as_str().unwrap();
    assert_eq!(root(&p.a), fp);
    assert_eq!(root(&p.b), fp);
    for id in &p.a_posts {
        assert_eq!(ok_json(&p.b, &["get", id])["id"], id.as_str());
    }
    for id in &p.b_posts {
        assert_eq!(ok_json(&p.a, &["get", id])["id"], id.as_str());
    }
    let trips = r["round_trips"].as_u64().unwrap();
    assert!((1..=10).contains(&trips), "{r}");
    assert!(r["sent"]["recon_bytes"].as_u64().unwrap() > 0);
    for d in [&p.a, &p.b] {
        assert_eq!(ok_json(d, &["verify"])["ok"], true);
    }
}

#[test]
fn a_second_sync_moves_nothing() {
    let p = overlapping();
    sync(&p.a, &p.b, &[]);
    // Either side may start the second session.
    for (from, other) in [(&p.a, &p.b), (&p.b, &p.a)] {
        let r = sync(from, other, &[]);
        assert_eq!(r["sent"]["events"], 0, "{r}");
        assert_eq!(r["received"]["events"], 0, "{r}");
        assert_eq!(r["round_trips"], 1, "{r}");
        assert_eq!(r["equal"], true, "{r}");
    }
}

#[test]
fn a_fresh_store_gets_everything_either_way() {
    let p = overlapping();
    let n = count(&p.a);
    // A data directory with no store yet, starting the session: it pulls everything.
    let fresh = p.a.with_file_name("fresh");
    let r = sync(&fresh, &p.a, &[]);
    assert_eq!(r["received"]["events"], n, "{r}");
    assert_eq!(r["sent"]["events"], 0, "{r}");
    assert_eq!(count(&fresh), n);
    assert_eq!(root(&fresh), root(&p.a));
    // An empty store answering: it is sent everything.
    let empty = p.a.with_file_name("empty");
    ok_json(&empty, &["init"]);
    let r = sync(&p.a, &empty, &[]);
    assert_eq!(r["sent"]["events"], n, "{r}");
    assert_eq!(count(&empty), n);
    assert_eq!(root(&empty), root(&p.a));
}

#[test]
fn a_time_window_moves_only_that_window() {
    let p = overlapping();
    let until = GENERATED_UNTIL_MS.to_string();
    let r = sync(&p.a, &p.b, &["--since", "0", "--until", &until]);
    assert_eq!(r["scoped"]["equal"], true, "{r}");
    assert_eq!(r["equal"], true, "{r}");
    assert_eq!(
        r["set"]["equal"], false,
        "posts of today stay where they are: {r}"
    );
    assert_eq!(r["sent"]["events"], 0, "{r}");
    // B's second graph moved; its post of today did not.
    assert_eq!(r["received"]["events"], count(&p.b) - p.shared - 1, "{r}");
    let out = xf(&p.a, &["get", &p.b_posts[0]]);
    assert!(failure(&out).contains("no event"));
    let out = xf(
        &p.a,
        &[
            "sync",
            "--local",
            p.b.to_str().unwrap(),
            "--since",
            "5",
            "--until",
            "4",
        ],
    );
    // A usage mistake: exit 2, with the reason.
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since is after --until"));
}

#[test]
fn an_author_or_topic_scope_moves_only_its_events() {
    let p = overlapping();
    let b_key = ok_json(&p.b, &["init"])["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = sync(&p.a, &p.b, &["--author", &b_key]);
    assert_eq!(r["scoped"]["equal"], true, "{r}");
    assert_eq!(r["scoped"]["here"]["events"], 1, "{r}");
    assert_eq!(
        (
            r["sent"]["events"].as_u64(),
            r["received"]["events"].as_u64()
        ),
        (Some(0), Some(1)),
        "{r}"
    );
    assert_eq!(
        ok_json(&p.a, &["get", &p.b_posts[0]])["id"],
        p.b_posts[0].as_str()
    );
    assert_eq!(r["set"]["equal"], false, "the rest stays where it is: {r}");

    let in_topic = ok_json(&p.a, &["post", "about tea", "--topic", "tea"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = sync(&p.a, &p.b, &["--topic", "tea"]);
    assert_eq!(r["scoped"]["equal"], true, "{r}");
    assert_eq!(
        (
            r["sent"]["events"].as_u64(),
            r["received"]["events"].as_u64()
        ),
        (Some(1), Some(0)),
        "{r}"
    );
    assert_eq!(ok_json(&p.b, &["get", &in_topic])["id"], in_topic.as_str());
    let out = xf(&p.b, &["get", &p.a_posts[0]]);
    assert!(failure(&out).contains("no event"), "outside the topic");
}

#[test]
fn a_missing_or_foreign_other_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let me = dir.path().join("me");
    ok_json(&me, &["init"]);
    let local = |other: &Path| xf(&me, &["sync", "--local", other.to_str().unwrap()]);

    let missing = dir.path().join("missing");
    assert!(failure(&local(&missing)).contains("does not exist"));
    assert!(!missing.exists(), "nothing created");

    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("thesis.txt"), b"years of work").unwrap();
    assert!(failure(&local(&foreign)).contains("not a Xaeroflux store"));
    assert_eq!(
        std::fs::read_dir(&foreign).unwrap().count(),
        1,
        "left alone"
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(failure(&local(&empty)).contains("not a Xaeroflux store"));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "left alone");

    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    assert!(failure(&local(&file)).contains("not a directory"));

    assert!(failure(&local(&me)).contains("this store itself"));
}

/// Deletions and replaced profiles or follow lists that went one way only: the side that
/// dropped an event must not be sent it, or must take it quietly.
#[test]
fn events_dropped_on_one_side_do_not_end_the_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // A's later events replace follow lists and profiles B still holds, and delete posts.
    ok_json(&a, &["gen", "--events", "3000", "--seed", "3"]);
    ok_json(&b, &["gen", "--events", "2000", "--seed", "3"]);
    ok_json(&b, &["gen", "--events", "500", "--seed", "4"]);
    let r = sync(&a, &b, &[]);
    assert_eq!(r["equal"], true, "{r}");
    assert_eq!(count(&a), count(&b));
}
