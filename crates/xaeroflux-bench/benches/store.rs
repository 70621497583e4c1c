//! Criterion benches of the store, each beside plain heed in the same group, same process, same
//! events: point read by id, a 100-author feed, and verified ingest of a 1,000-event batch.
//!
//! The read data set (50,000 generated events) is built once. Plain heed holds exactly the
//! events our store kept (ours drops deleted and superseded events; the baseline would not), so
//! both answer the same question, and the feeds are checked equal before they are timed.
//! `cargo test --benches` runs each routine once.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tempfile::TempDir;
use xaeroflux::{EventId, Filter, Node, PublicKey, Scope};
use xaeroflux_bench::{generate, generate_vec, identity_for, GenParams, PlainHeed};
use xaeroflux_event::{verify_batch_parallel, Limits, VerifiedEvent};

const EVENTS: u64 = 50_000;
const AUTHORS: u32 = 500;
const SEED: u64 = 1;
/// Events per transaction while loading the data set.
const LOAD_BATCH: usize = 5_000;
/// Distinct ids the point-read benches cycle through, in random order.
const READ_IDS: usize = 1_000;
const FEED_AUTHORS: usize = 100;
const FEED_LIMIT: usize = 50;
/// Distinct author sets the feed benches cycle through.
const FEED_SETS: usize = 16;
const INGEST_BATCH: usize = 1_000;
/// Batches ingested into one pair of stores before both are replaced by empty ones, so each
/// timed batch is new to a store holding at most this many batches.
const INGEST_BATCHES_PER_STORE: usize = 10;
/// Events of the ingest pool come from other authors than the read data set.
const INGEST_SEED: u64 = 2;
const INGEST_AUTHORS: u32 = 100;

/// xorshift64: a fixed, portable shuffle so every run reads the same sequence.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The read data set, loaded into both stores.
struct ReadSet {
    _dir: TempDir,
    ours: Node,
    heed: PlainHeed,
    /// Stored ids in random order.
    ids: Vec<EventId>,
    /// Author sets for the feed.
    feeds: Vec<Vec<PublicKey>>,
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn open_pair(dir: &TempDir) -> (Node, PlainHeed) {
    let ours = Node::builder()
        .data_dir(dir.path().join("ours"))
        .open()
        .expect("open our store");
    let heed = PlainHeed::open(dir.path().join("heed")).expect("open plain heed");
    (ours, heed)
}

fn load() -> ReadSet {
    let dir = tempfile::Builder::new()
        .prefix("xaeroflux-bench-")
        .tempdir()
        .expect("temp dir");
    let (ours, mut heed) = open_pair(&dir);
    let events = generate_vec(&GenParams::new(EVENTS, AUTHORS, SEED));
    let bytes: Vec<Vec<u8>> = events.iter().map(|e| e.as_bytes().to_vec()).collect();
    // Generated events are signed here: they go in on the trusted path.
    let mut events = events.into_iter();
    loop {
        let chunk: Vec<VerifiedEvent> = events.by_ref().take(LOAD_BATCH).collect();
        if chunk.is_empty() {
            break;
        }
        ours.store().ingest(chunk).expect("load our store");
    }
    let read = ours.store().read().expect("read txn");
    let kept: Vec<&[u8]> = bytes
        .iter()
        .filter(|b| read.contains(&event_id(b)).expect("lookup"))
        .map(Vec::as_slice)
        .collect();
    assert_eq!(
        kept.len() as u64,
        read.stats().expect("stats").events,
        "every stored event found"
    );
    for chunk in kept.chunks(LOAD_BATCH) {
        heed.ingest(chunk).expect("load plain heed");
    }
    let mut rng = Xorshift(SEED.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let ids = (0..READ_IDS)
        .map(|_| event_id(kept[rng.below(kept.len())]))
        .collect();
    let feeds = (0..FEED_SETS)
        .map(|_| {
            let mut picks: Vec<u32> = Vec::with_capacity(FEED_AUTHORS);
            while picks.len() < FEED_AUTHORS {
                let a = rng.below(AUTHORS as usize) as u32;
                if !picks.contains(&a) {
                    picks.push(a);
                }
            }
            picks
                .into_iter()
                .map(|a| identity_for(SEED, a).public_key())
                .collect()
        })
        .collect();
    drop(read);
    ReadSet {
        _dir: dir,
        ours,
        heed,
        ids,
        feeds,
    }
}

fn event_id(bytes: &[u8]) -> EventId {
    EventId(bytes[..32].try_into().expect("events start with their id"))
}

/// One point read per iteration, both inside one long-lived read transaction.
fn point_read(c: &mut Criterion, set: &ReadSet) {
    let mut group = c.benchmark_group("point_read");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ours/ReadTxn::get", |b| {
        let read = set.ours.store().read().expect("read txn");
        let mut ids = set.ids.iter().cycle();
        b.iter(|| {
            let id = ids.next().expect("endless");
            let ev = read.get(id).expect("read").expect("stored");
            black_box(ev.payload().len())
        });
    });
    group.bench_function("plain_heed/get_in", |b| {
        let rtxn = set.heed.read_txn().expect("read txn");
        let mut ids = set.ids.iter().cycle();
        b.iter(|| {
            let id = ids.next().expect("endless");
            let bytes = set
                .heed
                .get_in(&rtxn, &id.0)
                .expect("read")
                .expect("stored");
            black_box(bytes.len())
        });
    });
    group.finish();
}

