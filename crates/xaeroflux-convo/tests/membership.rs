//! Group membership: op signing and checking, dependency tracking, the membership rules, and
//! convergence of groups that receive the same ops in different orders (checked against a
//! direct, slow transcription of the rules).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use xaeroflux_convo::membership::{
    Action, Group, Inserted, OpBody, OpError, Role, SendCheck, SignedOp, MAX_DEPS, MAX_NAME_BYTES,
    MAX_PENDING,
};
use xaeroflux_convo::{Author, ConvoId, OpId};

const CONVO: ConvoId = [7; 32];

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn pk(key: &SigningKey) -> Author {
    key.verifying_key().to_bytes()
}

fn body(key: &SigningKey, deps: &[OpId], action: Action, tag_secret: Option<[u8; 32]>) -> OpBody {
    OpBody {
        convo: CONVO,
        author: pk(key),
        deps: deps.to_vec(),
        seen: Vec::new(),
        created_at: 1_700_000_000_000,
        action,
        tag_secret,
    }
}

fn op(key: &SigningKey, deps: &[OpId], action: Action, secret: Option<u8>) -> SignedOp {
    SignedOp::sign(&body(key, deps, action, secret.map(|s| [s; 32])), key)
}

fn genesis(key: &SigningKey) -> SignedOp {
    op(
        key,
        &[],
        Action::Create {
            name: "friends".into(),
        },
        Some(0xA0),
    )
}

fn add(by: &SigningKey, deps: &[OpId], who: &SigningKey, admin: bool) -> SignedOp {
    op(
        by,
        deps,
        Action::Add {
            member: pk(who),
            admin,
        },
        None,
    )
}

fn remove(by: &SigningKey, deps: &[OpId], who: &SigningKey, secret: u8) -> SignedOp {
    op(by, deps, Action::Remove { member: pk(who) }, Some(secret))
}

fn leave(by: &SigningKey, deps: &[OpId], secret: u8) -> SignedOp {
    op(by, deps, Action::Leave, Some(secret))
}

fn update(by: &SigningKey, deps: &[OpId], secret: u8) -> SignedOp {
    op(by, deps, Action::Update, Some(secret))
}

/// Inserts an op that must apply at once, and returns its id.
fn apply(group: &mut Group, op: &SignedOp) -> OpId {
    let id = op.id();
    match group.insert(op.clone()) {
        Ok(Inserted::Applied(ids)) => assert_eq!(ids.first(), Some(&id)),
        other => panic!("expected the op to apply, got {other:?}"),
    }
    id
}

fn names(group: &Group) -> BTreeSet<Author> {
    group.members().keys().copied().collect()
}

fn set(keys: &[&SigningKey]) -> BTreeSet<Author> {
    keys.iter().map(|k| pk(k)).collect()
}

/// Re-encodes a body without re-signing: keeps `op`'s signature.
fn reencoded(op: &SignedOp, body: &OpBody) -> SignedOp {
    SignedOp {
        body: rkyv::to_bytes::<rkyv::rancor::Error>(body)
            .unwrap()
            .into_vec(),
        signature: op.signature,
    }
}

/// Encodes a body exactly as given (no normalisation) and signs it.
fn sign_raw(key: &SigningKey, body: &OpBody) -> SignedOp {
    let mut op = SignedOp {
        body: rkyv::to_bytes::<rkyv::rancor::Error>(body)
            .unwrap()
            .into_vec(),
        signature: [0; 64],
    };
    op.signature = key.sign(&op.id()).to_bytes();
    op
}

// ---------------------------------------------------------------------------------------------
// Signing and opening

#[test]
fn sign_open_round_trip_normalises_deps_and_author() {
    let a = key(1);
    let other = key(2);
    let mut b = body(
        &a,
        &[[9; 32], [3; 32], [9; 32]],
        Action::Update,
        Some([5; 32]),
    );
    b.author = pk(&other);
    let signed = SignedOp::sign(&b, &a);
    let opened = signed.open().unwrap();
    assert_eq!(opened.author, pk(&a), "the author is the signing key");
    assert_eq!(
        opened.deps,
        vec![[3; 32], [9; 32]],
        "deps sorted, deduplicated"
    );
    assert_eq!(opened.convo, CONVO);
    assert_eq!(opened.created_at, b.created_at);
    assert_eq!(opened.action, Action::Update);
    assert_eq!(opened.tag_secret, Some([5; 32]));
    assert_eq!(
        signed.id(),
        blake3::derive_key("xaeroflux convo op v1", &signed.body)
    );
    // Deterministic: the same body signs to the same bytes and id.
    assert_eq!(SignedOp::sign(&b, &a), signed);
    // SignedOp itself round-trips through rkyv (as the engine stores it).
    let stored = rkyv::to_bytes::<rkyv::rancor::Error>(&signed).unwrap();
    let back = rkyv::from_bytes::<SignedOp, rkyv::rancor::Error>(&stored).unwrap();
    assert_eq!(back, signed);
}

#[test]
fn tampered_body_signature_or_author_is_refused() {
    let a = key(1);
    let signed = op(&a, &[[1; 32]], Action::Leave, Some(4));
    let original = signed.open().unwrap();

    let mut changed = original.clone();
    changed.action = Action::Update;
    assert_eq!(
        reencoded(&signed, &changed).open(),
        Err(OpError::BadSignature)
    );

    let mut changed = original.clone();
    changed.tag_secret = Some([5; 32]);
    assert_eq!(
        reencoded(&signed, &changed).open(),
        Err(OpError::BadSignature)
    );

    let mut bad_sig = signed.clone();
    bad_sig.signature[10] ^= 1;
    assert_eq!(bad_sig.open(), Err(OpError::BadSignature));

    // Claiming another author keeps the original signature, which is not theirs.
    let mut claimed = original.clone();
    claimed.author = pk(&key(2));
    assert_eq!(
        reencoded(&signed, &claimed).open(),
        Err(OpError::BadSignature)
    );

    // An author that is not a curve point.
    let not_a_point = (0u8..=255)
        .map(|i| {
            let mut bytes = [0u8; 32];
            bytes[0] = i;
            bytes[31] = 0x7f;
            bytes
        })
        .find(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_err())
        .expect("some 32-byte strings are not points");
    let mut claimed = original;
    claimed.author = not_a_point;
    assert_eq!(
        reencoded(&signed, &claimed).open(),
        Err(OpError::InvalidAuthor)
    );
}

