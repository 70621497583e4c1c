//! `xf-bench convo`: private conversations, with NIP-44 beside them in the same process.
//!
//! Per message, for several plaintext sizes: the time to seal one group message (Megolm, the
//! outer AEAD, padding, a one-time author key and its signature: the envelope event as
//! published) and to open it at a member (verification of the event is not included: it is the
//! same as for any event), and the bytes the envelope adds to the plaintext. Beside them, NIP-44
//! v2 encryption and decryption of the same plaintexts under one conversation key (the `nip44`
//! crate; a Nostr gift wrap adds two such encryptions and two signed events on top).
//!
//! For a group of `--members` (default 100): the time and the bytes of an add, a remove and a
//! key update by one member, the time one other member takes to take the result in, and the
//! first message each sender sends afterwards (when Megolm rotates its session and shares the
//! new one pairwise, the real cost of a removal or an update).

use std::time::Instant;

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use xaeroflux::{Identity, VerifiedEvent};
use xaeroflux_bench::median_ns;
use xaeroflux_convo::{ConvoId, Engine, Outcome};

use crate::bench::{finish, machine};
use crate::Args;

/// Plaintext sizes measured, in bytes.
const SIZES: [usize; 5] = [32, 256, 1024, 4096, 16 * 1024];
/// Messages per size.
const MESSAGES: usize = 300;
const T0: u64 = 1_764_000_000_000;

struct Member {
    id: Identity,
    engine: Engine,
}

fn member(i: u32) -> Result<Member> {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    seed[31] = 0xc0;
    let id = Identity::from_seed(&seed);
    let engine = Engine::new(&id)?;
    Ok(Member { id, engine })
}

fn key(m: &Member) -> [u8; 32] {
    m.id.public_key().0
}

fn bytes(events: &[VerifiedEvent]) -> usize {
    events.iter().map(|e| e.as_bytes().len()).sum()
}

/// Offers envelopes until nothing more is taken; returns the time spent.
fn deliver(m: &mut Member, events: &[VerifiedEvent]) -> std::time::Duration {
    let t = Instant::now();
    let mut pending: Vec<&VerifiedEvent> = events.iter().collect();
    loop {
        let mut progress = false;
        let mut still = Vec::new();
        for e in pending {
            match m.engine.receive(e.as_ref(), T0) {
                Outcome::Accepted(_) => progress = true,
                Outcome::Pending(_) => still.push(e),
                _ => {}
            }
        }
        pending = still;
        if !progress || pending.is_empty() {
            break;
        }
    }
    t.elapsed()
}

fn text(n: usize) -> String {
    "x".repeat(n)
}

fn per_message() -> Result<Vec<Value>> {
    let mut alice = member(1)?;
    let mut bob = member(2)?;
    let bundle_a = alice.engine.key_bundle(&alice.id, T0);
    let bundle_b = bob.engine.key_bundle(&bob.id, T0);
    alice.engine.learn_bundle(bundle_b.as_ref(), T0)?;
    bob.engine.learn_bundle(bundle_a.as_ref(), T0)?;
    let g = alice.engine.create_group("bench", T0)?;
    alice.engine.add(&g, &[key(&bob)], false, T0)?;
    // The first message shares the session; what follows is the steady state measured.
    alice.engine.send(&g, "warm up", T0)?;
    let setup = alice.engine.drain_outbox();
    deliver(&mut bob, &setup);
    let mut rows = Vec::new();
    let conversation_key: [u8; 32] = {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k)?;
        k
    };
    for size in SIZES {
        let plain = text(size);
        let mut seal = Vec::with_capacity(MESSAGES);
        let mut sealed = Vec::with_capacity(MESSAGES);
        for i in 0..MESSAGES {
            let t = Instant::now();
            alice.engine.send(&g, &plain, T0 + i as u64)?;
            let mut out = alice.engine.drain_outbox();
            seal.push(t.elapsed().as_nanos() as u64);
            ensure!(out.len() == 1, "one envelope per steady-state message");
            sealed.push(out.remove(0));
        }
        let mut open = Vec::with_capacity(MESSAGES);
        for e in &sealed {
            let t = Instant::now();
            let o = bob.engine.receive(e.as_ref(), T0);
            open.push(t.elapsed().as_nanos() as u64);
            ensure!(matches!(o, Outcome::Accepted(_)), "bob reads it: {o:?}");
        }
        let event_bytes = sealed[0].as_bytes().len();
        let payload_bytes = sealed[0].as_ref().payload().len();
        // NIP-44 v2 on the same plaintext.
        let mut nip_seal = Vec::with_capacity(MESSAGES);
        let mut nip_open = Vec::with_capacity(MESSAGES);
        let mut nip_len = 0;
        for _ in 0..MESSAGES {
            let t = Instant::now();
            let c = nip44::encrypt(&conversation_key, &plain)?;
            nip_seal.push(t.elapsed().as_nanos() as u64);
            let t = Instant::now();
            let back = nip44::decrypt(&conversation_key, &c)?;
            nip_open.push(t.elapsed().as_nanos() as u64);
            ensure!(back.len() == size);
            nip_len = c.len();
        }
        let us = |v: &mut Vec<u64>| median_ns(v) as f64 / 1e3;
        rows.push(json!({
            "plaintext_bytes": size,
            "seal_us": us(&mut seal),
            "open_us": us(&mut open),
            "envelope_event_bytes": event_bytes,
            "envelope_payload_bytes": payload_bytes,
            "overhead_event_bytes": event_bytes - size,
            "nip44_seal_us": us(&mut nip_seal),
            "nip44_open_us": us(&mut nip_open),
            "nip44_payload_bytes": nip_len,
            "nip44_overhead_bytes": nip_len - size,
        }));
    }
    Ok(rows)
}

