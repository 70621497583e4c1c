//! Conversations end to end between engines: three people, a relay that is not a member, and
//! delivery in any order.

use std::collections::BTreeSet;

use proptest::prelude::*;
use xaeroflux_convo::engine::{Change, Engine, Outcome, Rejection, Waiting};
use xaeroflux_convo::{Author, ConvoId};
use xaeroflux_event::{verify, Identity, Kind, Limits, VerifiedEvent};

const T0: u64 = 1_764_000_000_000;

struct Person {
    id: Identity,
    engine: Engine,
    /// Envelopes offered and not yet taken, offered again after each acceptance.
    pending: Vec<VerifiedEvent>,
    /// Envelopes ignored, as a node holds them (relayed for others): offered again when the
    /// engine learns a tag secret that may be theirs.
    ignored: Vec<VerifiedEvent>,
}

impl Person {
    fn new(seed: u8) -> Person {
        let id = Identity::from_seed(&[seed; 32]);
        let engine = Engine::new(&id).unwrap();
        Person {
            id,
            engine,
            pending: Vec::new(),
            ignored: Vec::new(),
        }
    }

    fn me(&self) -> Author {
        self.id.public_key().0
    }

    fn bundle(&self, now: u64) -> VerifiedEvent {
        self.engine.key_bundle(&self.id, now)
    }

    /// Offers events as a node would after syncing them: bundles first, envelopes then, and
    /// pending envelopes again whenever one was accepted.
    fn deliver(&mut self, events: &[VerifiedEvent]) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for e in events {
            // Everything that crosses the network is verified first.
            let e = verify(e.as_bytes().to_vec(), &Limits::at(T0 + 86_400_000 * 30)).unwrap();
            if e.as_ref().kind() == Kind::KEY_BUNDLE {
                self.engine.learn_bundle(e.as_ref(), T0).unwrap();
                self.retry(&mut outcomes);
                continue;
            }
            let o = self.engine.receive(e.as_ref(), T0);
            let accepted = matches!(o, Outcome::Accepted(_));
            match o {
                Outcome::Pending(_) => self.pending.push(e),
                Outcome::Ignored => self.ignored.push(e),
                _ => {}
            }
            outcomes.push(o);
            if accepted {
                self.retry(&mut outcomes);
            }
        }
        outcomes
    }

    fn retry(&mut self, outcomes: &mut Vec<Outcome>) {
        loop {
            let mut progress = false;
            // What a node finds by topic in its store: envelopes under newly learned tags.
            let tags = self.engine.drain_rescan(T0);
            let (found, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ignored)
                .into_iter()
                .partition(|e| tags.contains(&e.as_ref().topic().0));
            self.ignored = rest;
            self.pending.extend(found);
            for e in std::mem::take(&mut self.pending) {
                let o = self.engine.receive(e.as_ref(), T0);
                match o {
                    Outcome::Pending(_) => self.pending.push(e),
                    Outcome::Ignored => self.ignored.push(e),
                    Outcome::Accepted(_) => {
                        progress = true;
                        outcomes.push(o);
                    }
                    other => outcomes.push(other),
                }
            }
            if !progress {
                break;
            }
        }
    }

    fn texts(&self, convo: &ConvoId) -> Vec<String> {
        self.engine
            .messages(convo)
            .map(|ms| ms.into_iter().map(|m| m.text).collect())
            .unwrap_or_default()
    }

    fn out(&mut self) -> Vec<VerifiedEvent> {
        self.engine.drain_outbox()
    }
}

/// Everyone learns everyone's bundle.
fn introduce(people: &mut [&mut Person]) {
    let bundles: Vec<VerifiedEvent> = people.iter().map(|p| p.bundle(T0)).collect();
    for p in people.iter_mut() {
        p.deliver(&bundles);
    }
}

fn spread(events: &[VerifiedEvent], to: &mut [&mut Person]) {
    for p in to.iter_mut() {
        p.deliver(events);
    }
}

