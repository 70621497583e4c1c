//! The Merkle index always names exactly the stored events: range accumulators, ranks, the key
//! at a rank and ordered visits agree with a `BTreeSet` model through stores, deletions and
//! replaced profiles; the root does not depend on arrival order; older stores are upgraded;
//! damaged pages give typed errors.

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::path::Path;

use proptest::prelude::*;
use xaeroflux_event::*;
use xaeroflux_store::*;

const T0: u64 = 1_700_000_000_000;

fn who(seed: u8) -> Identity {
    Identity::from_seed(&[seed; 32])
}

fn key_of(ev: &VerifiedEvent) -> SetKey {
    let ev = ev.as_ref();
    SetKey {
        created_at: ev.created_at(),
        id: *ev.id(),
    }
}

fn accum<'a>(keys: impl IntoIterator<Item = &'a SetKey>) -> Accum {
    let mut a = Accum::ZERO;
    for k in keys {
        a.add_id(&k.id);
    }
    a
}

fn visit(read: &ReadTxn<'_>, lo: &SetKey, hi: &SetKey, max: usize) -> Vec<SetKey> {
    let mut out = Vec::new();
    read.set_for_each(lo, hi, &mut |k| {
        out.push(*k);
        if out.len() == max {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    out
}

/// A small deterministic generator for query points (seeded by proptest, so a failing case
/// replays exactly).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// A query point: a stored key, a key just around one, or an arbitrary time.
fn probe(model: &BTreeSet<SetKey>, rng: &mut Rng) -> SetKey {
    let keys: Vec<&SetKey> = model.iter().collect();
    match rng.below(4) {
        0 if !keys.is_empty() => *keys[rng.below(keys.len() as u64) as usize],
        1 if !keys.is_empty() => {
            let mut k = *keys[rng.below(keys.len() as u64) as usize];
            k.id.0[31] ^= 1;
            k
        }
        2 => SetKey::at_time(T0 + rng.below(3_000)),
        _ => [SetKey::MIN, SetKey::MAX][rng.below(2) as usize],
    }
}

/// Every read answers like the model does.
fn assert_index_matches(store: &Store, model: &BTreeSet<SetKey>, rng: &mut Rng) {
    let read = store.read().unwrap();
    let root = read.set_root().unwrap();
    assert_eq!(root.accum, accum(model));
    assert_eq!(root.fingerprint, accum(model).fingerprint());
    assert_eq!(
        visit(&read, &SetKey::MIN, &SetKey::MAX, usize::MAX),
        model.iter().copied().collect::<Vec<_>>()
    );
    for _ in 0..24 {
        let (a, b) = (probe(model, rng), probe(model, rng));
        let (lo, hi) = (a.min(b), a.max(b));
        assert_eq!(read.set_rank(&a).unwrap(), model.range(..a).count() as u64);
        assert_eq!(
            read.set_accumulate(&lo, &hi).unwrap(),
            accum(model.range(lo..hi)),
            "[{lo:?}, {hi:?})"
        );
        assert_eq!(read.set_accumulate(&hi, &lo).unwrap().count, 0);
        let max = 1 + rng.below(50) as usize;
        let want: Vec<SetKey> = model.range(lo..hi).take(max).copied().collect();
        assert_eq!(visit(&read, &lo, &hi, max), want);
        let rank = rng.below(model.len() as u64 + 2);
        assert_eq!(
            read.set_nth(rank).unwrap(),
            model.iter().nth(rank as usize).copied()
        );
    }
    let report = read.check(1).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(report.merkle_pages >= u64::from(!model.is_empty()));
}

#[derive(Debug, Clone)]
enum Op {
    /// Posts after everything so far, one millisecond apart.
    Append(u8),
    /// Posts back-dated to random times in the past.
    BackDated(u8),
    /// The author of the event at this (wrapped) rank deletes it.
    Delete(u16),
    /// A profile from this author, this many ms after (or before) the clock.
    Profile(u8, i16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..60).prop_map(Op::Append),
        3 => (1u8..40).prop_map(Op::BackDated),
        2 => any::<u16>().prop_map(Op::Delete),
        2 => (0u8..3, -40i16..40).prop_map(|(a, d)| Op::Profile(a, d)),
    ]
}

/// What the model needs to know about a stored event.
#[derive(Clone, Copy)]
struct Meta {
    key: SetKey,
    author: u8,
    kind: Kind,
}

struct Model {
    set: BTreeSet<SetKey>,
    events: HashMap<EventId, Meta>,
    heads: HashMap<u8, EventId>,
    dropped: Vec<EventId>,
}

impl Model {
    /// Follows one event's outcome the way the store's rules say it must.
    fn apply(&mut self, ev: &VerifiedEvent, author: u8, outcome: Outcome) {
        let r = ev.as_ref();
        match outcome {
            Outcome::Stored { .. } => {}
            Outcome::Deleted | Outcome::Superseded => {
                self.dropped.push(*r.id());
                return;
            }
            other => panic!("unexpected {other:?}"),
        }
        let meta = Meta {
            key: key_of(ev),
            author,
            kind: r.kind(),
        };
        if r.kind() == Kind::PROFILE {
            if let Some(old) = self.heads.insert(author, *r.id()) {
                let old_meta = self.events.remove(&old).expect("the head is stored");
                assert!(self.set.remove(&old_meta.key));
                self.dropped.push(old);
            }
        }
        if r.kind() == Kind::DELETION {
            let target = *r.reference();
            if let Some(t) = self.events.get(&target).copied() {
                if t.author == author && t.kind != Kind::DELETION {
                    self.events.remove(&target);
                    self.set.remove(&t.key);
                    self.heads.retain(|_, h| *h != target);
                    self.dropped.push(target);
                }
            }
        }
        self.set.insert(meta.key);
        self.events.insert(*r.id(), meta);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]
    #[test]
    fn index_matches_a_sorted_set_through_the_store(
        batches in proptest::collection::vec(proptest::collection::vec(op(), 1..6), 1..7),
        seed in any::<u64>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let authors = [who(1), who(2), who(3)];
        let mut rng = Rng(seed);
        let mut model = Model { set: BTreeSet::new(), events: HashMap::new(), heads: HashMap::new(), dropped: Vec::new() };
        let mut clock = T0 + 2_000;
        let mut n = 0u32;
        for ops in batches {
            let mut batch: Vec<(VerifiedEvent, u8)> = Vec::new();
            for op in ops {
                n += 1;
                match op {
                    Op::Append(k) => for _ in 0..k {
                        clock += 1;
                        let a = rng.below(3) as u8;
                        batch.push((authors[a as usize].sign(&Draft::post(clock, &format!("p{n}"))), a));
                    },
                    Op::BackDated(k) => for i in 0..k {
                        let a = rng.below(3) as u8;
                        let t = T0 + rng.below(clock - T0);
                        batch.push((authors[a as usize].sign(&Draft::post(t, &format!("b{n}.{i}"))), a));
                    },
                    Op::Delete(r) => {
                        let candidates: Vec<&Meta> = model.events.values().filter(|m| m.kind != Kind::DELETION).collect();
                        if candidates.is_empty() { continue; }
                        let mut candidates = candidates;
                        candidates.sort_by_key(|m| m.key);
                        let t = *candidates[usize::from(r) % candidates.len()];
                        clock += 1;
                        batch.push((authors[t.author as usize].sign(&Draft::deletion(clock, t.key.id, "x")), t.author));
                    }
                    Op::Profile(a, dt) => {
                        let t = clock.saturating_add_signed(i64::from(dt));
                        let p = Profile { name: format!("n{n}"), ..Default::default() };
                        batch.push((authors[a as usize].sign(&Draft::profile(t, &p)), a));
                    }
                }
            }
            let outcomes = store.ingest(batch.iter().map(|(e, _)| e.clone()).collect()).unwrap();
            for ((ev, author), outcome) in batch.iter().zip(outcomes) {
                model.apply(ev, *author, outcome);
            }
            assert_index_matches(&store, &model.set, &mut rng);
            let read = store.read().unwrap();
            for id in &model.dropped {
                prop_assert!(read.is_dropped(id).unwrap() || read.contains(id).unwrap());
            }
            prop_assert_eq!(read.stats().unwrap().set.accum.count, read.stats().unwrap().events);
        }
    }
}

fn posts(n: u64, t: impl Fn(u64) -> u64) -> Vec<VerifiedEvent> {
    let alice = who(1);
    (0..n)
        .map(|i| alice.sign(&Draft::post(t(i), &format!("{i}"))))
        .collect()
}

#[test]
fn the_same_set_in_any_order_has_the_same_root() {
    let events = posts(3_000, |i| T0 + (i * 7919) % 1_000);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        Store::open(da.path()).unwrap(),
        Store::open(db.path()).unwrap(),
    );
    for chunk in events.chunks(1_000) {
        a.ingest(chunk.to_vec()).unwrap();
    }
    let mut reversed = events.clone();
    reversed.reverse();
    for chunk in reversed.chunks(77) {
        b.ingest(chunk.to_vec()).unwrap();
    }
    let (ra, rb) = (a.read().unwrap(), b.read().unwrap());
    let (root_a, root_b) = (ra.set_root().unwrap(), rb.set_root().unwrap());
    assert_eq!(root_a.fingerprint, root_b.fingerprint);
    assert_eq!(root_a.accum.count, 3_000);
    assert_eq!(
        visit(&ra, &SetKey::MIN, &SetKey::MAX, usize::MAX),
        visit(&rb, &SetKey::MIN, &SetKey::MAX, usize::MAX)
    );
    assert!(ra.check(1).unwrap().is_ok() && rb.check(1).unwrap().is_ok());
}

#[test]
fn time_ordered_ingest_fills_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let events = posts(8_000, |i| T0 + i);
    for chunk in events.chunks(500) {
        store.ingest(chunk.to_vec()).unwrap();
    }
    let stats = store.read().unwrap().stats().unwrap();
    let leaf_capacity = 405;
    assert_eq!(stats.set.leaf_pages, 8_000u64.div_ceil(leaf_capacity));
    assert_eq!((stats.set.height, stats.set.branch_pages), (2, 1));
    let merkle = stats.tables.iter().find(|t| t.name == "merkle").unwrap();
    assert_eq!(
        merkle.entries,
        stats.set.leaf_pages + stats.set.branch_pages
    );
}

