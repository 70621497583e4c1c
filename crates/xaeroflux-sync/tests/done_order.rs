//! A session's end says what was delivered: the responder sends `Done` only after the
//! initiator's, so an initiator that finishes knows the responder received everything it sent
//! (a network driver also holds that `Done` until the events are stored).

mod common;

use common::{pool, split, NOW_MS};
use xaeroflux_sync::{MemStore, Scope, Session, SyncConfig};

/// Runs a session frame by frame, the responder speaking first in every turn (so it is never
/// held back by the order of delivery). Returns whether the responder had received the
/// initiator's `Done` at the moment the initiator finished.
fn run(a: &mut MemStore, b: &mut MemStore) -> bool {
    let cfg = SyncConfig::default();
    let mut ini = Session::initiator(cfg, Scope::all(), 7);
    let mut res = Session::responder(cfg);
    ini.start(a).unwrap();
    let mut responder_had_done = None;
    let mut quiet_turns = 0;
    while !(ini.is_finished() && res.is_finished()) {
        let mut moved = false;
        while let Some(f) = res.poll_frame(b).unwrap() {
            moved = true;
            for e in ini.handle_frame(a, &f, NOW_MS).unwrap().events {
                a.insert(&e);
            }
            if ini.is_finished() && responder_had_done.is_none() {
                responder_had_done = Some(res.peer_done());
            }
        }
        while let Some(f) = ini.poll_frame(a).unwrap() {
            moved = true;
            // Finished on sending its own Done: the responder's came first.
            if ini.is_finished() && responder_had_done.is_none() {
                responder_had_done = Some(res.peer_done());
            }
            for e in res.handle_frame(b, &f, NOW_MS).unwrap().events {
                b.insert(&e);
            }
        }
        quiet_turns = if moved { 0 } else { quiet_turns + 1 };
        assert!(quiet_turns < 3, "the session stalled");
    }
    assert_eq!(a.len(), b.len(), "both sides end with the union");
    responder_had_done.expect("the initiator finished")
}

#[test]
fn the_responder_is_done_only_after_the_initiator() {
    let all = pool();
    // Both directions carry events: each side holds half the pool, overlapping a quarter.
    let mask: Vec<u8> = (0..all.len()).map(|i| [1, 2, 3, 3][i % 4]).collect();
    let (mut a, mut b) = split(&mask);
    assert!(
        run(&mut a, &mut b),
        "the initiator finished on a Done the responder sent before receiving the initiator's"
    );
}
