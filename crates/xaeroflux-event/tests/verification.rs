//! Verification rejects every malformed, forged or out-of-bounds event with a typed reason.

use proptest::prelude::*;
use xaeroflux_event::*;

const NOW: u64 = 1_780_000_000_000;

fn identity(seed: u8) -> Identity {
    Identity::from_seed(&[seed; 32])
}

fn limits() -> Limits {
    Limits::at(NOW)
}

/// Re-signs a hand-edited header so that only the edited property is wrong.
fn resign(id: &Identity, mut header: Header, payload: &[u8]) -> Vec<u8> {
    header.author = id.public_key().0;
    let event_id = event_id(&header);
    let draft_sig = {
        use ed25519_dalek::Signer;
        let key = ed25519_dalek::SigningKey::from_bytes(&id.seed());
        key.sign(&event_id.0).to_bytes()
    };
    let mut out = event_id.0.to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&draft_sig);
    out.extend_from_slice(payload);
    out
}

/// A public, reference-free header by `who`.
fn plain_header(who: &Identity, kind: Kind, at: u64, payload: &[u8]) -> Header {
    Header::new(
        kind,
        at,
        who.public_key(),
        Topic::ZERO,
        EventId::ZERO,
        payload,
    )
}

#[test]
fn signed_events_verify_and_read_back() {
    let alice = identity(1);
    let post = alice.sign(&Draft::post(NOW, "hello").in_topic(Topic::named("rust")));
    let verified = verify(post.as_bytes().to_vec(), &limits()).unwrap();
    assert_eq!(verified, post);
    let view = verified.as_ref();
    assert_eq!(view.kind(), Kind::POST);
    assert_eq!(view.author(), &alice.public_key());
    assert_eq!(view.topic(), &Topic::named("rust"));
    assert_eq!(
        view.payload_as::<ArchivedNote>().unwrap().text.as_str(),
        "hello"
    );
}

#[test]
fn each_bad_input_has_its_own_reason() {
    let alice = identity(2);
    let good = alice.sign(&Draft::post(NOW, "hi")).into_bytes();

    let truncated = good[..100].to_vec();
    assert!(matches!(
        verify(truncated, &limits()),
        Err(VerifyError::Decode(DecodeError::Truncated { .. }))
    ));

    let mut long = good.clone();
    long.push(0);
    assert!(matches!(
        verify(long, &limits()),
        Err(VerifyError::Decode(DecodeError::PayloadLength { .. }))
    ));

    let mut wrong_id = good.clone();
    wrong_id[0] ^= 1;
    assert!(matches!(
        verify(wrong_id, &limits()),
        Err(VerifyError::IdMismatch { .. })
    ));

    let mut forged = good.clone();
    forged[32 + HEADER_BYTES + 3] ^= 0x10;
    assert_eq!(verify(forged, &limits()), Err(VerifyError::BadSignature));

    // Another author's signature over the same id.
    let mallory = identity(3);
    let stolen = {
        let header = *Header::view(&good[32..]).unwrap();
        let mut header_as_mallory = header;
        header_as_mallory.author = mallory.public_key().0;
        let mallory_bytes = resign(&mallory, header_as_mallory, &good[32 + HEADER_BYTES + 64..]);
        let mut out = good.clone();
        out[32 + HEADER_BYTES..32 + HEADER_BYTES + 64]
            .copy_from_slice(&mallory_bytes[32 + HEADER_BYTES..32 + HEADER_BYTES + 64]);
        out
    };
    assert_eq!(verify(stolen, &limits()), Err(VerifyError::BadSignature));

    let payload = encode_payload(&Note { text: "x".into() });
    let mut header = plain_header(&alice, Kind::POST, NOW, &payload);
    header.version = 2u16.to_le_bytes();
    assert!(matches!(
        verify(resign(&alice, header, &payload), &limits()),
        Err(VerifyError::UnsupportedVersion {
            got: 2,
            supported: 1
        })
    ));

    let future = NOW + FUTURE_SKEW_MS_DEFAULT + 1;
    let header = plain_header(&alice, Kind::POST, future, &payload);
    assert!(matches!(
        verify(resign(&alice, header, &payload), &limits()),
        Err(VerifyError::FromTheFuture { .. })
    ));
    let edge = NOW + FUTURE_SKEW_MS_DEFAULT;
    let header = plain_header(&alice, Kind::POST, edge, &payload);
    assert!(verify(resign(&alice, header, &payload), &limits()).is_ok());

    let header = plain_header(&alice, Kind::REPLY, NOW, &payload);
    assert!(matches!(
        verify(resign(&alice, header, &payload), &limits()),
        Err(VerifyError::ReferenceMissing { .. })
    ));

    let garbage = b"abc".to_vec(); // shorter than any archived root
    let header = plain_header(&alice, Kind::POST, NOW, &garbage);
    assert!(matches!(
        verify(resign(&alice, header, &garbage), &limits()),
        Err(VerifyError::MalformedPayload(_))
    ));

    let big = vec![0u8; PAYLOAD_BYTES_MAX + 1];
    let header = plain_header(&alice, Kind(70_000), NOW, &big);
    assert!(matches!(
        verify(resign(&alice, header, &big), &limits()),
        Err(VerifyError::PayloadTooLarge { .. })
    ));

    let mut swapped_payload = good.clone();
    let n = swapped_payload.len();
    swapped_payload[n - 1] ^= 0x01;
    assert_eq!(
        verify(swapped_payload, &limits()),
        Err(VerifyError::PayloadHashMismatch)
    );
}