#[test]
fn dropped_events_are_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let alice = who(1);
    let post = alice.sign(&Draft::post(T0, "gone"));
    let del = alice.sign(&Draft::deletion(T0 + 1, *post.id(), "x"));
    let late = alice.sign(&Draft::post(T0 + 2, "deleted before it arrived"));
    let del_late = alice.sign(&Draft::deletion(T0 + 3, *late.id(), "x"));
    let old = alice.sign(&Draft::profile(T0, &Profile::default()));
    let new = alice.sign(&Draft::profile(
        T0 + 5,
        &Profile {
            name: "new".into(),
            ..Default::default()
        },
    ));
    let older = alice.sign(&Draft::profile(
        T0 - 5,
        &Profile {
            name: "older".into(),
            ..Default::default()
        },
    ));
    store
        .ingest(vec![post.clone(), old.clone(), del, del_late])
        .unwrap();
    store
        .ingest(vec![late.clone(), new.clone(), older.clone()])
        .unwrap();
    let read = store.read().unwrap();
    for ev in [&post, &late, &old, &older] {
        assert!(read.is_dropped(ev.id()).unwrap(), "{}", ev.id());
        assert!(!read.contains(ev.id()).unwrap());
    }
    assert!(!read.is_dropped(new.id()).unwrap());
    assert_eq!(
        read.set_root().unwrap().accum.count,
        3,
        "two deletions, one profile"
    );
    drop(read);
    // Once the newest profile is deleted, an older one is stored again and no longer dropped.
    store
        .ingest(vec![alice.sign(&Draft::deletion(T0 + 9, *new.id(), "x"))])
        .unwrap();
    store.ingest(vec![old.clone()]).unwrap();
    let read = store.read().unwrap();
    assert!(read.contains(old.id()).unwrap() && !read.is_dropped(old.id()).unwrap());
    assert!(read.check(1).unwrap().is_ok());
}