#[test]
fn garbage_is_malformed() {
    for bytes in [
        Vec::new(),
        vec![0u8; 1],
        vec![0xff; 16],
        vec![0u8; 200],
        b"not an archive at all".to_vec(),
    ] {
        let op = SignedOp {
            body: bytes,
            signature: [0; 64],
        };
        assert!(op.open() == Err(OpError::Malformed), "{:?}", op.open());
    }
    // Truncations of a valid body.
    let valid = genesis(&key(1));
    for len in 0..valid.body.len() {
        let op = SignedOp {
            body: valid.body[..len].to_vec(),
            signature: valid.signature,
        };
        assert!(op.open().is_err(), "truncated to {len}");
    }
}

#[test]
fn limits_are_enforced() {
    let a = key(1);
    let deps: Vec<OpId> = (0..=MAX_DEPS).map(|i| [i as u8; 32]).collect();
    let too_many = op(&a, &deps, Action::Update, None);
    assert_eq!(
        too_many.open(),
        Err(OpError::TooManyDeps {
            count: MAX_DEPS + 1
        })
    );
    let at_limit = op(&a, &deps[..MAX_DEPS], Action::Update, None);
    assert!(at_limit.open().is_ok());

    let unsorted = sign_raw(&a, &body(&a, &[[2; 32], [1; 32]], Action::Update, None));
    assert_eq!(unsorted.open(), Err(OpError::UnsortedDeps));
    let repeated = sign_raw(&a, &body(&a, &[[2; 32], [2; 32]], Action::Update, None));
    assert_eq!(repeated.open(), Err(OpError::UnsortedDeps));

    let long = op(
        &a,
        &[],
        Action::Create {
            name: "x".repeat(MAX_NAME_BYTES + 1),
        },
        None,
    );
    assert_eq!(
        long.open(),
        Err(OpError::NameTooLong {
            len: MAX_NAME_BYTES + 1
        })
    );
    let huge = op(
        &a,
        &[],
        Action::Create {
            name: "x".repeat(20_000),
        },
        None,
    );
    assert!(matches!(huge.open(), Err(OpError::TooLarge { .. })));
}

#[test]
fn debug_output_hides_tag_secrets() {
    let a = key(1);
    let signed = op(&a, &[], Action::Create { name: "n".into() }, Some(0xAB));
    let opened = signed.open().unwrap();
    let secret_dec = format!("{:?}", [0xABu8; 32]);
    for text in [
        format!("{opened:?}"),
        format!("{signed:?}"),
        format!("{:?}", Group::new(signed.clone()).unwrap()),
    ] {
        assert!(!text.contains(&secret_dec), "{text}");
        assert!(!text.contains("abab"), "{text}");
        assert!(!text.contains("171, 171"), "{text}");
    }
    assert!(format!("{opened:?}").contains("redacted"));
}

// ---------------------------------------------------------------------------------------------
// Group structure

#[test]
fn new_and_insert_refuse_structural_errors() {
    let a = key(1);
    let g0 = genesis(&a);
    let g0_id = g0.id();
    assert_eq!(
        Group::new(add(&a, &[], &key(2), false)).unwrap_err(),
        OpError::NotGenesis
    );
    let create_with_deps = op(&a, &[[1; 32]], Action::Create { name: "n".into() }, None);
    assert_eq!(
        Group::new(create_with_deps).unwrap_err(),
        OpError::NotGenesis
    );
    assert_eq!(
        Group::new(SignedOp {
            body: vec![1, 2, 3],
            signature: [0; 64]
        })
        .unwrap_err(),
        OpError::Malformed
    );

    let mut g = Group::new(g0.clone()).unwrap();
    assert_eq!(g.convo(), CONVO);
    assert_eq!(g.genesis(), g0_id);
    assert_eq!(g.name(), "friends");
    assert_eq!(g.heads(), vec![g0_id]);
    assert_eq!(g.insert(g0.clone()), Ok(Inserted::Duplicate));

    let second = op(&a, &[g0_id], Action::Create { name: "n".into() }, None);
    assert_eq!(g.insert(second), Err(OpError::SecondCreate));
    let other_genesis = op(&a, &[], Action::Create { name: "n".into() }, None);
    assert_eq!(g.insert(other_genesis), Err(OpError::SecondCreate));

    let mut elsewhere = body(&a, &[g0_id], Action::Update, None);
    elsewhere.convo = [8; 32];
    assert_eq!(
        g.insert(SignedOp::sign(&elsewhere, &a)),
        Err(OpError::WrongConversation)
    );
    assert_eq!(g.insert(update(&a, &[], 1)), Err(OpError::NoDeps));
    let mut forged = update(&a, &[g0_id], 1);
    forged.signature[0] ^= 0x80;
    assert_eq!(g.insert(forged), Err(OpError::BadSignature));
    assert_eq!(g.heads(), vec![g0_id], "refused ops leave no trace");
    assert_eq!(g.ops().len(), 1);
}