#[test]
fn an_unknown_reserved_kind_verifies_and_is_marked_not_built_in() {
    let alice = identity(4);
    let payload = b"a kind a newer build defines".to_vec();
    let draft = Draft::app(Kind(77), NOW, EventId([9; 32]), payload);
    let event = alice.sign(&draft);
    let verified = verify(event.as_bytes().to_vec(), &limits()).expect("verifies");
    assert_eq!(verified, event);
    let kind = verified.as_ref().kind();
    assert!(!kind.is_builtin() && !kind.is_app() && !kind.is_known());
    // Batch verification agrees.
    let batch = verify_batch(vec![event.as_bytes().to_vec()], &limits());
    assert_eq!(batch, vec![Ok(event)]);
    // A local author may not create one.
    assert_eq!(
        alice.sign_checked(&draft, &limits()),
        Err(VerifyError::UnknownKind { kind: 77 })
    );
    // Not understood, if ever reported: never the sender's fault.
    assert_eq!(
        VerifyError::UnknownKind { kind: 77 }.verdict(),
        Verdict::NotUnderstood
    );
}

#[test]
fn verdicts_blame_only_broken_events() {
    let alice = identity(5);
    let payload = encode_payload(&Note { text: "x".into() });

    // A newer header version cannot be checked at all: not understood, even when the
    // signature is garbage.
    let mut header = plain_header(&alice, Kind::POST, NOW, &payload);
    header.version = 2u16.to_le_bytes();
    let mut newer = resign(&alice, header, &payload);
    newer[32 + HEADER_BYTES] ^= 1;
    let e = verify(newer.clone(), &limits()).unwrap_err();
    assert_eq!(
        e,
        VerifyError::UnsupportedVersion {
            got: 2,
            supported: FORMAT_VERSION
        }
    );
    assert_eq!(e.verdict(), Verdict::NotUnderstood);
    assert!(!e.verdict().is_invalid());
    // Version 0 never existed: invalid.
    header.version = 0u16.to_le_bytes();
    let e = verify(resign(&alice, header, &payload), &limits()).unwrap_err();
    assert_eq!(e.verdict(), Verdict::Invalid);

    // From the future, authentic: declined, not invalid.
    let ahead = NOW + FUTURE_SKEW_MS_DEFAULT + 1;
    let early = alice.sign(&Draft::post(ahead, "early")).into_bytes();
    let e = verify(early.clone(), &limits()).unwrap_err();
    assert!(matches!(e, VerifyError::FromTheFuture { .. }));
    assert_eq!(e.verdict(), Verdict::Declined);
    // The same event forged: the signature is checked first, so it is invalid.
    let mut forged_early = early.clone();
    forged_early[32 + HEADER_BYTES + 5] ^= 1;
    let e = verify(forged_early.clone(), &limits()).unwrap_err();
    assert_eq!(e, VerifyError::BadSignature);
    assert_eq!(e.verdict(), Verdict::Invalid);
    // Batches grade the same way.
    let batch = verify_batch(vec![early, forged_early], &limits());
    assert_eq!(batch[0].as_ref().unwrap_err().verdict(), Verdict::Declined);
    assert_eq!(batch[1], Err(VerifyError::BadSignature));

    // A payload over a locally lowered cap: declined; over the format's bound: invalid.
    let post = alice
        .sign(&Draft::post(NOW, "a longer post than the cap"))
        .into_bytes();
    let tight = Limits {
        payload_bytes_max: 8,
        ..limits()
    };
    let e = verify(post, &tight).unwrap_err();
    assert_eq!(e.verdict(), Verdict::Declined);
    let big = vec![0u8; PAYLOAD_BYTES_MAX + 1];
    let header = plain_header(&alice, Kind(70_000), NOW, &big);
    let e = verify(resign(&alice, header, &big), &limits()).unwrap_err();
    assert_eq!(e.verdict(), Verdict::Invalid);

    // Forged, malformed and rule-breaking events stay invalid.
    let good = alice.sign(&Draft::post(NOW, "hi")).into_bytes();
    let mut forged = good.clone();
    forged[32 + HEADER_BYTES + 3] ^= 0x10;
    let mut wrong_id = good.clone();
    wrong_id[0] ^= 1;
    let mut flagged = plain_header(&alice, Kind::POST, NOW, &payload);
    flagged.flags = 1u16.to_le_bytes();
    let reply_without_parent = plain_header(&alice, Kind::REPLY, NOW, &payload);
    let garbage = b"abc".to_vec();
    let bad_archive = plain_header(&alice, Kind::POST, NOW, &garbage);
    for bytes in [
        forged,
        wrong_id,
        good[..100].to_vec(),
        resign(&alice, flagged, &payload),
        resign(&alice, reply_without_parent, &payload),
        resign(&alice, bad_archive, &garbage),
    ] {
        let e = verify(bytes, &limits()).unwrap_err();
        assert_eq!(e.verdict(), Verdict::Invalid, "{e}");
    }
}