/// Alice makes a group with Bob and Carol; Dave (not a member) relays everything.
fn group_of_three() -> (Person, Person, Person, Person, ConvoId) {
    let mut alice = Person::new(1);
    let mut bob = Person::new(2);
    let mut carol = Person::new(3);
    let mut dave = Person::new(4);
    introduce(&mut [&mut alice, &mut bob, &mut carol, &mut dave]);
    let g = alice.engine.create_group("hikers", T0).unwrap();
    alice
        .engine
        .add(&g, &[bob.me(), carol.me()], false, T0 + 1)
        .unwrap();
    let out = alice.out();
    spread(&out, &mut [&mut bob, &mut carol, &mut dave]);
    (alice, bob, carol, dave, g)
}

#[test]
fn three_members_read_the_same_and_the_relay_learns_nothing() {
    let (mut alice, mut bob, mut carol, mut dave, g) = group_of_three();
    assert!(bob.engine.group(&g).unwrap().is_member(&bob.me()));
    assert_eq!(carol.engine.group(&g).unwrap().members().len(), 3);
    let mut all = Vec::new();
    alice
        .engine
        .send(&g, "meet at the trailhead", T0 + 10)
        .unwrap();
    let a = alice.out();
    all.extend(a.clone());
    spread(&a, &mut [&mut bob, &mut carol, &mut dave]);
    bob.engine.send(&g, "bringing the map", T0 + 20).unwrap();
    let b = bob.out();
    all.extend(b.clone());
    spread(&b, &mut [&mut alice, &mut carol, &mut dave]);
    carol.engine.send(&g, "see you at 9", T0 + 30).unwrap();
    let c = carol.out();
    all.extend(c.clone());
    let outcomes = dave.deliver(&c);
    spread(&c, &mut [&mut alice, &mut bob]);

    let want = vec!["meet at the trailhead", "bringing the map", "see you at 9"];
    for p in [&alice, &bob, &carol] {
        assert_eq!(p.texts(&g), want);
    }
    // Debug output, which may reach a log, shows neither the texts nor the group's name.
    let shown = format!(
        "{:?} {:?}",
        alice.engine.messages(&g).unwrap(),
        alice.engine.conversations()
    );
    assert!(
        !shown.contains("trailhead") && !shown.contains("hikers"),
        "{shown}"
    );
    // The relay takes nothing: every envelope is ignored, none pending.
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Ignored),
        "{outcomes:?}"
    );
    assert!(dave.engine.conversations().is_empty());
    assert!(dave.pending.is_empty());
    // What it relays names nobody and shows nothing: no member's author key, none of the keys
    // of their published bundles, no text.
    let mut keys: Vec<[u8; 32]> = Vec::new();
    for p in [&alice, &bob, &carol] {
        keys.push(p.me());
        let bundle = p.bundle(T0);
        let b = bundle
            .as_ref()
            .payload_as::<xaeroflux_event::ArchivedKeyBundle>()
            .unwrap();
        keys.extend([b.identity, b.prekey, b.seal]);
    }
    for e in &all {
        let bytes = e.as_bytes();
        assert_eq!(e.as_ref().kind(), Kind::ENVELOPE);
        for k in &keys {
            assert!(
                !contains(bytes, k),
                "an envelope names a member or its keys"
            );
        }
        for text in &want {
            assert!(!contains(bytes, text.as_bytes()));
        }
        assert_eq!(e.as_ref().created_at() % 3_600_000, 0, "coarse time");
        let padded = e.as_ref().payload().len() - xaeroflux_event::ENVELOPE_BYTES_MIN;
        assert!(padded.is_power_of_two() || padded == xaeroflux_convo::wire::PAD_MAX);
    }
    // Distinct one-time authors, distinct tags for pairwise envelopes.
    let authors: BTreeSet<_> = all.iter().map(|e| e.as_ref().author().0).collect();
    assert_eq!(authors.len(), all.len());
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_removed_member_cannot_read_what_follows_its_removal() {
    let (mut alice, mut bob, mut carol, _dave, g) = group_of_three();
    alice.engine.send(&g, "before", T0 + 10).unwrap();
    let a = alice.out();
    spread(&a, &mut [&mut bob, &mut carol]);
    carol.engine.send(&g, "carol, before", T0 + 11).unwrap();
    let c = carol.out();
    spread(&c, &mut [&mut alice, &mut bob]);
    assert_eq!(carol.texts(&g), vec!["before", "carol, before"]);

    alice.engine.remove(&g, &[carol.me()], T0 + 20).unwrap();
    let r = alice.out();
    spread(&r, &mut [&mut bob, &mut carol]);
    assert!(!bob.engine.group(&g).unwrap().is_member(&carol.me()));
    let info = carol.engine.conversations();
    assert!(!info[0].member, "carol is told she was removed");

    alice.engine.send(&g, "after, from alice", T0 + 30).unwrap();
    bob.engine.send(&g, "after, from bob", T0 + 40).unwrap();
    let mut after = alice.out();
    after.extend(bob.out());
    spread(&after, &mut [&mut alice, &mut bob]);
    let outcomes = carol.deliver(&after);
    // What Carol wrote before her removal, and Alice had read, stays readable.
    assert_eq!(
        alice.texts(&g),
        vec![
            "before",
            "carol, before",
            "after, from alice",
            "after, from bob"
        ]
    );
    assert_eq!(bob.texts(&g), alice.texts(&g));
    assert_eq!(carol.texts(&g), vec!["before", "carol, before"]);
    assert!(
        outcomes
            .iter()
            .all(|o| !matches!(o, Outcome::Accepted(c) if c.iter().any(|c| matches!(c, Change::Message { .. })))),
        "{outcomes:?}"
    );
    // Carol cannot send any more; a message from a copy of her old state is refused.
    assert!(carol.engine.send(&g, "still here?", T0 + 50).is_err());
}