#[test]
fn pending_ops_apply_when_deps_arrive_cascading() {
    let a = key(1);
    let (b, c) = (key(2), key(3));
    let g0 = genesis(&a);
    let mut source = Group::new(g0.clone()).unwrap();
    let a1 = add(&a, &[g0.id()], &b, false);
    let a1_id = apply(&mut source, &a1);
    let a2 = add(&a, &[a1_id], &c, false);
    let a2_id = apply(&mut source, &a2);
    let u_b = update(&b, &[a2_id], 1);
    let u_c = update(&c, &[a2_id], 2);
    let both = update(&a, &[u_b.id(), u_c.id()], 3);

    let mut g = Group::new(g0).unwrap();
    assert_eq!(g.insert(both.clone()), Ok(Inserted::Pending));
    assert_eq!(g.insert(both.clone()), Ok(Inserted::Duplicate));
    let mut want = vec![u_b.id(), u_c.id()];
    want.sort();
    assert_eq!(g.missing(), want);
    assert_eq!(g.insert(u_c.clone()), Ok(Inserted::Pending));
    assert_eq!(g.insert(u_b.clone()), Ok(Inserted::Pending));
    assert_eq!(g.insert(a2.clone()), Ok(Inserted::Pending));
    assert_eq!(g.missing(), vec![a1_id], "held ops are not missing");
    assert_eq!(g.pending(), 4);
    assert!(!g.has(&both.id()));
    assert_eq!(g.op_valid(&both.id()), None);
    assert!(g.body(&both.id()).is_none());
    assert!(!g.is_member(&pk(&b)));

    let Ok(Inserted::Applied(ids)) = g.insert(a1.clone()) else {
        panic!("a1 applies")
    };
    assert_eq!(ids.len(), 5);
    assert_eq!(ids[0], a1_id);
    assert_eq!(ids[1], a2_id);
    assert_eq!(ids[4], both.id(), "the op naming both updates comes last");
    assert_eq!(
        ids[2..4].iter().copied().collect::<BTreeSet<_>>(),
        [u_b.id(), u_c.id()].into_iter().collect()
    );
    assert_eq!(g.pending(), 0);
    assert!(g.missing().is_empty());
    assert_eq!(g.heads(), vec![both.id()]);
    assert_eq!(names(&g), set(&[&a, &b, &c]));
    for id in &ids {
        assert!(g.has(id));
        assert_eq!(g.op_valid(id), Some(true));
    }
    assert_eq!(g.insert(u_b.clone()), Ok(Inserted::Duplicate));
    assert_eq!(g.insert(a1), Ok(Inserted::Duplicate));
    assert_eq!(g.tag_secrets(), {
        // Linear order: genesis, a1, a2, then the two updates by id, then `both`.
        let mut mid = vec![(u_b.id(), [1u8; 32]), (u_c.id(), [2u8; 32])];
        mid.sort();
        let mut v = vec![[0xA0; 32]];
        v.extend(mid.into_iter().map(|(_, s)| s));
        v.push([3; 32]);
        v
    });
    assert_eq!(g.current_tag_secret(), Some([3; 32]));
}

#[test]
fn heads_ops_and_catch_up_follow_the_dag() {
    let a = key(1);
    let (b, c) = (key(2), key(3));
    let g0 = genesis(&a);
    let g0_id = g0.id();
    let mut g = Group::new(g0).unwrap();
    let a1 = apply(&mut g, &add(&a, &[g0_id], &b, true));
    let x = apply(&mut g, &update(&a, &[a1], 1));
    let y = apply(&mut g, &update(&b, &[a1], 2));
    let mut heads = vec![x, y];
    heads.sort();
    assert_eq!(g.heads(), heads);
    let a2 = apply(&mut g, &add(&b, &[y], &c, false));
    let mut heads = vec![x, a2];
    heads.sort();
    assert_eq!(g.heads(), heads);

    assert!(g.ancestors_contains(&a2, &g0_id));
    assert!(g.ancestors_contains(&a2, &y));
    assert!(!g.ancestors_contains(&a2, &x));
    assert!(!g.ancestors_contains(&a2, &a2), "strict");
    assert!(!g.ancestors_contains(&g0_id, &a2));
    assert!(!g.ancestors_contains(&[0; 32], &g0_id));

    let ops: Vec<OpId> = g.ops().iter().map(SignedOp::id).collect();
    assert_eq!(ops.len(), 5);
    assert_eq!(ops[0], g0_id);
    let position = |id: &OpId| ops.iter().position(|o| o == id).unwrap();
    for id in &ops {
        for dep in &g.body(id).unwrap().deps {
            assert!(position(dep) < position(id), "deps first");
        }
    }
    // A member added by a2 needs x only.
    let catch_up: Vec<OpId> = g.ops_not_in_past_of(&a2).iter().map(SignedOp::id).collect();
    assert_eq!(catch_up, vec![x]);
    let catch_up: Vec<OpId> = g.ops_not_in_past_of(&a1).iter().map(SignedOp::id).collect();
    assert_eq!(catch_up.len(), 3);
    assert!(!catch_up.contains(&a1) && !catch_up.contains(&g0_id));
    assert_eq!(
        g.ops_not_in_past_of(&[0; 32]).len(),
        5,
        "unknown: everything"
    );

    let roles = g.members();
    assert_eq!(
        roles.get(&pk(&a)),
        Some(&Role {
            admin: true,
            rank: 0
        })
    );
    assert_eq!(
        roles.get(&pk(&b)),
        Some(&Role {
            admin: true,
            rank: 1
        })
    );
    assert_eq!(roles.get(&pk(&c)).map(|r| r.admin), Some(false));
}

// ---------------------------------------------------------------------------------------------
// Rules

#[test]
fn admin_adds_and_non_admin_cannot() {
    let a = key(1);
    let (b, c, d) = (key(2), key(3), key(4));
    let g0 = genesis(&a);
    let mut g = Group::new(g0.clone()).unwrap();
    assert_eq!(names(&g), set(&[&a]));
    assert!(g.is_admin(&pk(&a)));
    let a1 = apply(&mut g, &add(&a, &[g0.id()], &b, false));
    assert!(g.is_member(&pk(&b)));
    assert!(!g.is_admin(&pk(&b)));
    assert_eq!(g.op_valid(&a1), Some(true));

    // b is a member but not an admin: its Add is invalid.
    let bad = apply(&mut g, &add(&b, &[a1], &c, false));
    assert_eq!(g.op_valid(&bad), Some(false));
    assert!(!g.is_member(&pk(&c)));
    // An outsider cannot add itself or anyone, nor update.
    let outsider = apply(&mut g, &add(&d, &[a1], &d, true));
    assert_eq!(g.op_valid(&outsider), Some(false));
    let outsider_update = apply(&mut g, &update(&d, &[a1], 9));
    assert_eq!(g.op_valid(&outsider_update), Some(false));
    assert!(!g.tag_secrets().contains(&[9; 32]));
    // An admin cannot add itself (already a member; the rule forbids it outright).
    let self_add = apply(&mut g, &add(&a, &[a1], &a, true));
    assert_eq!(g.op_valid(&self_add), Some(false));
    // Promotion: a makes b an admin, with the promotion's rank.
    let promote = apply(
        &mut g,
        &add(
            &a,
            &[a1, bad, outsider, outsider_update, self_add],
            &b,
            true,
        ),
    );
    assert_eq!(g.op_valid(&promote), Some(true));
    let role = g.members()[&pk(&b)];
    assert!(role.admin);
    assert_eq!(
        role.rank, 6,
        "position of the promotion in the linearization"
    );
    // Now b can add.
    let good = apply(&mut g, &add(&b, &[promote], &c, false));
    assert_eq!(g.op_valid(&good), Some(true));
    assert_eq!(names(&g), set(&[&a, &b, &c]));
}