#[test]
fn batch_rejects_only_the_bad_ones() {
    let ids: Vec<Identity> = (0..5).map(identity).collect();
    let mut items: Vec<Vec<u8>> = (0..300)
        .map(|i| {
            ids[i % 5]
                .sign(&Draft::post(NOW - i as u64, &format!("post {i}")))
                .into_bytes()
        })
        .collect();
    let bad_sig_at = [7usize, 150, 299];
    for &i in &bad_sig_at {
        items[i][32 + HEADER_BYTES] ^= 0x01;
    }
    items[42].truncate(50);
    // A cache shared across calls: the second and third rounds find every author's key cached,
    // and the bad signatures must still be caught.
    let cache = KeyCache::new(3);
    for (round, threads) in [1, 2, 3, 1, 2, 3].into_iter().enumerate() {
        let results = if round < 3 {
            verify_batch_parallel(items.clone(), &limits(), threads)
        } else {
            verify_batch_parallel_cached(items.clone(), &limits(), threads, &cache)
        };
        assert_eq!(results.len(), items.len());
        for (i, r) in results.iter().enumerate() {
            if bad_sig_at.contains(&i) {
                assert_eq!(
                    r.as_ref().unwrap_err(),
                    &VerifyError::BadSignature,
                    "item {i}"
                );
            } else if i == 42 {
                assert!(matches!(r, Err(VerifyError::Decode(_))));
            } else {
                assert_eq!(
                    r.as_ref().unwrap().as_bytes(),
                    &items[i][..],
                    "item {i} in order"
                );
            }
        }
    }
}