/// The store's LMDB environment opened directly, as a damaged or older file would be made.
fn raw_env(path: &Path) -> heed::Env {
    let mut options = heed::EnvOpenOptions::new();
    options.max_dbs(16).map_size(1 << 30);
    // SAFETY: no store has this directory open while the test edits it.
    unsafe { options.open(path) }.unwrap()
}

type RawTable = heed::Database<'static, heed::types::Bytes, heed::types::Bytes>;

/// The store's `merkle`, `merkle_free`, `dropped` and `meta` tables.
fn raw_tables(env: &heed::Env) -> [RawTable; 4] {
    let rtxn = env.read_txn().unwrap();
    env.open_databases_and_commit(rtxn, |opener, rtxn| -> Result<_, heed::Error> {
        let open = |name| opener.open_database(rtxn, Some(name)).map(Option::unwrap);
        Ok(heed::CommitOrAbort::<_, ()>::Commit([
            open("merkle")?,
            open("merkle_free")?,
            open("dropped")?,
            open("meta")?,
        ]))
    })
    .unwrap()
    .unwrap_commit()
}

/// Turns a closed format-2 store back into format 1: no Merkle tables, no `dropped`.
fn downgrade_to_format_1(path: &Path) {
    let env = raw_env(path);
    let [merkle, free, dropped, meta] = raw_tables(&env);
    let mut wtxn = env.write_txn().unwrap();
    for table in [merkle, free, dropped] {
        // SAFETY: the handle is not used after the table is removed.
        unsafe { table.remove(&mut wtxn) }.unwrap();
    }
    meta.delete(&mut wtxn, b"merkle").unwrap();
    meta.put(&mut wtxn, b"format", &1u32.to_le_bytes()).unwrap();
    wtxn.commit().unwrap();
    env.prepare_for_closing().wait();
}

