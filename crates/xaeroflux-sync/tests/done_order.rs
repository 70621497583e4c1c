//! A session's end says what was delivered: the responder sends `Done` only after the
//! initiator's, so an initiator that finishes knows the responder received everything it sent
//! (a network driver also holds that `Done` until the events are stored).

mod common;

use common::{pool, receive, split};
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
            for e in receive(&mut ini, a, &f).unwrap() {
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
            for e in receive(&mut res, b, &f).unwrap() {
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

/// A side that has handed out a batch for verification does not say `Done` until the batch is
/// settled, and the session is not finished before.
#[test]
fn done_waits_for_every_batch_to_be_settled() {
    let all = pool();
    let mask: Vec<u8> = (0..all.len()).map(|i| [1, 3][i % 2]).collect();
    let (mut a, mut b) = split(&mask);
    let cfg = xaeroflux_sync::SyncConfig::default();
    let mut ini = Session::initiator(cfg, Scope::all(), 9);
    let mut res = Session::responder(cfg);
    ini.start(&a).unwrap();
    let mut held = Vec::new();
    let mut quiet_turns = 0;
    while !res.peer_done() {
        let mut moved = false;
        while let Some(f) = res.poll_frame(&b).unwrap() {
            moved = true;
            for e in receive(&mut ini, &a, &f).unwrap() {
                a.insert(&e);
            }
        }
        while let Some(f) = ini.poll_frame(&a).unwrap() {
            moved = true;
            // The responder keeps every batch unsettled for now.
            let got = res.handle_frame(&b, &f, common::NOW_MS).unwrap();
            held.extend(got.unverified);
        }
        quiet_turns = if moved { 0 } else { quiet_turns + 1 };
        assert!(quiet_turns < 3, "the session stalled");
    }
    assert!(!held.is_empty(), "the initiator sent events");
    assert_eq!(res.unsettled(), held.len());
    assert_eq!(res.poll_frame(&b).unwrap(), None, "no Done while unsettled");
    assert!(!res.is_finished());
    let last = held.pop().expect("one batch at least");
    for batch in held {
        for e in batch
            .verify_with(&mut res, xaeroflux_event::verify_batch)
            .unwrap()
        {
            b.insert(&e);
        }
        assert_eq!(res.poll_frame(&b).unwrap(), None, "still one unsettled");
    }
    for e in last
        .verify_with(&mut res, xaeroflux_event::verify_batch)
        .unwrap()
    {
        b.insert(&e);
    }
    let done = res
        .poll_frame(&b)
        .unwrap()
        .expect("Done once all is settled");
    assert!(receive(&mut ini, &a, &done).unwrap().is_empty());
    assert!(ini.is_finished() && res.is_finished());
    assert_eq!(a.len(), b.len());
    assert_eq!(res.stats().missing, 0);
}

/// Results that do not belong to the batch are refused as the driver's mistake, not the
/// peer's.
#[test]
fn settling_with_the_wrong_results_is_refused() {
    let all = pool();
    let mask: Vec<u8> = (0..all.len()).map(|i| [1, 3][i % 2]).collect();
    let (a, b) = split(&mask);
    let cfg = xaeroflux_sync::SyncConfig::default();
    let mut ini = Session::initiator(cfg, Scope::all(), 11);
    let mut res = Session::responder(cfg);
    ini.start(&a).unwrap();
    for _ in 0..20 {
        while let Some(f) = res.poll_frame(&b).unwrap() {
            receive(&mut ini, &a, &f).unwrap();
        }
        while let Some(f) = ini.poll_frame(&a).unwrap() {
            if let Some(batch) = res.handle_frame(&b, &f, common::NOW_MS).unwrap().unverified {
                let (items, claim) = batch.into_parts();
                let mut results = xaeroflux_event::verify_batch(items, &claim.limits());
                results.reverse();
                let wrong = if results.len() > 1 {
                    results
                } else {
                    Vec::new()
                };
                assert!(matches!(
                    res.settle(claim, wrong),
                    Err(xaeroflux_sync::SyncError::Unmatched)
                ));
                return;
            }
        }
    }
    panic!("no events arrived");
}