#[test]
fn a_removed_members_old_state_cannot_post_after_the_removal() {
    let (mut alice, mut bob, mut carol, _dave, g) = group_of_three();
    let old_carol_state = carol.engine.save().unwrap();
    alice.engine.remove(&g, &[carol.me()], T0 + 20).unwrap();
    let r = alice.out();
    spread(&r, &mut [&mut bob]);
    // A copy of Carol's state from before her removal writes as if it had not happened.
    let mut ghost = Engine::restore(&carol.id, &old_carol_state).unwrap();
    ghost.send(&g, "backdated", T0 + 30).unwrap();
    let ghost_out = ghost.drain_outbox();
    let outcomes = bob.deliver(&ghost_out);
    assert!(
        outcomes
            .iter()
            .any(|o| *o == Outcome::Rejected(Rejection::RemovedSender(carol.me()))),
        "{outcomes:?}"
    );
    assert!(bob.texts(&g).is_empty());
    carol.deliver(&r);
}

#[test]
fn direct_messages_start_while_the_other_side_is_offline() {
    let mut alice = Person::new(1);
    let mut bob = Person::new(2);
    // Alice has only Bob's published bundle; Bob is offline.
    let bob_bundle = bob.bundle(T0);
    alice.deliver(&[bob_bundle]);
    let dm = alice.engine.dm(&bob.me(), "hi bob", T0 + 5).unwrap();
    let a = alice.out();
    // Bob comes online, gets the envelopes before Alice's bundle: they wait for it.
    let outcomes = bob.deliver(&a);
    assert!(outcomes.contains(&Outcome::Pending(Waiting::KeyBundle(alice.me()))));
    let alice_bundle = alice.bundle(T0);
    bob.deliver(&[alice_bundle]);
    assert_eq!(bob.texts(&dm), vec!["hi bob"]);
    let same = bob.engine.dm(&alice.me(), "hi alice", T0 + 9).unwrap();
    assert_eq!(same, dm);
    let b = bob.out();
    alice.deliver(&b);
    assert_eq!(alice.texts(&dm), vec!["hi bob", "hi alice"]);
    assert_eq!(bob.texts(&dm), alice.texts(&dm));
}