#[test]
fn member_leaves() {
    let a = key(1);
    let b = key(2);
    let g0 = genesis(&a);
    let mut g = Group::new(g0.clone()).unwrap();
    let a1 = apply(&mut g, &add(&a, &[g0.id()], &b, false));
    let l = apply(&mut g, &leave(&b, &[a1], 0x11));
    assert_eq!(g.op_valid(&l), Some(true));
    assert_eq!(names(&g), set(&[&a]));
    assert_eq!(g.current_tag_secret(), Some([0x11; 32]));
    // After leaving, b's ops are invalid and a second leave does nothing.
    let after = apply(&mut g, &update(&b, &[l], 0x12));
    assert_eq!(g.op_valid(&after), Some(false));
    let again = apply(&mut g, &leave(&b, &[l], 0x13));
    assert_eq!(g.op_valid(&again), Some(false));
    assert_eq!(g.current_tag_secret(), Some([0x11; 32]));
    assert_eq!(g.tag_secrets(), vec![[0xA0; 32], [0x11; 32]]);
    // The creator may leave too; the group then has no admin, and nobody can add.
    let la = apply(&mut g, &leave(&a, &[after, again], 0x14));
    assert_eq!(g.op_valid(&la), Some(true));
    assert!(g.members().is_empty());
    let late = apply(&mut g, &add(&a, &[la], &b, false));
    assert_eq!(g.op_valid(&late), Some(false));
}

#[test]
fn admins_remove_only_more_junior_admins() {
    let a = key(1);
    let (b, c, d) = (key(2), key(3), key(4));
    let g0 = genesis(&a);
    let mut g = Group::new(g0.clone()).unwrap();
    let a1 = apply(&mut g, &add(&a, &[g0.id()], &b, true)); // b: admin, rank 1
    let a2 = apply(&mut g, &add(&a, &[a1], &c, true)); // c: admin, rank 2
    let a3 = apply(&mut g, &add(&a, &[a2], &d, false)); // d: member

    let mut junior = g.clone();
    let c_removes_b = apply(&mut junior, &remove(&c, &[a3], &b, 1));
    assert_eq!(junior.op_valid(&c_removes_b), Some(false));
    assert!(junior.is_member(&pk(&b)));
    let c_removes_a = apply(&mut junior, &remove(&c, &[a3], &a, 2));
    assert_eq!(junior.op_valid(&c_removes_a), Some(false));
    // Any admin removes a plain member.
    let c_removes_d = apply(&mut junior, &remove(&c, &[a3], &d, 3));
    assert_eq!(junior.op_valid(&c_removes_d), Some(true));
    assert_eq!(names(&junior), set(&[&a, &b, &c]));
    // Nobody removes themselves with Remove (that is Leave).
    let self_remove = apply(&mut junior, &remove(&c, &[c_removes_d], &c, 4));
    assert_eq!(junior.op_valid(&self_remove), Some(false));
    // A member who is not an admin removes nobody.
    let mut plain = g.clone();
    let d_removes = apply(&mut plain, &remove(&d, &[a3], &c, 5));
    assert_eq!(plain.op_valid(&d_removes), Some(false));
    assert!(plain.is_member(&pk(&c)));

    let b_removes_c = apply(&mut g, &remove(&b, &[a3], &c, 6));
    assert_eq!(g.op_valid(&b_removes_c), Some(true));
    assert_eq!(names(&g), set(&[&a, &b, &d]));

    // Promotion gives the promoted admin the rank of the promotion: after a promotes b again
    // below c, c is senior and may remove b.
    let mut h = Group::new(g0.clone()).unwrap();
    let h1 = apply(&mut h, &add(&a, &[g0.id()], &b, false)); // b: member
    let h2 = apply(&mut h, &add(&a, &[h1], &c, true)); // c: admin, rank 2
    let h3 = apply(&mut h, &add(&a, &[h2], &b, true)); // b: admin, rank 3
    let c_removes_b = apply(&mut h, &remove(&c, &[h3], &b, 7));
    assert_eq!(h.op_valid(&c_removes_b), Some(true));
    assert_eq!(names(&h), set(&[&a, &c]));
}

#[test]
fn concurrent_add_and_remove_remove_wins() {
    let a = key(1);
    let (b, x) = (key(2), key(6));
    let g0 = genesis(&a);
    let mut base = Group::new(g0.clone()).unwrap();
    let a1 = apply(&mut base, &add(&a, &[g0.id()], &b, true));
    let a2 = apply(&mut base, &add(&a, &[a1], &x, false));
    let ops_before = base.ops();

    // Concurrently: a (re-)adds x as an admin, b removes x, and x writes an update.
    let promote = add(&a, &[a2], &x, true);
    let removal = remove(&b, &[a2], &x, 0x21);
    let x_update = update(&x, &[a2], 0x22);

    let mut one = base.clone();
    apply(&mut one, &promote);
    assert!(one.is_admin(&pk(&x)), "before the removal arrives");
    apply(&mut one, &removal);
    apply(&mut one, &x_update);

    let mut two = Group::from_ops(g0.clone(), ops_before).unwrap();
    apply(&mut two, &x_update);
    apply(&mut two, &removal);
    apply(&mut two, &promote);

    for g in [&one, &two] {
        assert_eq!(names(g), set(&[&a, &b]));
        assert_eq!(g.op_valid(&promote.id()), Some(false));
        assert_eq!(g.op_valid(&removal.id()), Some(true));
        assert_eq!(g.op_valid(&x_update.id()), Some(false), "strong removal");
        assert_eq!(g.current_tag_secret(), Some([0x21; 32]));
    }
    assert_eq!(one.members(), two.members());
    assert_eq!(one.heads(), two.heads());
    assert_eq!(one.tag_secrets(), two.tag_secrets());

    // An Add that has seen the removal re-adds x.
    let readd = add(&a, &[promote.id(), removal.id(), x_update.id()], &x, false);
    apply(&mut one, &readd);
    assert!(one.is_member(&pk(&x)));
}

