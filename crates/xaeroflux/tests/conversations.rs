//! Private conversations on nodes: three people talk in a group through a relay that is not a
//! member; the relay's files (a plain store) hold no text and no conversation secret; a removed
//! member reads nothing after its removal; a restart loses nothing; a re-encrypted store keeps
//! its conversations.

mod common;

use std::path::Path;

use common::pass;
use xaeroflux::{ConvoId, Identity, Node, PublicKey, Scope, SyncConfig};

fn node(dir: &Path, seed: u8) -> Node {
    Node::builder()
        .data_dir(dir)
        .identity(Identity::from_seed(&[seed; 32]))
        .key_provider(pass(&format!("pass {seed}")))
        .open()
        .unwrap()
}

fn plain_node(dir: &Path, seed: u8) -> Node {
    Node::builder()
        .data_dir(dir)
        .identity(Identity::from_seed(&[seed; 32]))
        .open()
        .unwrap()
}

fn key(n: &Node) -> PublicKey {
    n.identity().unwrap().public_key()
}

/// Everyone syncs with the relay, twice (so what one brought reaches the others).
fn through_relay(people: &[&Node], relay: &Node) {
    for _ in 0..2 {
        for p in people {
            let done = p
                .sync_with_store(relay.store(), &Scope::all(), SyncConfig::default())
                .unwrap();
            assert!(done.equal());
        }
    }
}

fn texts(n: &Node, g: &ConvoId) -> Vec<String> {
    n.group_read(g)
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect()
}

fn files(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.extend(std::fs::read(path).unwrap());
        }
    }
    all
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_group_talks_through_a_relay_that_learns_nothing() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let alice = node(dirs[0].path(), 1);
    let bob = node(dirs[1].path(), 2);
    let carol = node(dirs[2].path(), 3);
    let relay = plain_node(dirs[3].path(), 4);
    // Everyone publishes a key bundle with their first conversation call.
    for p in [&alice, &bob, &carol] {
        assert!(p.conversations().unwrap().is_empty());
    }
    through_relay(&[&alice, &bob, &carol], &relay);

    let g = alice.group_create("night hikers").unwrap();
    alice
        .group_add(&g, &[key(&bob), key(&carol)], false)
        .unwrap();
    through_relay(&[&alice, &bob, &carol], &relay);
    let texts_sent = [
        "the wombat trail at 21:40",
        "bringing two headlamps",
        "meet by the ranger hut",
    ];
    alice.group_send(&g, texts_sent[0]).unwrap();
    through_relay(&[&alice, &bob, &carol], &relay);
    bob.group_send(&g, texts_sent[1]).unwrap();
    through_relay(&[&alice, &bob, &carol], &relay);
    carol.group_send(&g, texts_sent[2]).unwrap();
    through_relay(&[&alice, &bob, &carol], &relay);
    for p in [&alice, &bob, &carol] {
        assert_eq!(texts(p, &g), texts_sent);
        let info = &p.conversations().unwrap()[0];
        assert_eq!(info.name, "night hikers");
        assert_eq!(info.members.len(), 3);
    }
    // The relay holds every envelope and reads none.
    let relay_view = relay.conversations().unwrap();
    assert!(relay_view.is_empty(), "{relay_view:?}");
    let held = files(dirs[3].path());
    for t in texts_sent {
        assert!(
            !contains(&held, t.as_bytes()),
            "the relay's files hold {t:?}"
        );
    }
    assert!(!contains(&held, b"night hikers"));
    for p in [&alice, &bob, &carol] {
        for secret in p.conversation_secrets().unwrap() {
            assert!(
                !contains(&held, &secret),
                "the relay's files hold a member's secret"
            );
        }
    }
    // The members' own stores are encrypted: their files hold no text either.
    let alice_files = files(dirs[0].path());
    for t in texts_sent {
        assert!(!contains(&alice_files, t.as_bytes()));
    }

    // Alice removes Carol: Carol reads nothing sent after.
    alice.group_remove(&g, &[key(&carol)]).unwrap();
    through_relay(&[&alice, &bob, &carol], &relay);
    bob.group_send(&g, "carol has gone home").unwrap();
    alice.group_send(&g, "so she has").unwrap();
    through_relay(&[&alice, &bob, &carol], &relay);
    assert_eq!(
        texts(&bob, &g).len(),
        5,
        "{:?} / {:?} / {:?}",
        texts(&bob, &g),
        texts(&alice, &g),
        bob.conversations_catch_up().unwrap()
    );
    assert_eq!(texts(&alice, &g), texts(&bob, &g));
    assert_eq!(texts(&carol, &g), texts_sent);
    assert!(!carol.conversations().unwrap()[0].member);
    assert!(carol.group_send(&g, "wait").is_err());

    // A restart loses nothing.
    drop(bob);
    let bob = node(dirs[1].path(), 2);
    assert_eq!(texts(&bob, &g).len(), 5);
    bob.group_send(&g, "after a restart").unwrap();
    through_relay(&[&alice, &bob], &relay);
    assert_eq!(texts(&alice, &g).last().unwrap(), "after a restart");
}

#[test]
fn a_direct_message_reaches_an_author_who_was_offline() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let alice = node(dirs[0].path(), 1);
    let bob = node(dirs[1].path(), 2);
    // Bob has published his bundle once, then goes offline.
    bob.conversations().unwrap();
    alice
        .sync_with_store(bob.store(), &Scope::all(), SyncConfig::default())
        .unwrap();
    drop(bob);
    let dm = alice
        .dm(
            &PublicKey(Identity::from_seed(&[2; 32]).public_key().0),
            "are you there?",
        )
        .unwrap();
    let bob = node(dirs[1].path(), 2);
    alice
        .sync_with_store(bob.store(), &Scope::all(), SyncConfig::default())
        .unwrap();
    assert_eq!(texts(&bob, &dm), vec!["are you there?"]);
    let info = &bob.conversations().unwrap()[0];
    assert_eq!(info.direct, Some(key(&alice).0));
}

#[test]
fn a_store_encrypted_again_keeps_its_conversations() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let alice = plain_node(dirs[0].path(), 1);
    let bob = plain_node(dirs[1].path(), 2);
    bob.conversations().unwrap();
    alice
        .sync_with_store(bob.store(), &Scope::all(), SyncConfig::default())
        .unwrap();
    let dm = alice.dm(&key(&bob), "first").unwrap();
    alice
        .sync_with_store(bob.store(), &Scope::all(), SyncConfig::default())
        .unwrap();
    assert_eq!(texts(&bob, &dm), vec!["first"]);
    drop(bob);
    // Bob encrypts his store; his conversation carries over.
    let new = pass("new pass");
    xaeroflux::reseal(dirs[1].path(), None, &*new, |_| {}).unwrap();
    let bob = Node::builder()
        .data_dir(dirs[1].path())
        .identity(Identity::from_seed(&[2; 32]))
        .key_provider(new)
        .open()
        .unwrap();
    assert_eq!(texts(&bob, &dm), vec!["first"]);
    bob.dm(&key(&alice), "second").unwrap();
    alice
        .sync_with_store(bob.store(), &Scope::all(), SyncConfig::default())
        .unwrap();
    assert_eq!(texts(&alice, &dm), vec!["first", "second"]);
}