#[test]
fn state_survives_a_restart_mid_conversation() {
    let (mut alice, mut bob, mut carol, _dave, g) = group_of_three();
    alice.engine.send(&g, "one", T0 + 10).unwrap();
    let a = alice.out();
    spread(&a, &mut [&mut bob, &mut carol]);
    // Bob restarts.
    let saved = bob.engine.save().unwrap();
    bob.engine = Engine::restore(&bob.id, &saved).unwrap();
    assert_eq!(bob.texts(&g), vec!["one"]);
    alice.engine.send(&g, "two", T0 + 20).unwrap();
    bob.engine.send(&g, "three", T0 + 30).unwrap();
    let mut more = alice.out();
    more.extend(bob.out());
    spread(&more, &mut [&mut alice, &mut bob, &mut carol]);
    for p in [&alice, &bob, &carol] {
        assert_eq!(p.texts(&g), vec!["one", "two", "three"]);
    }
    // Offering again what was taken changes nothing; what was for others stays ignored.
    let again = carol.deliver(&more);
    assert!(
        again
            .iter()
            .all(|o| matches!(o, Outcome::Duplicate | Outcome::Ignored)),
        "{again:?}"
    );
    assert!(again.contains(&Outcome::Duplicate));
    assert_eq!(carol.texts(&g), vec!["one", "two", "three"]);
}

#[test]
fn tampered_and_truncated_envelopes_are_refused_and_lose_nothing() {
    let (mut alice, mut bob, _carol, _dave, g) = group_of_three();
    alice.engine.send(&g, "intact", T0 + 10).unwrap();
    let a = alice.out();
    let e = a.last().unwrap().as_ref();
    let one_time = Identity::from_seed(&[99; 32]);
    let mut flipped = e.payload().to_vec();
    let n = flipped.len();
    flipped[n - 3] ^= 0x10;
    let draft = xaeroflux_event::Draft::envelope(e.created_at(), *e.topic(), flipped);
    let forged = one_time.sign(&draft);
    let outcomes = bob.deliver(&[forged]);
    assert!(
        matches!(outcomes[0], Outcome::Rejected(Rejection::Tampered(_))),
        "{outcomes:?}"
    );
    let truncated = one_time.sign(&xaeroflux_event::Draft::envelope(
        e.created_at(),
        *e.topic(),
        e.payload()[..e.payload().len() - 40].to_vec(),
    ));
    let outcomes = bob.deliver(&[truncated]);
    assert!(
        matches!(outcomes[0], Outcome::Rejected(Rejection::Tampered(_))),
        "{outcomes:?}"
    );
    // The real one still reads.
    bob.deliver(&a);
    assert_eq!(bob.texts(&g), vec!["intact"]);
}

#[test]
fn after_a_compromise_an_update_restores_secrecy() {
    let (mut alice, mut bob, mut carol, _dave, g) = group_of_three();
    // An attacker copies Carol's whole state.
    let stolen = carol.engine.save().unwrap();
    let mut attacker = Person {
        id: Identity::from_seed(&[3; 32]),
        engine: Engine::restore(&carol.id, &stolen).unwrap(),
        pending: Vec::new(),
        ignored: Vec::new(),
    };
    alice.engine.send(&g, "read by the thief", T0 + 10).unwrap();
    let a = alice.out();
    spread(&a, &mut [&mut bob, &mut carol, &mut attacker]);
    assert_eq!(
        attacker.texts(&g),
        vec!["read by the thief"],
        "the compromise is real"
    );

    // Carol updates; everyone processes it, then everyone writes.
    carol.engine.update(&carol.id, T0 + 20).unwrap();
    let u = carol.out();
    spread(&u, &mut [&mut alice, &mut bob, &mut attacker]);
    let replies: Vec<VerifiedEvent> = alice.out().into_iter().chain(bob.out()).collect();
    spread(&replies, &mut [&mut carol, &mut attacker]);
    alice.engine.send(&g, "secret again", T0 + 30).unwrap();
    bob.engine.send(&g, "from bob too", T0 + 40).unwrap();
    carol.engine.send(&g, "and carol", T0 + 50).unwrap();
    let mut later = alice.out();
    later.extend(bob.out());
    later.extend(carol.out());
    spread(
        &later,
        &mut [&mut alice, &mut bob, &mut carol, &mut attacker],
    );
    let want = vec![
        "read by the thief",
        "secret again",
        "from bob too",
        "and carol",
    ];
    for p in [&alice, &bob, &carol] {
        assert_eq!(p.texts(&g), want);
    }
    assert_eq!(attacker.texts(&g), vec!["read by the thief"]);
}