#[test]
fn removed_admins_backdated_ops_are_void() {
    let a = key(1);
    let (b, c, d, e) = (key(2), key(3), key(4), key(5));
    let g0 = genesis(&a);
    let mut g = Group::new(g0.clone()).unwrap();
    let a1 = apply(&mut g, &add(&a, &[g0.id()], &b, true));
    let a2 = apply(&mut g, &add(&a, &[a1], &c, false));
    let a3 = apply(&mut g, &add(&a, &[a2], &d, false));

    // b's ops written after its removal but naming only ops before it.
    let late = |action: Action, secret: u8| {
        let mut body = body(&b, &[a3], action, Some([secret; 32]));
        body.created_at += 60_000;
        SignedOp::sign(&body, &b)
    };
    let b_removes_c = late(Action::Remove { member: pk(&c) }, 0x31);
    let b_adds_e = late(
        Action::Add {
            member: pk(&e),
            admin: true,
        },
        0x32,
    );
    let b_update = late(Action::Update, 0x33);
    let b_removes_a = late(Action::Remove { member: pk(&a) }, 0x34);
    let removal = remove(&a, &[a3], &b, 0x30);

    // Before the removal arrives, b's ops look valid.
    let mut early = g.clone();
    apply(&mut early, &b_removes_c);
    apply(&mut early, &b_adds_e);
    apply(&mut early, &b_update);
    apply(&mut early, &b_removes_a);
    assert_eq!(names(&early), set(&[&a, &b, &d, &e]));
    assert_eq!(
        early.op_valid(&b_removes_a.id()),
        Some(false),
        "a is senior"
    );
    apply(&mut early, &removal);

    let mut later = g.clone();
    apply(&mut later, &removal);
    apply(&mut later, &b_update);
    apply(&mut later, &b_adds_e);
    apply(&mut later, &b_removes_a);
    apply(&mut later, &b_removes_c);

    for g in [&early, &later] {
        assert_eq!(names(g), set(&[&a, &c, &d]));
        assert_eq!(g.op_valid(&removal.id()), Some(true));
        for void in [&b_removes_c, &b_adds_e, &b_update, &b_removes_a] {
            assert_eq!(g.op_valid(&void.id()), Some(false));
        }
        assert_eq!(g.tag_secrets(), vec![[0xA0; 32], [0x30; 32]]);
        assert_eq!(g.current_tag_secret(), Some([0x30; 32]));
    }
    assert_eq!(early.members(), later.members());
    assert_eq!(early.heads(), later.heads());
    // e was never added, so cannot write.
    assert_eq!(
        later.may_send(&pk(&e), &later.heads()),
        SendCheck::NotMember
    );
}

#[test]
fn concurrent_leave_voids_the_leavers_other_ops() {
    let a = key(1);
    let (b, c) = (key(2), key(3));
    let g0 = genesis(&a);
    let mut g = Group::new(g0.clone()).unwrap();
    let a1 = apply(&mut g, &add(&a, &[g0.id()], &b, true));
    let l = apply(&mut g, &leave(&b, &[a1], 0x41));
    let add_c = apply(&mut g, &add(&b, &[a1], &c, false));
    assert_eq!(g.op_valid(&l), Some(true));
    assert_eq!(g.op_valid(&add_c), Some(false));
    assert_eq!(names(&g), set(&[&a]));
}

#[test]
fn re_adding_after_removal_works() {
    let a = key(1);
    let b = key(2);
    let g0 = genesis(&a);
    let mut g = Group::new(g0.clone()).unwrap();
    let a1 = apply(&mut g, &add(&a, &[g0.id()], &b, false));
    let r = apply(&mut g, &remove(&a, &[a1], &b, 0x51));
    assert!(!g.is_member(&pk(&b)));
    let stale = apply(&mut g, &update(&b, &[a1], 0x52));
    assert_eq!(g.op_valid(&stale), Some(false));
    let readd = apply(&mut g, &add(&a, &[r], &b, false));
    assert_eq!(g.op_valid(&readd), Some(true));
    assert!(g.is_member(&pk(&b)));
    let fresh = apply(&mut g, &update(&b, &[readd, stale], 0x53));
    assert_eq!(g.op_valid(&fresh), Some(true));
    assert_eq!(g.op_valid(&stale), Some(false), "still void");
    assert_eq!(g.may_send(&pk(&b), &[fresh]), SendCheck::Valid);
    assert_eq!(g.may_send(&pk(&b), &[readd]), SendCheck::Valid);
    assert_eq!(
        g.may_send(&pk(&b), &[a1]),
        SendCheck::RemovedConcurrently,
        "written before the removal was seen"
    );
    assert_eq!(g.may_send(&pk(&b), &[r]), SendCheck::NotMember);
    assert_eq!(g.tag_secrets(), vec![[0xA0; 32], [0x51; 32], [0x53; 32]]);
}

#[test]
fn may_send_checks_messages() {
    let a = key(1);
    let (b, c, x) = (key(2), key(3), key(6));
    let g0 = genesis(&a);
    let mut g = Group::new(g0.clone()).unwrap();
    let a1 = apply(&mut g, &add(&a, &[g0.id()], &b, false));
    let a2 = apply(&mut g, &add(&a, &[a1], &c, false));
    assert_eq!(g.may_send(&pk(&b), &[a2]), SendCheck::Valid);
    assert_eq!(g.may_send(&pk(&b), &[a1]), SendCheck::Valid);
    assert_eq!(g.may_send(&pk(&b), &[a1, a2, a1]), SendCheck::Valid);
    assert_eq!(g.may_send(&pk(&x), &[a2]), SendCheck::NotMember);
    assert_eq!(g.may_send(&pk(&c), &[a1]), SendCheck::NotMember);
    assert_eq!(g.may_send(&pk(&a), &[]), SendCheck::NotMember);
    let unknown = [0xEE; 32];
    assert_eq!(
        g.may_send(&pk(&b), &[a2, unknown, unknown]),
        SendCheck::MissingDeps(vec![unknown])
    );
    // A held-back op is not applied either.
    let held = update(&b, &[unknown], 1);
    assert_eq!(g.insert(held.clone()), Ok(Inserted::Pending));
    assert_eq!(
        g.may_send(&pk(&b), &[held.id()]),
        SendCheck::MissingDeps(vec![held.id()])
    );

    let r = apply(&mut g, &remove(&a, &[a2], &b, 0x61));
    assert_eq!(g.may_send(&pk(&b), &[a2]), SendCheck::RemovedConcurrently);
    assert_eq!(g.may_send(&pk(&b), &[r]), SendCheck::NotMember);
    assert_eq!(g.may_send(&pk(&c), &[a2]), SendCheck::Valid);
    assert_eq!(g.may_send(&pk(&c), &[r]), SendCheck::Valid);
    // c leaves concurrently with a message that had not seen it.
    let side = apply(&mut g, &update(&a, &[a2], 0x62));
    let l = apply(&mut g, &leave(&c, &[r], 0x63));
    assert_eq!(g.may_send(&pk(&c), &[side]), SendCheck::RemovedConcurrently);
    assert_eq!(g.may_send(&pk(&c), &[l]), SendCheck::NotMember);
    assert_eq!(g.may_send(&pk(&a), &g.heads()), SendCheck::Valid);
}

