//! `xf demo`: a small social network in a temporary store, shown from the inside.

use std::time::Instant;

use anyhow::{Context, Result};
use xaeroflux::{now_ms, Draft, EventId, Identity, Kind, Node, Outcome, Profile, PublicKey, Topic};
use xaeroflux_event::{ArchivedNote, ArchivedProfile, Limits};

use crate::cli::Args;
use crate::output::short;

struct Person {
    name: &'static str,
    id: Identity,
}

/// Signs, verifies and stores one event as if it had arrived from its author's device.
struct Network<'n> {
    node: &'n Node,
    clock: u64,
}

impl Network<'_> {
    fn publish(&mut self, who: &Person, draft: Draft) -> Result<EventId> {
        self.clock += 1_000;
        let draft = Draft {
            created_at: self.clock,
            ..draft
        };
        let event = who.id.sign_checked(&draft, &Limits::at(now_ms()))?;
        let id = *event.id();
        // Through the verifying path, like events from a peer.
        let outcome = self.node.ingest(vec![event.into_bytes()])?.remove(0)?;
        anyhow::ensure!(
            matches!(outcome, Outcome::Stored { .. }),
            "{} not stored: {outcome:?}",
            who.name
        );
        Ok(id)
    }
}

fn name_of(node: &Node, key: &PublicKey) -> String {
    node.display_name(key)
        .ok()
        .flatten()
        .unwrap_or_else(|| short(&key.to_string()).to_owned())
}

/// Store options for an encrypted store under a random key kept only in memory: the demo's
/// stores are thrown away with it.
pub fn encrypted() -> Result<xaeroflux::StoreOptions> {
    Ok(xaeroflux::StoreOptions {
        key: Some(xaeroflux::DataKey::generate().context("a random key")?),
        ..xaeroflux::StoreOptions::default()
    })
}

pub fn run(args: &Args) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("xf-demo-").tempdir()?;
    let node = Node::builder()
        .data_dir(dir.path())
        .store_options(encrypted()?)
        .open()
        .context("opening the demo store")?;
    println!(
        "Demo store: a fresh temporary directory, removed at exit, encrypted under a random key \
         that is never written down.\n"
    );
    let people: Vec<Person> = ["alice", "bob", "carol", "dave"]
        .iter()
        .enumerate()
        .map(|(i, name)| Person {
            name,
            id: Identity::from_seed(&[i as u8 + 1; 32]),
        })
        .collect();
    let [alice, bob, carol, dave] = &people[..] else {
        unreachable!("four people")
    };
    let mut net = Network {
        node: &node,
        clock: now_ms() - 3_600_000,
    };

    for p in &people {
        let about = format!("{} on Xaeroflux", p.name);
        net.publish(
            p,
            Draft::profile(
                0,
                &Profile {
                    name: p.name.into(),
                    about,
                    picture: String::new(),
                },
            ),
        )?;
    }
    let keys = |ps: &[&Person]| ps.iter().map(|p| p.id.public_key()).collect::<Vec<_>>();
    net.publish(alice, Draft::follow_list(0, &keys(&[bob, carol])))?;
    net.publish(bob, Draft::follow_list(0, &keys(&[alice, carol, dave])))?;

    let rust = Topic::named("rust");
    let hello = net.publish(bob, Draft::post(0, "Hello from a network with no servers!"))?;
    let lmdb = net.publish(
        carol,
        Draft::post(0, "LMDB reads straight from the page cache.").in_topic(rust),
    )?;
    let r1 = net.publish(alice, Draft::reply(0, hello, "Welcome, bob!"))?;
    let r2 = net.publish(
        dave,
        Draft::reply(0, hello, "Signed and content-addressed, nice."),
    )?;
    net.publish(bob, Draft::reply(0, r1, "Thanks alice :)"))?;
    net.publish(carol, Draft::reaction(0, hello, "🔥"))?;
    net.publish(alice, Draft::reaction(0, r2, "+"))?;
    net.publish(dave, Draft::reaction(0, lmdb, "❤"))?;
    let oops = net.publish(carol, Draft::post(0, "this post has a typo"))?;
    net.publish(
        carol,
        Draft::post(0, "Sealed at rest, and zero-copy reads on a plain store.").in_topic(rust),
    )?;
    net.publish(carol, Draft::deletion(0, oops, "typo"))?;
    // Someone else trying to delete bob's post has no effect.
    net.publish(dave, Draft::deletion(0, hello, "not mine to delete"))?;

    let read = node.store().read()?;
    println!("== alice's feed (she follows bob and carol) ==");
    for ev in read.feed(&alice.id.public_key(), 10, None)? {
        let text = ev
            .payload_as::<ArchivedNote>()
            .map(|n| n.text.as_str().to_owned())
            .unwrap_or_default();
        let marker = if ev.kind() == Kind::REPLY { "↳ " } else { "" };
        println!("  {:<6} {marker}{text}", name_of(&node, ev.author()));
    }

    println!("\n== thread of bob's first post ==");
    let thread = read.thread(&hello, 100)?;
    if let Some(root) = &thread.root {
        let text = root
            .payload_as::<ArchivedNote>()
            .map(|n| n.text.as_str())
            .unwrap_or("");
        println!("  {}: {text}", name_of(&node, root.author()));
    }
    for e in &thread.entries {
        let indent = "    ".repeat(e.depth as usize);
        let who = name_of(&node, e.event.author());
        match e.event.kind() {
            Kind::REACTION => {
                let r = e.event.payload_as::<xaeroflux_event::ArchivedReaction>()?;
                println!("{indent}{who} reacted {}", r.content.as_str());
            }
            _ => println!(
                "{indent}{who}: {}",
                e.event.payload_as::<ArchivedNote>()?.text.as_str()
            ),
        }
    }

    println!("\n== topic #rust ==");
    let topical = read.query(&xaeroflux::Filter {
        scope: xaeroflux::Scope {
            topics: vec![rust],
            ..xaeroflux::Scope::all()
        },
        ..Default::default()
    })?;
    for ev in &topical {
        println!(
            "  {:<6} {}",
            name_of(&node, ev.author()),
            ev.payload_as::<ArchivedNote>()?.text.as_str()
        );
    }
    let profile = read
        .latest(&carol.id.public_key(), Kind::PROFILE)?
        .context("carol's profile")?;
    println!(
        "\ncarol's profile: {}",
        profile.payload_as::<ArchivedProfile>()?.about.as_str()
    );
    println!(
        "carol's deleted post is gone: {}",
        read.get(&oops)?.is_none()
    );
    println!(
        "dave's attempt to delete bob's post changed nothing: {}",
        read.get(&hello)?.is_some()
    );
    drop(read);

    crate::net::demo_network()?;
    private_group()?;

    let events = 20_000;
    println!("\n== scale: {events} generated events from 300 authors (Zipf activity) ==");
    let started = Instant::now();
    let batch: Vec<Vec<u8>> =
        xaeroflux_bench::generate(&xaeroflux_bench::GenParams::new(events, 300, 7))
            .map(|e| e.into_bytes())
            .collect();
    let generated = started.elapsed();
    let started = Instant::now();
    let report = node.ingest_stream(batch.into_iter().map(Ok), 1000, |_| {})?;
    let ingest = started.elapsed();
    println!(
        "  generated+signed in {:.2} s; verified and stored {} in {:.2} s ({:.0} events/s)",
        generated.as_secs_f64(),
        report.stored,
        ingest.as_secs_f64(),
        report.stored as f64 / ingest.as_secs_f64()
    );
    let read = node.store().read()?;
    let reader = xaeroflux_bench::identity_for(7, 5).public_key();
    let started = Instant::now();
    let feed = read.feed(&reader, 50, None)?;
    println!(
        "  feed of author #5 ({} follows): {} events in {} µs",
        read.follows(&reader)?.len(),
        feed.len(),
        started.elapsed().as_micros()
    );
    let stats = read.stats()?;
    println!(
        "  store: {} events, {} event bytes, {} bytes used ({:.2}×)",
        stats.events,
        stats.event_bytes,
        stats.used_bytes,
        stats.used_bytes as f64 / stats.event_bytes as f64
    );
    let check = read.check(2)?;
    println!(
        "  integrity check: {} events re-verified, {} problems",
        check.events, check.problems_total
    );
    anyhow::ensure!(check.is_ok(), "integrity check failed");
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "events": stats.events, "used_bytes": stats.used_bytes })
        );
    }
    Ok(())
}