#[test]
fn concurrent_adds_and_removes_by_two_admins_converge() {
    let mut alice = Person::new(1);
    let mut bob = Person::new(2);
    let mut carol = Person::new(3);
    let mut dave = Person::new(4);
    let mut erin = Person::new(5);
    introduce(&mut [&mut alice, &mut bob, &mut carol, &mut dave, &mut erin]);
    let g = alice.engine.create_group("club", T0).unwrap();
    alice.engine.add(&g, &[bob.me()], true, T0 + 1).unwrap();
    alice
        .engine
        .add(&g, &[carol.me(), erin.me()], false, T0 + 2)
        .unwrap();
    let setup = alice.out();
    spread(&setup, &mut [&mut bob, &mut carol, &mut erin]);
    // Without hearing of each other: Alice removes Carol and adds Dave; Bob removes Erin and
    // adds Carol's replacement... Dave too (a duplicate add).
    alice.engine.remove(&g, &[carol.me()], T0 + 10).unwrap();
    alice.engine.add(&g, &[dave.me()], false, T0 + 11).unwrap();
    bob.engine.remove(&g, &[erin.me()], T0 + 12).unwrap();
    bob.engine.add(&g, &[dave.me()], false, T0 + 13).unwrap();
    let from_alice = alice.out();
    let from_bob = bob.out();
    // Different orders at each member.
    alice.deliver(&from_bob);
    bob.deliver(&from_alice);
    dave.deliver(&from_bob);
    dave.deliver(&from_alice);
    let forwarded: Vec<VerifiedEvent> = alice.out().into_iter().chain(bob.out()).collect();
    spread(&forwarded, &mut [&mut alice, &mut bob, &mut dave]);
    let want: BTreeSet<Author> = [alice.me(), bob.me(), dave.me()].into();
    for p in [&alice, &bob, &dave] {
        let members: BTreeSet<Author> = p.engine.group(&g).unwrap().members().into_keys().collect();
        assert_eq!(members, want);
        assert_eq!(
            p.engine.group(&g).unwrap().heads(),
            alice.engine.group(&g).unwrap().heads()
        );
    }
    // And the new membership talks.
    dave.engine.send(&g, "hello, I am new", T0 + 20).unwrap();
    let d = dave.out();
    spread(&d, &mut [&mut alice, &mut bob]);
    assert_eq!(alice.texts(&g), vec!["hello, I am new"]);
    assert_eq!(bob.texts(&g), vec!["hello, I am new"]);
}

/// A settled group of three, then traffic written concurrently (no member hears the others
/// while it is written): messages from all, and a key update by Bob midway. Each member's state
/// after writing is kept so that every case replays the same traffic into fresh copies.
struct Settled {
    people: Vec<Person>,
    saved: Vec<Vec<u8>>,
    traffic: Vec<VerifiedEvent>,
    g: ConvoId,
}