/// A settled group of `n`: every member holds the group, and every sender key is shared.
fn settled_group(n: u32) -> Result<(Vec<Member>, ConvoId)> {
    let mut members: Vec<Member> = (0..n).map(member).collect::<Result<_>>()?;
    let bundles: Vec<VerifiedEvent> = members
        .iter()
        .map(|m| m.engine.key_bundle(&m.id, T0))
        .collect();
    for m in &mut members {
        for b in &bundles {
            m.engine.learn_bundle(b.as_ref(), T0)?;
        }
    }
    let g = members[0].engine.create_group("bench group", T0)?;
    let others: Vec<[u8; 32]> = members[1..].iter().map(key).collect();
    members[0].engine.add(&g, &others, false, T0)?;
    let invitations = members[0].engine.drain_outbox();
    for m in &mut members[1..] {
        deliver(m, &invitations);
    }
    Ok((members, g))
}

/// The sender's next message after a change: rotation and sharing included.
fn next_message(members: &mut [Member], g: &ConvoId, who: usize) -> Result<Value> {
    let t = Instant::now();
    members[who].engine.send(g, "after the change", T0 + 10)?;
    let out = members[who].engine.drain_outbox();
    let took = t.elapsed();
    Ok(json!({ "ms": took.as_secs_f64() * 1e3, "envelopes": out.len(), "bytes": bytes(&out) }))
}

fn group(n: u32) -> Result<Value> {
    eprintln!("convo bench: a group of {n}…");
    let (mut members, g) = settled_group(n)?;
    ensure!(
        members[1].engine.group(&g).map(|x| x.members().len()) == Some(n as usize),
        "the group has settled"
    );
    let newcomer = member(n)?;
    let newcomer_bundle = newcomer.engine.key_bundle(&newcomer.id, T0);
    for m in &mut members {
        m.engine.learn_bundle(newcomer_bundle.as_ref(), T0)?;
    }

    // An add, by the admin.
    let t = Instant::now();
    members[0]
        .engine
        .add(&g, &[key(&newcomer)], false, T0 + 1)?;
    let add_out = members[0].engine.drain_outbox();
    let add_ms = t.elapsed().as_secs_f64() * 1e3;
    let add_take = deliver(&mut members[1], &add_out).as_secs_f64() * 1e3;

    // A remove, by the admin, of member 2; then the admin's next message (rotated session).
    let removed = key(&members[2]);
    let t = Instant::now();
    members[0].engine.remove(&g, &[removed], T0 + 2)?;
    let remove_out = members[0].engine.drain_outbox();
    let remove_ms = t.elapsed().as_secs_f64() * 1e3;
    let remove_take = deliver(&mut members[1], &remove_out).as_secs_f64() * 1e3;
    let after_remove = next_message(&mut members, &g, 1)?;

    // A key update by member 3; then member 1's next message (it rotates too).
    let id3 = Identity::from_seed(&members[3].id.seed());
    let t = Instant::now();
    members[3].engine.update(&id3, T0 + 3)?;
    let update_out = members[3].engine.drain_outbox();
    let update_ms = t.elapsed().as_secs_f64() * 1e3;
    let update_take = deliver(&mut members[1], &update_out).as_secs_f64() * 1e3;
    let after_update = next_message(&mut members, &g, 1)?;

    Ok(json!({
        "members": n,
        "add": { "ms": add_ms, "envelopes": add_out.len(), "bytes": bytes(&add_out), "member_takes_ms": add_take },
        "remove": { "ms": remove_ms, "envelopes": remove_out.len(), "bytes": bytes(&remove_out), "member_takes_ms": remove_take,
                    "next_message": after_remove },
        "update": { "ms": update_ms, "envelopes": update_out.len(), "bytes": bytes(&update_out), "member_takes_ms": update_take,
                    "next_message_of_another_member": after_update },
    }))
}

pub fn run(args: &Args, members: u32) -> Result<()> {
    ensure!(members >= 4, "--members must be at least 4");
    let mut report = serde_json::Map::new();
    report.insert("machine".into(), machine());
    eprintln!("convo bench: per message…");
    report.insert("per_message".into(), json!(per_message()?));
    report.insert("group".into(), group(members)?);
    finish(args, report)
}