/// A private group of three whose every envelope travels through a fourth node that is not a
/// member: it stores and forwards them and reads none.
fn private_group() -> Result<()> {
    use xaeroflux::{Scope, SyncConfig};
    println!("\n== a private group, relayed by a node that is not in it ==");
    let names = ["alice", "bob", "carol", "relay"];
    let mut dirs = Vec::new();
    let mut nodes = Vec::new();
    for (i, _) in names.iter().enumerate() {
        let dir = tempfile::Builder::new().prefix("xf-demo-dm-").tempdir()?;
        let node = Node::builder()
            .data_dir(dir.path())
            .identity(Identity::from_seed(&[i as u8 + 11; 32]))
            .store_options(encrypted()?)
            .open()?;
        dirs.push(dir);
        nodes.push(node);
    }
    let [alice, bob, carol, relay] = &nodes[..] else {
        unreachable!("four nodes")
    };
    let key = |n: &Node| n.identity().expect("an identity").public_key();
    // Each member meets only the relay.
    let relay_sync = || -> Result<()> {
        for _ in 0..2 {
            for member in [alice, bob, carol] {
                member.sync_with_store(relay.store(), &Scope::all(), SyncConfig::default())?;
            }
        }
        Ok(())
    };
    for member in [alice, bob, carol] {
        member.conversations()?; // publishes its key bundle
    }
    relay_sync()?;
    let g = alice.group_create("night hikers")?;
    alice.group_add(&g, &[key(bob), key(carol)], false)?;
    relay_sync()?;
    alice.group_send(&g, "the wombat trail at nine?")?;
    relay_sync()?;
    bob.group_send(&g, "I'll bring the headlamps")?;
    relay_sync()?;
    carol.group_send(&g, "count me in")?;
    relay_sync()?;
    for (name, member) in [("alice", alice), ("bob", bob), ("carol", carol)] {
        let read: Vec<String> = member.group_read(&g)?.into_iter().map(|m| m.text).collect();
        println!("  {name:<6} reads {read:?}");
    }
    let envelopes = relay
        .store()
        .read()?
        .query(&xaeroflux::Filter {
            kinds: vec![Kind::ENVELOPE],
            ..xaeroflux::Filter::default()
        })?
        .len();
    println!(
        "  relay  stores and forwards {envelopes} envelopes (no sender, no recipients, tags that \
         rotate), and is in {} conversations",
        relay.conversations()?.len()
    );
    alice.group_remove(&g, &[key(carol)])?;
    relay_sync()?;
    bob.group_send(&g, "carol went home early")?;
    relay_sync()?;
    println!(
        "  after alice removes carol, bob writes: bob reads {} messages, carol still {}",
        bob.group_read(&g)?.len(),
        carol.group_read(&g)?.len()
    );
    Ok(())
}