// ---------------------------------------------------------------------------------------------
// Rebuilding

#[test]
fn from_ops_rebuilds_in_any_order() {
    let a = key(1);
    let (b, c) = (key(2), key(3));
    let g0 = genesis(&a);
    let mut g = Group::new(g0.clone()).unwrap();
    let a1 = apply(&mut g, &add(&a, &[g0.id()], &b, true));
    let a2 = apply(&mut g, &add(&b, &[a1], &c, false));
    let u = apply(&mut g, &update(&c, &[a2], 1));
    apply(&mut g, &remove(&a, &[a1], &b, 2));
    apply(&mut g, &leave(&c, &[u], 3));

    let mut ops = g.ops();
    ops.reverse();
    ops.push(g0.clone());
    ops.push(ops[0].clone());
    let rebuilt = Group::from_ops(g0.clone(), ops).unwrap();
    assert_eq!(rebuilt.members(), g.members());
    assert_eq!(rebuilt.heads(), g.heads());
    assert_eq!(rebuilt.tag_secrets(), g.tag_secrets());
    assert_eq!(rebuilt.ops(), g.ops());
    assert_eq!(rebuilt.pending(), 0);

    // An op whose deps are absent is held back, not refused.
    let orphan = update(&a, &[[0xDD; 32]], 4);
    let partial = Group::from_ops(g0.clone(), vec![orphan]).unwrap();
    assert_eq!(partial.pending(), 1);
    assert_eq!(partial.missing(), vec![[0xDD; 32]]);

    // A corrupt op fails the rebuild.
    let mut bad = update(&a, &[a1], 5);
    bad.signature[3] ^= 4;
    assert_eq!(
        Group::from_ops(g0, vec![bad]).unwrap_err(),
        OpError::BadSignature
    );
}

#[test]
fn long_chain_delivered_backwards() {
    let a = key(1);
    let g0 = genesis(&a);
    let members: Vec<SigningKey> = (10..=200u8).map(key).collect();
    let mut ops = Vec::new();
    let mut head = g0.id();
    for i in 0..1_500usize {
        let op = if i % 3 == 0 {
            add(&a, &[head], &members[(i / 3) % members.len()], i % 2 == 0)
        } else {
            update(&a, &[head], (i % 251) as u8)
        };
        head = op.id();
        ops.push(op);
    }
    let started = std::time::Instant::now();
    let mut g = Group::new(g0.clone()).unwrap();
    for op in ops[1..].iter().rev() {
        assert_eq!(g.insert(op.clone()), Ok(Inserted::Pending));
    }
    assert_eq!(g.missing(), vec![ops[0].id()]);
    let Ok(Inserted::Applied(ids)) = g.insert(ops[0].clone()) else {
        panic!("the first op unblocks the chain")
    };
    assert_eq!(ids, ops.iter().map(SignedOp::id).collect::<Vec<_>>());
    assert_eq!(g.heads(), vec![head]);
    assert_eq!(g.members().len(), 1 + members.len());
    eprintln!("1500-op chain applied backwards in {:?}", started.elapsed());
    let rebuilt = Group::from_ops(g0, ops).unwrap();
    assert_eq!(rebuilt.members(), g.members());
    assert_eq!(rebuilt.current_tag_secret(), g.current_tag_secret());
}

#[test]
fn held_back_ops_are_capped() {
    let a = key(1);
    let g0 = genesis(&a);
    let mut g = Group::new(g0).unwrap();
    for i in 0..MAX_PENDING as u64 {
        let orphan = SignedOp::sign(
            &OpBody {
                created_at: i,
                ..body(&a, &[[0xDD; 32]], Action::Update, None)
            },
            &a,
        );
        assert_eq!(g.insert(orphan), Ok(Inserted::Pending));
    }
    assert_eq!(g.pending(), MAX_PENDING);
    let one_more = update(&a, &[[0xDD; 32]], 1);
    assert_eq!(g.insert(one_more), Err(OpError::TooManyOps));
    // Ops whose deps are all applied still go in.
    let fine = update(&a, &[g.genesis()], 2);
    assert!(matches!(g.insert(fine), Ok(Inserted::Applied(_))));
    assert_eq!(g.missing(), vec![[0xDD; 32]]);
}

// ---------------------------------------------------------------------------------------------
// Convergence: random scenarios, random delivery orders, and a direct transcription of the rules

/// splitmix64: a small deterministic generator for delivery orders.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// One step of a scenario: who writes (or, with the high bit of `kind`, one of the authors
/// who believe they are admins), what, about whom, and a seed for what the writer has received.
type Step = (u8, u8, u8, bool, u64);

struct Scenario {
    genesis: SignedOp,
    ops: Vec<SignedOp>,
    authors: Vec<Author>,
}