fn settled() -> Settled {
    let (mut alice, mut bob, mut carol, _dave, g) = group_of_three();
    // Everyone has spoken once, so every sender key is shared.
    for (i, p) in [&mut alice, &mut bob, &mut carol].into_iter().enumerate() {
        p.engine
            .send(&g, &format!("hello {i}"), T0 + i as u64)
            .unwrap();
    }
    let hello: Vec<VerifiedEvent> = [&mut alice, &mut bob, &mut carol]
        .into_iter()
        .flat_map(|p| p.out())
        .collect();
    spread(&hello, &mut [&mut alice, &mut bob, &mut carol]);
    let mut people = vec![alice, bob, carol];
    let mut traffic = Vec::new();
    for round in 0..3u64 {
        for (i, p) in people.iter_mut().enumerate() {
            p.engine
                .send(
                    &g,
                    &format!("round {round} from {i}"),
                    T0 + 100 + round * 10 + i as u64,
                )
                .unwrap();
            traffic.extend(p.out());
        }
        if round == 1 {
            let id = Identity::from_seed(&[2; 32]);
            people[1].engine.update(&id, T0 + 150).unwrap();
            traffic.extend(people[1].out());
        }
    }
    let saved = people
        .iter()
        .map(|p| p.engine.save().unwrap().to_vec())
        .collect();
    Settled {
        people,
        saved,
        traffic,
        g,
    }
}

thread_local! {
    static SETTLED: Settled = settled();
}

/// For each of the three members, an order of the traffic: a permutation, and up to three
/// envelopes offered a second time.
fn orders() -> impl Strategy<Value = Vec<Vec<usize>>> {
    let n = SETTLED.with(|s| s.traffic.len());
    let one = Just((0..n).collect::<Vec<usize>>())
        .prop_shuffle()
        .prop_flat_map(move |p| (Just(p), prop::collection::vec(0..n, 0..4)))
        .prop_map(|(mut p, again)| {
            for (k, i) in again.into_iter().enumerate() {
                let at = (i + k) % (p.len() + 1);
                p.insert(at, i);
            }
            p
        });
    prop::collection::vec(one, 3)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any delivery order, with duplicates, ends with every member reading the same messages.
    #[test]
    fn any_order_with_duplicates_reads_the_same(order in orders()) {
        SETTLED.with(|s| {
            let mut reads = Vec::new();
            for (p, (person, saved)) in s.people.iter().zip(&s.saved).enumerate() {
                let mut fresh = Person {
                    id: Identity::from_seed(&person.id.seed()),
                    engine: Engine::restore(&person.id, saved).unwrap(),
                    pending: Vec::new(),
                    ignored: Vec::new(),
                };
                let events: Vec<VerifiedEvent> = order[p].iter().map(|&i| s.traffic[i].clone()).collect();
                fresh.deliver(&events);
                prop_assert!(fresh.pending.is_empty(), "member {} left with pending envelopes", p);
                reads.push(fresh.texts(&s.g));
            }
            prop_assert_eq!(reads[0].len(), 3 + 9);
            prop_assert_eq!(&reads[0], &reads[1]);
            prop_assert_eq!(&reads[1], &reads[2]);
            Ok(())
        })?;
    }
}