fn arb_draft() -> impl Strategy<Value = (u8, Draft)> {
    let text = "[ -~]{0,200}";
    (
        any::<u8>(),
        0u8..4,
        0u64..NOW,
        any::<[u8; 32]>(),
        prop::option::of(any::<[u8; 32]>()),
        text,
    )
        .prop_map(|(seed, which, at, reference, topic, text)| {
            let reference = EventId(if reference == [0; 32] {
                [1; 32]
            } else {
                reference
            });
            let draft = match which {
                0 => Draft::post(at, &text),
                1 => Draft::reply(at, reference, &text),
                2 => Draft::reaction(at, reference, &text),
                _ => Draft::app(
                    Kind(Kind::APP_MIN.0 + 7),
                    at,
                    EventId::ZERO,
                    text.into_bytes(),
                ),
            };
            (
                seed,
                match topic {
                    Some(t) => draft.in_topic(Topic(t)),
                    None => draft,
                },
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn encode_decode_round_trip((seed, draft) in arb_draft()) {
        let event = identity(seed).sign(&draft);
        let bytes = event.as_bytes().to_vec();
        let view = EventRef::decode(&bytes).unwrap();
        prop_assert_eq!(view.kind(), draft.kind);
        prop_assert_eq!(view.created_at(), draft.created_at);
        prop_assert_eq!(view.topic(), &draft.topic);
        prop_assert_eq!(view.reference(), &draft.reference);
        prop_assert_eq!(view.payload(), &draft.payload[..]);
        prop_assert_eq!(view.id(), &event_id(view.header()));
        let again = verify(bytes.clone(), &limits()).unwrap();
        prop_assert_eq!(again.as_bytes(), &bytes[..]);
    }

    #[test]
    fn any_single_flipped_bit_is_rejected((seed, draft) in arb_draft(), bit in any::<prop::sample::Index>()) {
        let mut bytes = identity(seed).sign(&draft).into_bytes();
        let at = bit.index(bytes.len() * 8);
        bytes[at / 8] ^= 1 << (at % 8);
        prop_assert!(verify(bytes, &limits()).is_err(), "bit {} accepted", at);
    }
}

#[test]
fn envelopes_and_key_bundles_follow_their_rules_and_failures_are_not_understood() {
    let one_time = identity(40);
    let hour = NOW - NOW % ENVELOPE_TIME_QUANTUM_MS;
    let sealed = {
        let mut p = vec![ENVELOPE_VERSION];
        p.extend_from_slice(&[7u8; 32 + 16 + 256]);
        p
    };
    let tag = Topic([5; 32]);
    // A well-formed envelope verifies; its time is rounded down to the hour.
    let good = one_time.sign(&Draft::envelope(NOW, tag, sealed.clone()));
    let verified = verify(good.as_bytes().to_vec(), &limits()).expect("verifies");
    assert_eq!(verified.as_ref().created_at(), hour);
    assert!(one_time
        .sign_checked(&Draft::envelope(NOW, tag, sealed.clone()), &limits())
        .is_ok());

    let broken = |draft: Draft| {
        let err = verify(one_time.sign(&draft).into_bytes(), &limits()).unwrap_err();
        assert!(matches!(err, VerifyError::KindRule { .. }), "{err}");
        assert_eq!(err.verdict(), Verdict::NotUnderstood, "{err}");
        err
    };
    // Not on the hour, no tag, a reference, a short payload, another version.
    broken(Draft::app(Kind::ENVELOPE, hour + 1, EventId::ZERO, sealed.clone()).in_topic(tag));
    broken(Draft::app(
        Kind::ENVELOPE,
        hour,
        EventId::ZERO,
        sealed.clone(),
    ));
    broken(Draft::app(Kind::ENVELOPE, hour, EventId([1; 32]), sealed.clone()).in_topic(tag));
    broken(Draft::envelope(
        NOW,
        tag,
        sealed[..ENVELOPE_BYTES_MIN - 1].to_vec(),
    ));
    let mut v2 = sealed.clone();
    v2[0] = 2;
    broken(Draft::envelope(NOW, tag, v2));

    // Key bundles: an archive of version 1, no topic, no reference.
    let alice = identity(41);
    let bundle = KeyBundle {
        version: KEY_BUNDLE_VERSION,
        identity: [1; 32],
        prekey: [2; 32],
        seal: [3; 32],
    };
    let good = alice.sign(&Draft::key_bundle(NOW, &bundle));
    let verified = verify(good.as_bytes().to_vec(), &limits()).expect("verifies");
    let read = verified.as_ref().payload_as::<ArchivedKeyBundle>().unwrap();
    assert_eq!(read.prekey, [2; 32]);
    assert!(Kind::KEY_BUNDLE.is_replaceable());
    broken(Draft::key_bundle(NOW, &bundle).in_topic(tag));
    broken(Draft::app(
        Kind::KEY_BUNDLE,
        NOW,
        EventId::ZERO,
        b"not an archive".to_vec(),
    ));
    let v9 = KeyBundle {
        version: 9,
        ..bundle
    };
    broken(Draft::key_bundle(NOW, &v9));
    // A forged envelope is still invalid: the kind's rules come after nothing that matters.
    let mut forged = good.into_bytes();
    let n = forged.len();
    forged[n - 1] ^= 1;
    assert!(verify(forged, &limits())
        .unwrap_err()
        .verdict()
        .is_invalid());
}