fn scenario(seed: u64, n_authors: usize, steps: &[Step]) -> Scenario {
    let keys: Vec<SigningKey> = (0..n_authors)
        .map(|i| {
            let mut input = seed.to_le_bytes().to_vec();
            input.push(i as u8);
            SigningKey::from_bytes(&blake3::derive_key("membership test author", &input))
        })
        .collect();
    let authors: Vec<Author> = keys.iter().map(pk).collect();
    let genesis = genesis(&keys[0]);
    let mut views: Vec<Group> = (0..n_authors)
        .map(|_| Group::new(genesis.clone()).unwrap())
        .collect();
    let mut ops: Vec<SignedOp> = Vec::new();
    for (step, &(who, kind, target, admin, delivery)) in steps.iter().enumerate() {
        let mut writer = who as usize % n_authors;
        if kind & 0x80 != 0 {
            let admins: Vec<usize> = (0..n_authors)
                .filter(|&i| views[i].is_admin(&authors[i]))
                .collect();
            if !admins.is_empty() {
                writer = admins[who as usize % admins.len()];
            }
        }
        let mut rng = Rng(delivery);
        for op in &ops {
            if rng.next() & 1 == 0 {
                views[writer].insert(op.clone()).unwrap();
            }
        }
        let member = authors[target as usize % n_authors];
        let secret = {
            let mut input = seed.to_le_bytes().to_vec();
            input.extend_from_slice(&(step as u64).to_le_bytes());
            Some(blake3::derive_key("membership test secret", &input))
        };
        // Mostly adds, so that groups grow; a writer who believes it is the last admin does
        // not leave, so that groups rarely die out early.
        let last_admin = views[writer].is_admin(&authors[writer])
            && views[writer].members().values().filter(|r| r.admin).count() == 1;
        let (action, tag_secret) = match kind % 16 {
            0..=6 => (Action::Add { member, admin }, None),
            7..=9 => (Action::Remove { member }, secret),
            10 | 11 if !last_admin => (Action::Leave, secret),
            _ => (Action::Update, secret),
        };
        let body = OpBody {
            convo: CONVO,
            author: authors[writer],
            deps: views[writer].heads(),
            seen: Vec::new(),
            created_at: step as u64,
            action,
            tag_secret,
        };
        let op = SignedOp::sign(&body, &keys[writer]);
        assert!(matches!(
            views[writer].insert(op.clone()),
            Ok(Inserted::Applied(_))
        ));
        ops.push(op);
    }
    Scenario {
        genesis,
        ops,
        authors,
    }
}

/// The rules read literally: sets of ids, repeated searches, no caching beyond causal validity.
struct Model {
    genesis: OpId,
    bodies: BTreeMap<OpId, OpBody>,
    pasts: BTreeMap<OpId, BTreeSet<OpId>>,
    causal: HashMap<OpId, bool>,
}

type State = BTreeMap<Author, Role>;

impl Model {
    fn new(genesis: &SignedOp, ops: &[SignedOp]) -> Model {
        let mut bodies = BTreeMap::new();
        bodies.insert(genesis.id(), genesis.open().unwrap());
        for op in ops {
            bodies.insert(op.id(), op.open().unwrap());
        }
        let mut pasts = BTreeMap::new();
        for id in bodies.keys() {
            let mut past = BTreeSet::new();
            let mut stack: Vec<OpId> = bodies[id].deps.clone();
            while let Some(d) = stack.pop() {
                if past.insert(d) {
                    stack.extend(bodies[&d].deps.iter().copied());
                }
            }
            pasts.insert(*id, past);
        }
        let mut model = Model {
            genesis: genesis.id(),
            bodies,
            pasts,
            causal: HashMap::new(),
        };
        // Decide causal validity in an order where pasts come first.
        let all: BTreeSet<OpId> = model.bodies.keys().copied().collect();
        for id in model.linearize(&all) {
            let valid = model.causally_valid(&id);
            model.causal.insert(id, valid);
        }
        model
    }

    fn all(&self) -> BTreeSet<OpId> {
        self.bodies.keys().copied().collect()
    }

    fn linearize(&self, set: &BTreeSet<OpId>) -> Vec<OpId> {
        let mut taken: BTreeSet<OpId> = BTreeSet::new();
        let mut order = Vec::new();
        while let Some(next) = set
            .iter()
            .filter(|o| !taken.contains(*o))
            .find(|o| self.bodies[*o].deps.iter().all(|d| taken.contains(d)))
        {
            taken.insert(*next);
            order.push(*next);
        }
        assert_eq!(order.len(), set.len());
        order
    }

    fn causally_valid(&self, id: &OpId) -> bool {
        let body = &self.bodies[id];
        let (state, _) = self.state(&self.pasts[id]);
        let a = body.author;
        match &body.action {
            Action::Create { .. } => *id == self.genesis,
            Action::Add { member, .. } => state.get(&a).is_some_and(|r| r.admin) && *member != a,
            Action::Remove { member } => match (state.get(&a), state.get(member)) {
                (Some(ra), Some(rm)) => {
                    ra.admin && *member != a && (!rm.admin || rm.rank > ra.rank)
                }
                _ => false,
            },
            Action::Leave | Action::Update => state.contains_key(&a),
        }
    }

    fn is_removal_of(&self, id: &OpId, who: &Author) -> bool {
        let body = &self.bodies[id];
        self.causal[id]
            && match &body.action {
                Action::Remove { member } => member == who,
                Action::Leave => body.author == *who,
                _ => false,
            }
    }

    fn concurrent(&self, x: &OpId, y: &OpId) -> bool {
        x != y && !self.pasts[x].contains(y) && !self.pasts[y].contains(x)
    }

    fn state(&self, set: &BTreeSet<OpId>) -> (State, BTreeMap<OpId, bool>) {
        let mut members = State::new();
        let mut valid = BTreeMap::new();
        for (i, o) in self.linearize(set).into_iter().enumerate() {
            let body = &self.bodies[&o];
            let a = body.author;
            let removed = |who: &Author| {
                set.iter()
                    .any(|r| self.is_removal_of(r, who) && self.concurrent(r, &o))
            };
            let skip = !self.causal[&o]
                || removed(&a)
                || matches!(&body.action, Action::Add { member, .. } if removed(member));
            valid.insert(o, !skip);
            if skip {
                continue;
            }
            let rank = i as u64;
            match &body.action {
                Action::Create { .. } => {
                    members = State::new();
                    members.insert(a, Role { admin: true, rank });
                }
                Action::Add { member, admin } => match members.get_mut(member) {
                    None => {
                        members.insert(
                            *member,
                            Role {
                                admin: *admin,
                                rank,
                            },
                        );
                    }
                    Some(role) if *admin && !role.admin => {
                        *role = Role { admin: true, rank };
                    }
                    Some(_) => {}
                },
                Action::Remove { member } => {
                    members.remove(member);
                }
                Action::Leave => {
                    members.remove(&a);
                }
                Action::Update => {}
            }
        }
        (members, valid)
    }

