//! `Node::sync_with_store`: two stores on one machine end with the same set, a scope moves only
//! its events, and mistakes are refused before anything moves.

use xaeroflux::{Identity, LocalSyncError, Node, Scope, SyncConfig};

fn node(dir: &std::path::Path, seed: u8) -> Node {
    Node::builder()
        .data_dir(dir)
        .identity(Identity::from_seed(&[seed; 32]))
        .open()
        .unwrap()
}

#[test]
fn two_stores_end_with_the_same_set() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = node(dirs[0].path(), 1);
    let b = node(dirs[1].path(), 2);
    for i in 0..30 {
        a.post(&format!("a {i}"), None, None).unwrap();
    }
    for i in 0..20 {
        b.post(&format!("b {i}"), None, None).unwrap();
    }
    let done = a
        .sync_with_store(b.store(), &Scope::all(), SyncConfig::default())
        .unwrap();
    assert!(done.equal());
    assert_eq!(done.here.fingerprint, done.there.fingerprint);
    assert_eq!(done.here.accum.count, 50);
    assert_eq!(done.report.initiator.events_sent, 30);
    assert_eq!(done.report.initiator.events_received, 20);
    assert!(done.durable >= done.session);
    // Nothing left to move.
    let again = a
        .sync_with_store(b.store(), &Scope::all(), SyncConfig::default())
        .unwrap();
    assert_eq!(again.report.initiator.events_sent, 0);
    assert_eq!(again.report.initiator.events_received, 0);
}

#[test]
fn a_scope_moves_only_its_events_and_mistakes_are_refused() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = node(dirs[0].path(), 1);
    let b = node(dirs[1].path(), 2);
    a.post("by a", None, None).unwrap();
    let carol = Identity::from_seed(&[3; 32]).public_key();
    let scope = Scope {
        authors: vec![carol],
        ..Scope::all()
    };
    let done = a
        .sync_with_store(b.store(), &scope, SyncConfig::default())
        .unwrap();
    assert!(done.equal());
    assert_eq!(
        done.report.initiator.events_sent, 0,
        "a's post is not carol's"
    );
    assert_eq!(b.store().read().unwrap().stats().unwrap().events, 0);

    let empty = Scope {
        since: Some(10),
        until: Some(5),
        ..Scope::all()
    };
    assert!(matches!(
        a.sync_with_store(b.store(), &empty, SyncConfig::default()),
        Err(LocalSyncError::EmptyWindow)
    ));
    assert!(matches!(
        a.sync_with_store(a.store(), &Scope::all(), SyncConfig::default()),
        Err(LocalSyncError::SameStore)
    ));
}
