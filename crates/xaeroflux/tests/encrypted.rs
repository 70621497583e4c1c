//! An encrypted node: a new user's directory holds nothing readable without the passphrase
//! (the events, the author key, the network key); the wrong passphrase opens nothing and
//! changes nothing; a changed passphrase rewraps the key and rewrites no data; a plain store
//! opens whether or not a passphrase is given.

mod common;

use std::path::Path;
use std::time::Duration;

use common::pass;

use xaeroflux::{keys, KeyError, NetConfig, Node, NodeOpenError, PeerId, Topic};

const TEXT: &str = "meet me by the old lighthouse 4417";
const TOPIC: &str = "harbour-watchers";

fn config() -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()],
        mdns: false,
        anti_entropy: Duration::from_secs(3600),
        ..NetConfig::default()
    }
}

fn open(dir: &Path, secret: &str) -> Result<Node, NodeOpenError> {
    Node::builder()
        .data_dir(dir)
        .create_identity(true)
        .key_provider(pass(secret))
        .open()
}

/// True if the node's store holds the event.
fn holds(node: &Node, id: &xaeroflux::EventId) -> bool {
    node.store().read().unwrap().get(id).unwrap().is_some()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file's bytes, by name.
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

#[test]
fn a_new_users_directory_gives_nothing_away() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), "correct horse").unwrap();
    assert!(node.store().is_encrypted());
    let me = xaeroflux::Identity::from_seed(&node.identity().unwrap().seed());
    let post = node.post(TEXT, None, None).unwrap();
    let in_topic = node
        .post("tide at six", Some(Topic::named(TOPIC)), None)
        .unwrap();
    node.react(post.id, "+").unwrap();
    node.close().unwrap();
    // The network key too: the node joins the network once.
    let networked = Node::builder()
        .data_dir(dir.path())
        .key_provider(pass("correct horse"))
        .network(config())
        .open()
        .unwrap();
    let peer: PeerId = networked.net().unwrap().peer_id();
    networked.close().unwrap();

    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("post text".into(), TEXT.as_bytes().to_vec()),
        ("topic name".into(), TOPIC.as_bytes().to_vec()),
        ("author seed".into(), me.seed().to_vec()),
        ("peer id".into(), peer.to_bytes()),
        ("peer id (text)".into(), peer.to_string().into_bytes()),
    ];
    for (what, raw) in [
        ("author key", me.public_key().0),
        ("post id", post.id.0),
        ("topic post id", in_topic.id.0),
        ("topic id", Topic::named(TOPIC).0),
    ] {
        needles.push((format!("{what} (raw)"), raw.to_vec()));
        needles.push((format!("{what} (hex)"), hex(&raw).into_bytes()));
    }
    let names: Vec<String> = files(dir.path()).into_iter().map(|(n, _)| n).collect();
    for expected in ["data.mdb", "data.key", "identity.key", "network.key"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    for (name, bytes) in files(dir.path()) {
        for (what, needle) in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == &needle[..]),
                "{name} holds the {what}"
            );
        }
    }

    // The same user and events come back with the passphrase.
    let again = open(dir.path(), "correct horse").unwrap();
    assert_eq!(again.identity().unwrap().public_key(), me.public_key());
    assert!(holds(&again, &post.id));
}

#[test]
fn a_wrong_or_missing_passphrase_opens_nothing_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), "correct horse").unwrap();
    node.post("hello", None, None).unwrap();
    node.close().unwrap();
    let before = files(dir.path());
    match open(dir.path(), "battery staple") {
        Err(NodeOpenError::Key(KeyError::WrongKey)) => {}
        other => panic!("expected a wrong key, got {other:?}"),
    }
    match Node::builder().data_dir(dir.path()).open() {
        Err(NodeOpenError::KeyRequired { .. }) => {}
        other => panic!("expected a key to be required, got {other:?}"),
    }
    let after = files(dir.path());
    let data = |fs: &[(String, Vec<u8>)]| {
        fs.iter()
            .filter(|(n, _)| n != "lock.mdb")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(data(&before), data(&after), "a refused open changed a file");
}

#[test]
fn changing_the_passphrase_rewraps_the_key_and_rewrites_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), "old secret").unwrap();
    let post = node.post("kept", None, None).unwrap();
    node.close().unwrap();
    let data_before = std::fs::read(dir.path().join("data.mdb")).unwrap();
    keys::rewrap(dir.path(), &*pass("old secret"), &*pass("new secret")).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("data.mdb")).unwrap(),
        data_before
    );
    assert!(matches!(
        open(dir.path(), "old secret"),
        Err(NodeOpenError::Key(KeyError::WrongKey))
    ));
    let node = open(dir.path(), "new secret").unwrap();
    assert!(holds(&node, &post.id));
}

#[test]
fn a_plain_store_opens_with_or_without_a_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::builder()
        .data_dir(dir.path())
        .create_identity(true)
        .open()
        .unwrap();
    let post = node.post("plain", None, None).unwrap();
    node.close().unwrap();
    let node = open(dir.path(), "anything").unwrap();
    assert!(!node.store().is_encrypted());
    assert!(holds(&node, &post.id));
    assert!(!dir.path().join(keys::KEY_FILE).exists());
}

#[test]
fn the_peer_table_of_an_encrypted_node_is_sealed() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let net = |secret: &str, dir: &Path| {
        Node::builder()
            .data_dir(dir)
            .create_identity(true)
            .key_provider(pass(secret))
            .network(config())
            .open()
            .unwrap()
    };
    let a = net("a's passphrase", da.path());
    a.post("for b", None, None).unwrap();
    let addr = a
        .net()
        .unwrap()
        .wait_listening("/quic-v1", Duration::from_secs(10))
        .unwrap();
    let a_peer = a.net().unwrap().peer_id();
    let b = net("b's passphrase", db.path());
    b.sync_with(addr, xaeroflux::Scope::all())
        .unwrap()
        .wait(Duration::from_secs(30))
        .unwrap();
    b.close().unwrap();
    a.close().unwrap();
    let table = std::fs::read(db.path().join(xaeroflux::PEERS_FILE)).unwrap();
    for needle in [
        a_peer.to_bytes(),
        a_peer.to_string().into_bytes(),
        b"127.0.0.1".to_vec(),
    ] {
        assert!(
            !table.windows(needle.len()).any(|w| w == &needle[..]),
            "the peer table holds {}",
            String::from_utf8_lossy(&needle)
        );
    }
    // With b's passphrase it reads as the table it is; without, or with another, not at all.
    let text =
        xaeroflux::read_peers_file(db.path(), Some(&*pass("b's passphrase")), false).unwrap();
    assert!(text.contains(&a_peer.to_string()), "{text}");
    assert!(matches!(
        xaeroflux::read_peers_file(db.path(), None, false),
        Err(NodeOpenError::KeyRequired { .. })
    ));
    assert!(matches!(
        xaeroflux::read_peers_file(db.path(), Some(&*pass("a's passphrase")), false),
        Err(NodeOpenError::Key(KeyError::WrongKey))
    ));
}