/// Mallory has an Olm account and a published bundle, so she can open a pairwise channel to
/// Bob; what she sends through it is still checked.
#[test]
fn forged_operations_and_replayed_messages_are_refused() {
    use vodozemac::olm::{Account, SessionConfig};
    use xaeroflux_convo::membership::{Action, OpBody, SignedOp};
    use xaeroflux_convo::wire::{self, Control, Pairwise, PairwiseBody};
    use xaeroflux_event::{encode_payload, Draft, KeyBundle, Topic, KEY_BUNDLE_VERSION};

    let (mut alice, mut bob, _carol, _dave, g) = group_of_three();
    let mallory = Identity::from_seed(&[66; 32]);
    let mut account = Account::new();
    account.generate_fallback_key();
    let mallory_bundle = KeyBundle {
        version: KEY_BUNDLE_VERSION,
        identity: account.curve25519_key().to_bytes(),
        prekey: account
            .fallback_key()
            .into_values()
            .next()
            .unwrap()
            .to_bytes(),
        seal: [9; 32],
    };
    bob.deliver(&[mallory.sign(&Draft::key_bundle(T0, &mallory_bundle))]);
    let bob_bundle = bob.bundle(T0);
    let bk = bob_bundle
        .as_ref()
        .payload_as::<xaeroflux_event::ArchivedKeyBundle>()
        .unwrap();
    let mut session = account
        .create_outbound_session(
            SessionConfig::version_1(),
            vodozemac::Curve25519PublicKey::from_bytes(bk.identity),
            vodozemac::Curve25519PublicKey::from_bytes(bk.prekey),
        )
        .unwrap();
    let send = |session: &mut vodozemac::olm::Session, controls: Vec<Control>| {
        let plain = encode_payload(&PairwiseBody { controls });
        let (olm_type, olm) = session.encrypt(&plain).unwrap().to_parts();
        let sealed = encode_payload(&Pairwise {
            sender: mallory.public_key().0,
            olm_type: olm_type as u8,
            olm,
        });
        let t = wire::coarse(T0);
        let tag = [0x5c; 32];
        let payload = wire::seal_pairwise(&bk.seal, &tag, t, &sealed).unwrap();
        Identity::from_seed(&[77; 32]).sign(&Draft::envelope(t, Topic(tag), payload))
    };
    // An operation that claims Alice added Mallory, signed by Mallory.
    let mut forged = SignedOp::sign(
        &OpBody {
            convo: g,
            author: [0; 32],
            deps: bob.engine.group(&g).unwrap().heads(),
            seen: Vec::new(),
            created_at: T0 + 5,
            action: Action::Add {
                member: mallory.public_key().0,
                admin: true,
            },
            tag_secret: None,
        },
        &ed25519_dalek::SigningKey::from_bytes(&mallory.seed()),
    );
    let members_before = bob.engine.group(&g).unwrap().members();
    let body = forged.open().unwrap();
    let mut claimed = body.clone();
    claimed.author = alice.me();
    // Re-encode with Alice as author, keeping Mallory's signature: it no longer verifies.
    forged.body = encode_payload(&claimed);
    let outcomes = bob.deliver(&[send(
        &mut session,
        vec![Control::Ops {
            convo: g,
            ops: vec![forged],
        }],
    )]);
    assert!(
        matches!(&outcomes[0], Outcome::Rejected(Rejection::Forged(r)) if r.contains("signature")),
        "{outcomes:?}"
    );
    // Signed by Mallory as herself: authentic, but she is no admin (nor member): no effect.
    let own = SignedOp::sign(
        &body,
        &ed25519_dalek::SigningKey::from_bytes(&mallory.seed()),
    );
    bob.deliver(&[send(
        &mut session,
        vec![Control::Ops {
            convo: g,
            ops: vec![own.clone()],
        }],
    )]);
    assert_eq!(
        bob.engine.group(&g).unwrap().op_valid(&own.id()),
        Some(false)
    );
    assert_eq!(bob.engine.group(&g).unwrap().members(), members_before);

    // A replayed message: a member re-seals Alice's message in a new envelope.
    alice.engine.send(&g, "only once", T0 + 9).unwrap();
    let a = alice.out();
    bob.deliver(&a);
    assert_eq!(bob.texts(&g), vec!["only once"]);
    let e = a.last().unwrap().as_ref();
    let (tag, t) = (e.topic().0, e.created_at());
    let secret = bob
        .engine
        .secret_material()
        .into_iter()
        .filter_map(|s| <[u8; 32]>::try_from(s.as_slice()).ok())
        .find(|s| wire::conversation_tag(s, wire::day_of(t)) == tag)
        .expect("bob knows the tag secret");
    let inner = wire::open_conversation(&secret, &tag, t, e.payload()).unwrap();
    let (tag2, payload) = wire::seal_conversation(&secret, t, &inner).unwrap();
    let replay = Identity::from_seed(&[78; 32]).sign(&Draft::envelope(t, Topic(tag2), payload));
    let outcomes = bob.deliver(&[replay]);
    assert_eq!(outcomes, vec![Outcome::Rejected(Rejection::Replay)]);
    assert_eq!(bob.texts(&g), vec!["only once"]);
}