    fn may_send(&self, author: &Author, deps: &[OpId]) -> SendCheck {
        let mut seen: BTreeSet<OpId> = BTreeSet::new();
        for d in deps {
            seen.insert(*d);
            seen.extend(self.pasts[d].iter().copied());
        }
        if !self.state(&seen).0.contains_key(author) {
            return SendCheck::NotMember;
        }
        if self
            .bodies
            .keys()
            .any(|r| self.is_removal_of(r, author) && !seen.contains(r))
        {
            return SendCheck::RemovedConcurrently;
        }
        SendCheck::Valid
    }
}

/// Everything observable about a group, for comparing replicas.
#[derive(Debug, PartialEq)]
struct Observed {
    members: State,
    heads: Vec<OpId>,
    tag_secrets: Vec<[u8; 32]>,
    current_tag_secret: Option<[u8; 32]>,
    valid: Vec<(OpId, Option<bool>)>,
    ops: Vec<OpId>,
    may_send: Vec<SendCheck>,
}

fn observe(group: &Group, s: &Scenario) -> Observed {
    let mut ids: Vec<OpId> = s.ops.iter().map(SignedOp::id).collect();
    ids.push(s.genesis.id());
    ids.sort();
    let mut may_send = Vec::new();
    for author in &s.authors {
        may_send.push(group.may_send(author, &group.heads()));
        for id in &ids {
            may_send.push(group.may_send(author, &[*id]));
        }
    }
    Observed {
        members: group.members(),
        heads: group.heads(),
        tag_secrets: group.tag_secrets(),
        current_tag_secret: group.current_tag_secret(),
        valid: ids.iter().map(|id| (*id, group.op_valid(id))).collect(),
        ops: group.ops().iter().map(SignedOp::id).collect(),
        may_send,
    }
}

fn check_convergence(seed: u64, n_authors: usize, steps: &[Step], orders: usize) {
    let s = scenario(seed, n_authors, steps);
    let mut in_order = Group::new(s.genesis.clone()).unwrap();
    for op in &s.ops {
        assert!(matches!(
            in_order.insert(op.clone()),
            Ok(Inserted::Applied(_))
        ));
    }
    let expected = observe(&in_order, &s);

    let mut rng = Rng(seed ^ 0x5EED);
    for _ in 0..orders {
        let mut delivery: Vec<SignedOp> = s.ops.clone();
        for op in &s.ops {
            if rng.below(4) == 0 {
                delivery.push(op.clone());
            }
        }
        if rng.below(2) == 0 {
            delivery.push(s.genesis.clone());
        }
        rng.shuffle(&mut delivery);
        let mut g = Group::new(s.genesis.clone()).unwrap();
        for op in delivery {
            assert!(g.insert(op).is_ok());
        }
        assert_eq!(g.pending(), 0);
        assert_eq!(observe(&g, &s), expected);
    }
    let mut backwards = s.ops.clone();
    backwards.reverse();
    let rebuilt = Group::from_ops(s.genesis.clone(), backwards).unwrap();
    assert_eq!(observe(&rebuilt, &s), expected);

    // The rules read literally agree.
    let model = Model::new(&s.genesis, &s.ops);
    let (members, valid) = model.state(&model.all());
    assert_eq!(expected.members, members);
    for (id, v) in &expected.valid {
        assert_eq!(*v, Some(valid[id]), "validity of {id:?}");
    }
    let order = model.linearize(&model.all());
    assert_eq!(expected.ops, order);
    let secrets: Vec<[u8; 32]> = order
        .iter()
        .filter(|id| valid[*id])
        .filter_map(|id| model.bodies[id].tag_secret)
        .collect();
    assert_eq!(expected.tag_secrets, secrets);
    let mut heads: Vec<OpId> = model
        .bodies
        .keys()
        .filter(|id| !model.bodies.values().any(|b| b.deps.contains(id)))
        .copied()
        .collect();
    heads.sort();
    assert_eq!(expected.heads, heads);
    let mut ids: Vec<OpId> = model.bodies.keys().copied().collect();
    ids.sort();
    let mut checks = Vec::new();
    for author in &s.authors {
        checks.push(model.may_send(author, &expected.heads));
        for id in &ids {
            checks.push(model.may_send(author, &[*id]));
        }
    }
    assert_eq!(expected.may_send, checks);
}

fn arb_steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        (
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<bool>(),
            any::<u64>(),
        ),
        1..max,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Replicas that receive the same ops in any order, with duplicates, agree, and agree with
    /// the rules read literally. Proptest prints the failing (seed, authors, steps).
    #[test]
    fn replicas_converge(seed in any::<u64>(), n_authors in 3usize..=6, steps in arb_steps(40)) {
        check_convergence(seed, n_authors, &steps, 4);
    }

    /// No byte string is accepted as an op, and none makes `open` panic.
    #[test]
    fn open_never_panics(body in proptest::collection::vec(any::<u8>(), 0..600), sig in any::<[u8; 32]>()) {
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&sig);
        let op = SignedOp { body, signature };
        prop_assert!(op.open().is_err());
    }

    /// Flipping any bit of a valid op's body or signature makes it invalid.
    #[test]
    fn flipped_bits_are_refused(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let a = key(1);
        let signed = add(&a, &[[1; 32], [2; 32]], &key(2), true);
        let mut tampered = signed.clone();
        let total = signed.body.len() + 64;
        let at = pos.index(total);
        if at < signed.body.len() {
            tampered.body[at] ^= 1 << bit;
        } else {
            tampered.signature[at - signed.body.len()] ^= 1 << bit;
        }
        prop_assert!(tampered.open().is_err());
        let mut g = Group::new(genesis(&a)).unwrap();
        prop_assert!(g.insert(tampered).is_err());
    }
}

/// A larger random scenario from a seed: `MEMBERSHIP_SEED=<u64>` replays one.
#[test]
fn larger_random_group_converges() {
    let seed = std::env::var("MEMBERSHIP_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0x00C0_FFEE);
    eprintln!("larger_random_group_converges: MEMBERSHIP_SEED={seed}");
    let mut rng = Rng(seed);
    let steps: Vec<Step> = (0..120)
        .map(|_| {
            (
                rng.next() as u8,
                rng.next() as u8,
                rng.next() as u8,
                rng.next() & 1 == 0,
                rng.next(),
            )
        })
        .collect();
    check_convergence(seed, 8, &steps, 3);
}