fn read_only() -> StoreOptions {
    StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    }
}

#[test]
fn a_format_1_store_is_upgraded_by_a_writable_open() {
    let dir = tempfile::tempdir().unwrap();
    let events = posts(1_500, |i| T0 + (i * 31) % 700);
    let want = {
        let store = Store::open(dir.path()).unwrap();
        store.ingest(events[..1_000].to_vec()).unwrap();
        let root = store.read().unwrap().set_root().unwrap();
        root
    };
    downgrade_to_format_1(dir.path());

    let err = Store::open_with(dir.path(), read_only()).unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::NeedsUpgrade {
                got: 1,
                current: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("open it for writing once"));

    let store = Store::open(dir.path()).unwrap();
    let read = store.read().unwrap();
    assert_eq!(read.set_root().unwrap(), want, "rebuilt from the events");
    assert!(read.check(2).unwrap().is_ok());
    drop(read);
    store.ingest(events[1_000..].to_vec()).unwrap();
    drop(store);
    let ro = Store::open_with(dir.path(), read_only()).unwrap();
    let read = ro.read().unwrap();
    assert_eq!(
        read.set_root().unwrap().accum,
        accum(&events.iter().map(key_of).collect::<Vec<_>>())
    );
    assert!(read.check(2).unwrap().is_ok());
}

fn root_page(env: &heed::Env, meta: RawTable) -> u32 {
    let rtxn = env.read_txn().unwrap();
    let m = meta.get(&rtxn, b"merkle").unwrap().unwrap();
    u32::from_le_bytes(m[..4].try_into().unwrap())
}

/// Rewrites page `no` of the closed store at `path` with `f`'s bytes.
fn damage_page(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let env = raw_env(path);
    let [merkle, _, _, meta] = raw_tables(&env);
    let no = root_page(&env, meta);
    let mut wtxn = env.write_txn().unwrap();
    let mut page = merkle
        .get(&wtxn, &no.to_be_bytes())
        .unwrap()
        .unwrap()
        .to_vec();
    f(&mut page);
    merkle.put(&mut wtxn, &no.to_be_bytes(), &page).unwrap();
    wtxn.commit().unwrap();
    env.prepare_for_closing().wait();
}

#[test]
fn damaged_pages_give_typed_errors_not_panics() {
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 4] = [
        ("garbage", |p| {
            p.iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = (i * 131 % 251) as u8)
        }),
        ("truncated", |p| p.truncate(100)),
        ("count above capacity", |p| {
            p[4..6].copy_from_slice(&999u16.to_le_bytes())
        }),
        // Swap the first two leaf entries (160..200 and 200..240).
        ("unsorted", |p| {
            let first: Vec<u8> = p[160..200].to_vec();
            p.copy_within(200..240, 160);
            p[200..240].copy_from_slice(&first);
        }),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.ingest(posts(50, |i| T0 + i)).unwrap();
        }
        damage_page(dir.path(), damage);
        let store = Store::open(dir.path()).unwrap();
        let read = store.read().unwrap();
        let all = |r: &ReadTxn<'_>| -> Result<(), ReadError> {
            r.set_root()?;
            r.set_rank(&SetKey::at_time(T0 + 10))?;
            r.set_nth(3)?;
            r.set_accumulate(&SetKey::at_time(T0 + 1), &SetKey::at_time(T0 + 20))?;
            r.set_for_each(&SetKey::MIN, &SetKey::MAX, &mut |_| {
                ControlFlow::Continue(())
            })?;
            Ok(())
        };
        let err = all(&read).expect_err(what);
        assert!(
            matches!(err, ReadError::CorruptPage { .. } | ReadError::Corrupt(_)),
            "{what}: {err}"
        );
        let report = read.check(1).unwrap();
        assert!(report.merkle_problems > 0 && !report.is_ok(), "{what}");
        drop(read);
        let err = store.ingest(posts(1, |_| T0 + 1_000)).unwrap_err();
        assert!(matches!(err, WriteError::Corrupt(_)), "{what}: {err}");
    }
}