#[test]
fn a_member_whose_bundle_comes_late_still_reads_what_was_sent_meanwhile() {
    let mut alice = Person::new(1);
    let mut bob = Person::new(2);
    let mut carol = Person::new(3);
    // Alice knows everyone; Bob knows only Alice.
    introduce(&mut [&mut alice, &mut bob]);
    let carol_bundle = carol.bundle(T0);
    let alice_bundle = alice.bundle(T0);
    alice.deliver(std::slice::from_ref(&carol_bundle));
    carol.deliver(&[alice_bundle]);
    let g = alice.engine.create_group("late", T0).unwrap();
    alice
        .engine
        .add(&g, &[bob.me(), carol.me()], false, T0 + 1)
        .unwrap();
    let invites = alice.out();
    spread(&invites, &mut [&mut bob, &mut carol]);
    // Bob writes before he has Carol's bundle: her key share waits in his engine.
    bob.engine.send(&g, "hello both", T0 + 2).unwrap();
    let b = bob.out();
    spread(&b, &mut [&mut alice, &mut carol]);
    assert_eq!(alice.texts(&g), vec!["hello both"]);
    assert!(carol.texts(&g).is_empty());
    // A restart of Bob keeps what is held.
    let saved = bob.engine.save().unwrap();
    bob.engine = Engine::restore(&bob.id, &saved).unwrap();
    let bob_bundle = bob.bundle(T0);
    carol.deliver(&[bob_bundle]);
    bob.deliver(&[carol_bundle]);
    let released = bob.out();
    assert_eq!(released.len(), 1, "the held key share goes out");
    carol.deliver(&released);
    assert_eq!(carol.texts(&g), vec!["hello both"]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary envelope payloads, under a tag the member knows or one it does not, are a typed
    /// outcome and change nothing it reads.
    #[test]
    fn arbitrary_envelopes_never_panic_and_change_nothing(
        body in prop::collection::vec(any::<u8>(), 49..2048),
        known_tag in any::<bool>(),
        version_ok in any::<bool>(),
    ) {
        SETTLED.with(|s| {
            let person = &s.people[0];
            let mut bob = Engine::restore(&person.id, &s.saved[0]).unwrap();
            let before = bob.messages(&s.g).unwrap();
            let tag = if known_tag {
                s.traffic.iter().map(|e| e.as_ref().topic().0).find(|t| {
                    bob.secret_material().iter().any(|sec| {
                        <[u8; 32]>::try_from(sec.as_slice()).is_ok_and(|sec| {
                            xaeroflux_convo::wire::conversation_tag(&sec, xaeroflux_convo::wire::day_of(T0)) == *t
                        })
                    })
                }).expect("a tag the member knows")
            } else {
                [0x42; 32]
            };
            let mut payload = body;
            payload[0] = if version_ok { 1 } else { payload[0] | 2 };
            let e = Identity::from_seed(&[90; 32])
                .sign(&xaeroflux_event::Draft::envelope(T0, xaeroflux_event::Topic(tag), payload));
            let o = bob.receive(e.as_ref(), T0);
            // Under a known tag the outer AEAD refuses it; under another, no key opens it.
            if known_tag {
                prop_assert!(matches!(o, Outcome::Rejected(_)), "{:?}", o);
            } else {
                prop_assert!(matches!(o, Outcome::Ignored | Outcome::Rejected(_)), "{:?}", o);
            }
            prop_assert_eq!(bob.messages(&s.g).unwrap(), before);
            Ok(())
        })?;
    }
}