fn feed_filter(authors: &[PublicKey]) -> Filter {
    Filter {
        scope: Scope {
            authors: authors.to_vec(),
            ..Scope::all()
        },
        limit: Some(FEED_LIMIT),
        ..Filter::default()
    }
}

/// Newest 50 events of 100 authors, a fresh read transaction per query in both.
fn feed(c: &mut Criterion, set: &ReadSet) {
    let filters: Vec<Filter> = set.feeds.iter().map(|f| feed_filter(f)).collect();
    let keys: Vec<Vec<[u8; 32]>> = set
        .feeds
        .iter()
        .map(|f| f.iter().map(|p| p.0).collect())
        .collect();
    // Same answers, or the comparison means nothing.
    for (filter, keys) in filters.iter().zip(&keys) {
        let read = set.ours.store().read().expect("read txn");
        let ours: Vec<[u8; 32]> = read
            .query(filter)
            .expect("query")
            .iter()
            .map(|e| e.id().0)
            .collect();
        assert_eq!(ours.len(), FEED_LIMIT, "the data set fills every feed");
        assert_eq!(ours, set.heed.feed(keys, FEED_LIMIT).expect("feed"));
    }
    let mut group = c.benchmark_group("feed_100_authors_newest_50");
    group.bench_function("ours/query", |b| {
        let mut filters = filters.iter().cycle();
        b.iter(|| {
            let filter = filters.next().expect("endless");
            let read = set.ours.store().read().expect("read txn");
            black_box(read.query(filter).expect("query").len())
        });
    });
    group.bench_function("plain_heed/feed", |b| {
        let mut keys = keys.iter().cycle();
        b.iter(|| {
            let keys = keys.next().expect("endless");
            black_box(set.heed.feed(keys, FEED_LIMIT).expect("feed").len())
        });
    });
    group.finish();
}

/// Stores that the ingest benches fill batch by batch and replace when full. Only the ingest
/// itself is timed; copying the batch and replacing stores are not.
struct IngestTarget {
    pool: Vec<Vec<Vec<u8>>>,
    next: usize,
    stores: Option<(TempDir, Node, PlainHeed)>,
}

impl IngestTarget {
    fn new(pool: Vec<Vec<Vec<u8>>>) -> IngestTarget {
        IngestTarget {
            pool,
            next: 0,
            stores: None,
        }
    }

    /// The next batch and the stores it is new to.
    fn next_batch(&mut self) -> (Vec<Vec<u8>>, &Node, &mut PlainHeed) {
        if self.next.is_multiple_of(self.pool.len()) {
            // Drop the old pair first: its directory goes with it.
            self.stores = None;
            let dir = tempfile::Builder::new()
                .prefix("xaeroflux-bench-ingest-")
                .tempdir()
                .expect("temp dir");
            let (ours, heed) = open_pair(&dir);
            self.stores = Some((dir, ours, heed));
        }
        let batch = self.pool[self.next % self.pool.len()].clone();
        self.next += 1;
        let (_, ours, heed) = self.stores.as_mut().expect("opened above");
        (batch, ours, heed)
    }
}

/// Verified ingest of 1,000 events: ours verifies in parallel and commits durably; the
/// baseline verifies the same way, then commits durably.
fn ingest(c: &mut Criterion) {
    let pool: Vec<Vec<Vec<u8>>> = generate(&GenParams::new(
        (INGEST_BATCH * INGEST_BATCHES_PER_STORE) as u64,
        INGEST_AUTHORS,
        INGEST_SEED,
    ))
    .map(VerifiedEvent::into_bytes)
    .collect::<Vec<_>>()
    .chunks(INGEST_BATCH)
    .map(<[Vec<u8>]>::to_vec)
    .collect();
    let mut group = c.benchmark_group("verified_ingest_1000");
    group.throughput(Throughput::Elements(INGEST_BATCH as u64));
    group.sample_size(10);
    let mut target = IngestTarget::new(pool.clone());
    group.bench_function("ours/Node::ingest", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (batch, ours, _) = target.next_batch();
                let t = Instant::now();
                let results = ours.ingest(batch).expect("ingest");
                total += t.elapsed();
                assert!(results.iter().all(Result::is_ok), "generated events verify");
            }
            total
        });
    });
    let mut target = IngestTarget::new(pool);
    group.bench_function("plain_heed/verify+ingest", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (batch, _, heed) = target.next_batch();
                let t = Instant::now();
                let limits = Limits::at(xaeroflux::now_ms());
                let verified = verify_batch_parallel(batch, &limits, threads());
                let bytes: Vec<&[u8]> = verified
                    .iter()
                    .filter_map(|r| r.as_ref().ok())
                    .map(VerifiedEvent::as_bytes)
                    .collect();
                heed.ingest(&bytes).expect("ingest");
                total += t.elapsed();
                assert_eq!(bytes.len(), INGEST_BATCH, "generated events verify");
            }
            total
        });
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let set = load();
    point_read(&mut c, &set);
    feed(&mut c, &set);
    drop(set);
    ingest(&mut c);
    c.final_summary();
}
