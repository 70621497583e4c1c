//! The node's network key is its own: never the author's, stored in `network.key` (private),
//! kept across restarts, replaced on request, or fresh for one start.

use std::time::Duration;

use xaeroflux::{NetConfig, NetworkIdentity, Node, PeerId, NETWORK_KEY_FILE};

fn config() -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()],
        mdns: false,
        anti_entropy: Duration::from_secs(3600),
        ..NetConfig::default()
    }
}

fn peer_of(dir: &std::path::Path, which: NetworkIdentity, author: bool) -> PeerId {
    let node = Node::builder()
        .data_dir(dir)
        .create_identity(author)
        .network(config())
        .network_identity(which)
        .open()
        .unwrap();
    let peer = node.net().unwrap().peer_id();
    node.close().unwrap();
    peer
}

#[test]
fn the_network_key_is_apart_from_the_author_and_stays_until_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let stored = peer_of(dir.path(), NetworkIdentity::Stored, true);
    let author = Node::builder()
        .data_dir(dir.path())
        .open()
        .unwrap()
        .identity()
        .unwrap()
        .seed();
    let author_peer = xaeroflux_net::keypair_from_seed(&author)
        .public()
        .to_peer_id();
    assert_ne!(stored, author_peer, "the peer id is the author key");
    let public = xaeroflux_event::Identity::from_seed(&author).public_key();
    assert!(
        !stored.to_bytes().windows(32).any(|w| w == public.0),
        "the peer id holds the author key"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(dir.path().join(NETWORK_KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    // Kept across restarts.
    assert_eq!(peer_of(dir.path(), NetworkIdentity::Stored, true), stored);
    // Fresh: new for one start, the stored key untouched.
    let fresh = peer_of(dir.path(), NetworkIdentity::Fresh, true);
    assert_ne!(fresh, stored);
    assert_ne!(peer_of(dir.path(), NetworkIdentity::Fresh, true), fresh);
    assert_eq!(peer_of(dir.path(), NetworkIdentity::Stored, true), stored);
    // Rotated: new, and stored from now on.
    let rotated = peer_of(dir.path(), NetworkIdentity::Rotate, true);
    assert_ne!(rotated, stored);
    assert_eq!(peer_of(dir.path(), NetworkIdentity::Stored, true), rotated);

    // A node with no author identity networks all the same (a relay, a reader).
    let bare = tempfile::tempdir().unwrap();
    let peer = peer_of(bare.path(), NetworkIdentity::Stored, false);
    assert!(!bare.path().join(xaeroflux::IDENTITY_FILE).exists());
    assert_eq!(peer_of(bare.path(), NetworkIdentity::Stored, false), peer);
}
