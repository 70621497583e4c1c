//! Commands carry ids: a `sync_with` reports to its caller alone (the app's reports stay
//! where they are) and the reports it causes carry its id; a dial and a sync round are
//! matched the same way; a scope's time window narrows what moves.

mod common;

use std::time::{Duration, Instant};

use common::{events, now_ms, root};

use xaeroflux_event::{PublicKey, VerifiedEvent};
use xaeroflux_net::{
    MemoryHub, Multiaddr, NetConfig, NetEvent, NetHandle, RequestId, SyncProgress, SyncWithError,
};
use xaeroflux_store::Store;
use xaeroflux_sync::Scope;

struct Node {
    store: Store,
    net: NetHandle,
    _dir: tempfile::TempDir,
}

/// A node on `hub` that runs no rounds of its own: every session here is one asked for.
fn node(hub: &MemoryHub, seed: u8, initial: &[VerifiedEvent]) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    if !initial.is_empty() {
        store.ingest(initial.to_vec()).unwrap();
    }
    let peer = xaeroflux_net::keypair_from_seed(&[seed; 32])
        .public()
        .to_peer_id();
    let cfg = NetConfig {
        mdns: false,
        anti_entropy: Duration::from_secs(3600),
        ..NetConfig::default()
    };
    let net = NetHandle::start_memory(store.clone(), hub, peer, cfg).unwrap();
    Node {
        store,
        net,
        _dir: dir,
    }
}

/// Reads reports until `f` picks one, or fails after `limit`.
fn wait_for<T>(net: &NetHandle, limit: Duration, mut f: impl FnMut(&NetEvent) -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match net.events().recv_timeout(left) {
            Ok(ev) => {
                if let Some(v) = f(&ev) {
                    return v;
                }
                seen.push(ev);
            }
            Err(_) => panic!("no matching report within {limit:?}; saw {seen:#?}"),
        }
    }
}

#[test]
fn sync_with_answers_its_caller_and_tags_the_reports_it_causes() {
    let hub = MemoryHub::new();
    // Posts `base + i` ms for i in 0..400 (the fixture's clock, minutes in the past).
    let evs = events(1, 0, 400, "t");
    let base = evs.iter().map(|e| e.as_ref().created_at()).min().unwrap();
    let a = node(&hub, 41, &evs);
    let b = node(&hub, 42, &[]);
    let a_addr: Multiaddr = a
        .net
        .wait_listening("/memory/", Duration::from_secs(5))
        .unwrap();

    // A window of 100 posts: exactly those move, and the outcome reaches the caller.
    let scope = Scope {
        since: Some(base + 100),
        until: Some(base + 199),
        ..Scope::all()
    };
    let request = b.net.sync_with(a_addr.clone(), scope).unwrap();
    let id = request.id();
    let summary = request.wait(Duration::from_secs(20)).unwrap();
    assert_eq!(summary.requests, vec![id]);
    assert_eq!(summary.peer, a.net.peer_id());
    assert_eq!(summary.stats.events_received, 100);
    assert_eq!(root(&b.store).1, 100);
    // The app's reports were left alone, and they carry the id.
    let dialed = wait_for(&b.net, Duration::from_secs(5), |ev| match ev {
        NetEvent::Dialed { request, peer } => Some((*request, *peer)),
        _ => None,
    });
    assert_eq!(dialed, (id, a.net.peer_id()));
    let synced = wait_for(&b.net, Duration::from_secs(5), |ev| match ev {
        NetEvent::Synced(s) if s.initiator => Some(s.requests.clone()),
        _ => None,
    });
    assert_eq!(synced, vec![id]);

    // Connected already: the same address is not dialed again, and a whole sync moves the rest.
    let mut request = b.net.sync_with(a_addr.clone(), Scope::all()).unwrap();
    let second = request.id();
    assert_ne!(second, id);
    match request.next(Duration::from_secs(10)) {
        Some(SyncProgress::Connected(p)) => assert_eq!(p, a.net.peer_id()),
        other => panic!("expected Connected, got {other:?}"),
    }
    let summary = request.wait(Duration::from_secs(20)).unwrap();
    assert_eq!(summary.stats.events_received, 300);
    assert_eq!(root(&b.store), root(&a.store));

    // A dial's outcome carries its id, also when the peer is connected already.
    let dial = b.net.dial(a_addr.clone()).unwrap();
    let reached = wait_for(&b.net, Duration::from_secs(5), |ev| match ev {
        NetEvent::Dialed { request, peer } if *request == dial => Some(*peer),
        _ => None,
    });
    assert_eq!(reached, a.net.peer_id());

    // A round names the peers it opens sessions with; each session's report carries its id.
    let round = b.net.sync_now().unwrap();
    let peers = wait_for(&b.net, Duration::from_secs(5), |ev| match ev {
        NetEvent::SyncRound { request, peers } if *request == round => Some(peers.clone()),
        _ => None,
    });
    assert_eq!(peers, vec![a.net.peer_id()]);
    let answered: Vec<RequestId> = wait_for(&b.net, Duration::from_secs(20), |ev| match ev {
        NetEvent::Synced(s) if s.initiator && s.requests.contains(&round) => {
            Some(s.requests.clone())
        }
        NetEvent::SyncFailed {
            requests, error, ..
        } if requests.contains(&round) => {
            panic!("the round's session failed: {error}")
        }
        _ => None,
    });
    assert_eq!(answered, vec![round]);
}

#[test]
fn sync_with_refuses_what_it_cannot_do_and_reports_a_failed_dial() {
    let hub = MemoryHub::new();
    let b = node(&hub, 43, &[]);
    let addr: Multiaddr = "/memory/999999".parse().unwrap();
    let authors = Scope {
        authors: vec![PublicKey([7; 32])],
        ..Scope::all()
    };
    assert_eq!(
        b.net.sync_with(addr.clone(), authors).unwrap_err(),
        SyncWithError::AuthorsScope
    );
    let empty = Scope {
        since: Some(now_ms()),
        until: Some(now_ms() - 1000),
        ..Scope::all()
    };
    assert_eq!(
        b.net.sync_with(addr.clone(), empty).unwrap_err(),
        SyncWithError::EmptyWindow
    );
    let request = b.net.sync_with(addr.clone(), Scope::all()).unwrap();
    let id = request.id();
    match request.wait(Duration::from_secs(10)) {
        Err(SyncWithError::Dial { addr: a, error }) => {
            assert_eq!(a, addr);
            assert!(error.contains("nobody at"), "{error}");
        }
        other => panic!("expected a failed dial, got {other:?}"),
    }
    let failed = wait_for(&b.net, Duration::from_secs(5), |ev| match ev {
        NetEvent::DialFailed { request, .. } => Some(*request),
        _ => None,
    });
    assert_eq!(failed, Some(id));
}
