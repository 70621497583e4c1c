//! `xf import` killed with SIGKILL at random points: nothing it acknowledged is lost, the store
//! re-verifies, and what survives is always a prefix of the file — never a torn batch or a hole.
//!
//! Every run prints its seed. `XF_CRASH_SEED` and `XF_CRASH_SPAN_MS` replay the same kill
//! delays; where a delay lands in the child's work still depends on the scheduler.
//! `XF_CRASH_ROUNDS` sets the number of kills (default 12).
#![cfg(unix)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{ok_json, xf};
use xaeroflux::{EventId, ImportReader, Store, StoreOptions};

const EVENTS: &str = "30000";
const AUTHORS: &str = "200";
const GEN_SEED: &str = "5";
const BATCH: &str = "500";
const ROUNDS_DEFAULT: u64 = 12;
/// Kill delays reach this far past one whole uninterrupted import, so some kills find the
/// child already finished.
const SPAN_PAST_END: f64 = 1.15;
const SIGKILL: i32 = 9;

/// The file's event ids, in file order.
fn file_ids(file: &Path) -> Vec<EventId> {
    let mut reader = ImportReader::new(BufReader::new(File::open(file).expect("export file")))
        .expect("export header");
    let mut ids = Vec::new();
    while let Some(event) = reader.next_event().expect("readable export") {
        ids.push(EventId(event[..32].try_into().expect("32-byte id")));
    }
    ids
}

/// xorshift64*: enough randomness for kill delays, and replayable from one number.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // A zero state would stay zero.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

/// What one `xf import` run printed before it ended.
struct Run {
    /// Every `acked` line, in order.
    acks: Vec<u64>,
    /// The final summary, if the import finished.
    summary: Option<Value>,
    status: ExitStatus,
    elapsed: Duration,
}

impl Run {
    fn acked(&self) -> u64 {
        self.acks.last().copied().unwrap_or(0)
    }

    fn killed(&self) -> bool {
        self.status.signal() == Some(SIGKILL)
    }
}

/// Runs `xf import` into `target`, killing it after `kill_after` if given. Every line the child
/// wrote before dying is read: each was printed only after its batch was durable.
fn import(target: &Path, file: &Path, kill_after: Option<Duration>, log: &Path) -> Run {
    let started = Instant::now();
    let mut child = common::xf_cmd()
        .arg("--data")
        .arg(target)
        .args(["import", "--batch", BATCH, "--json"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(File::create(log).expect("log file"))
        .spawn()
        .expect("xf starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || read_acks(BufReader::new(stdout)));
    if let Some(delay) = kill_after {
        std::thread::sleep(delay);
        // SIGKILL; a child that already exited is a zombie until waited for, so this cannot
        // reach another process.
        child.kill().expect("kill xf");
    }
    let status = child.wait().expect("wait for xf");
    let elapsed = started.elapsed();
    let (acks, summary) = reader.join().expect("stdout reader");
    let run = Run {
        acks,
        summary,
        status,
        elapsed,
    };
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        run.status.success() || run.killed(),
        "xf import failed on its own ({}): {}",
        run.status,
        log_text()
    );
    assert!(
        run.acks.windows(2).all(|w| w[0] < w[1]),
        "acknowledgements go backwards: {:?}",
        run.acks
    );
    assert_eq!(
        run.summary.is_some(),
        run.status.success(),
        "a summary exactly when the import finished: {}",
        log_text()
    );
    run
}

fn read_acks(mut out: impl BufRead) -> (Vec<u64>, Option<Value>) {
    let mut acks = Vec::new();
    let mut summary = None;
    let mut line = String::new();
    loop {
        line.clear();
        match out.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        // A line cut short by the kill acknowledges nothing.
        if !line.ends_with('\n') {
            break;
        }
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: bad line {line:?}"));
        if let Some(n) = v.get("acked") {
            acks.push(n.as_u64().expect("acked is a count"));
        } else if v.get("seen").is_some() {
            summary = Some(v);
        }
    }
    (acks, summary)
}

/// Checks the store a kill left behind and returns its event count. `acked` events must be
/// there; beyond that the store must hold exactly the first `count` events of the file.
fn check_survivor(target: &Path, ids: &[EventId], acked: u64, count_before: u64) -> u64 {
    let verify = ok_json(target, &["verify"]);
    assert_eq!(verify["ok"], true, "verify after a crash: {verify}");
    // Read-only, so the check sees the store as the crash left it.
    let store = Store::open_with(
        target,
        StoreOptions {
            read_only: true,
            key: common::data_key(target),
            ..StoreOptions::default()
        },
    )
    .expect("open the store after a crash");
    let read = store.read().expect("read txn");
    let count = read.stats().expect("stats").events;
    assert_eq!(verify["events"], count, "verify and stats agree");
    assert!(
        count >= count_before,
        "the store shrank from {count_before} to {count} events"
    );
    assert!(count >= acked, "{acked} acknowledged but {count} stored");
    assert!(count <= ids.len() as u64, "more events than the file holds");
    for (i, id) in ids.iter().enumerate().take(acked as usize) {
        assert!(
            read.contains(id).expect("lookup"),
            "acknowledged event {i} ({id}) lost"
        );
    }
    for (i, id) in ids
        .iter()
        .enumerate()
        .take(count as usize)
        .skip(acked as usize)
    {
        assert!(
            read.contains(id).expect("lookup"),
            "event {i} ({id}) missing below the stored count {count}: not a prefix"
        );
    }
    count
}

/// Where in the import a kill landed, by what the child had printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillPoint {
    /// Before the first acknowledgement: start-up, opening the store, the first batches
    /// verified and committed but not yet acknowledged.
    BeforeFirstAck,
    /// Between acknowledgements.
    MidImport,
    /// The child had already finished.
    AfterEnd,
}

#[test]
fn killed_imports_lose_nothing_acknowledged() {
    killed_imports(Kind::Encrypted);
}

#[test]
fn killed_imports_into_a_plain_store_lose_nothing_acknowledged() {
    killed_imports(Kind::Plain);
}

/// The two kinds of store every crash test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Encrypted under the tests' passphrase (what `xf init` makes by default).
    Encrypted,
    /// `xf init --plain`.
    Plain,
}

impl Kind {
    /// The flags of a command that may create a store of this kind.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Kind::Encrypted => &[],
            Kind::Plain => &["--plain"],
        }
    }
}

fn killed_imports(kind: Kind) {
    let seed = env_u64("XF_CRASH_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970");
        now.as_nanos() as u64 ^ u64::from(std::process::id())
    });
    let rounds = env_u64("XF_CRASH_ROUNDS").unwrap_or(ROUNDS_DEFAULT).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let (source, file, log) = (
        dir.path().join("source"),
        dir.path().join("events.xfe"),
        dir.path().join("xf.log"),
    );
    let gen = [
        "gen",
        "--events",
        EVENTS,
        "--authors",
        AUTHORS,
        "--seed",
        GEN_SEED,
    ];
    ok_json(&source, &gen);
    ok_json(&source, &["export", file.to_str().expect("UTF-8 path")]);
    let source_count = ok_json(&source, &["stats"])["events"]
        .as_u64()
        .expect("event count");
    let ids = file_ids(&file);
    assert_eq!(
        ids.len() as u64,
        source_count,
        "the export holds every event"
    );

    let span = match env_u64("XF_CRASH_SPAN_MS") {
        Some(ms) => Duration::from_millis(ms),
        None => {
            let whole = import(&dir.path().join("scratch"), &file, None, &log);
            whole.elapsed.mul_f64(SPAN_PAST_END)
        }
    };
    eprintln!(
        "crash_recovery: {rounds} rounds, replay with XF_CRASH_SEED={seed} XF_CRASH_SPAN_MS={}",
        span.as_millis()
    );

    // One stratum of the span per round, visited in random order: start-up, middle and end
    // are all hit in every run, at random offsets.
    let mut rng = Rng::new(seed);
    let mut strata: Vec<u64> = (0..rounds).collect();
    for i in (1..strata.len()).rev() {
        strata.swap(i, rng.below(i + 1));
    }
    let mut epoch = 0;
    let mut target = fresh_target(dir.path(), epoch, kind);
    let (mut count, mut acked) = (0, 0);
    let mut points = Vec::new();
    for (round, stratum) in strata.into_iter().enumerate() {
        let delay = span.mul_f64((stratum as f64 + rng.unit()) / rounds as f64);
        let run = import(&target, &file, Some(delay), &log);
        let point = if !run.killed() {
            KillPoint::AfterEnd
        } else if run.acks.is_empty() {
            KillPoint::BeforeFirstAck
        } else {
            KillPoint::MidImport
        };
        points.push(point);
        acked = acked.max(run.acked());
        count = check_survivor(&target, &ids, acked, count);
        eprintln!(
            "round {round}: kill at {} ms, {point:?}, acked {} (highest {acked}), {count} stored",
            delay.as_millis(),
            run.acked()
        );
        // A complete store would only see duplicates from here on: start over, so later
        // rounds crash real writes and store creation again.
        if count == ids.len() as u64 {
            epoch += 1;
            target = fresh_target(dir.path(), epoch, kind);
            (count, acked) = (0, 0);
        }
    }
    let tally = |p| points.iter().filter(|&&q| q == p).count();
    eprintln!(
        "kill points: {} before the first acknowledgement, {} mid-import, {} after the end",
        tally(KillPoint::BeforeFirstAck),
        tally(KillPoint::MidImport),
        tally(KillPoint::AfterEnd)
    );

    let last = import(&target, &file, None, &log);
    let summary = last
        .summary
        .as_ref()
        .expect("a finished import prints a summary");
    assert_eq!(summary["seen"], ids.len() as u64);
    assert_eq!(summary["rejected_total"], 0);
    let accounted = summary["stored"].as_u64().expect("stored")
        + summary["duplicates"].as_u64().expect("duplicates");
    assert_eq!(
        accounted,
        ids.len() as u64,
        "every event stored once: {summary}"
    );
    assert_eq!(last.acked(), ids.len() as u64);
    let final_count = check_survivor(&target, &ids, ids.len() as u64, count);
    assert_eq!(final_count, source_count);
    assert_eq!(ok_json(&target, &["stats"])["events"], source_count);
}

/// A new, initialised target directory. Kills during creation itself are the subject of
/// `a_kill_while_the_store_is_created_leaves_it_openable`.
fn fresh_target(dir: &Path, epoch: u32, kind: Kind) -> PathBuf {
    let target = dir.join(format!("target-{epoch}"));
    let mut args = vec!["init"];
    args.extend_from_slice(kind.flags());
    let init = ok_json(&target, &args);
    assert_eq!(init["encrypted"], kind == Kind::Encrypted);
    target
}

/// Kills `xf init --plain` on fresh directories 0–10 ms after start, where LMDB has created
/// `data.mdb` but the store's marker is not yet committed. Every directory must afterwards be
/// either without a store or a store that opens. Delays are fixed, so there is no seed.
#[test]
fn a_kill_while_the_store_is_created_leaves_it_openable() {
    kills_during_init(Kind::Plain, 120, Duration::from_micros(250), 40);
}

/// The same for an encrypted store, whose creation takes longer (the passphrase's key
/// derivation, the key file written before the store): kills spread over the first 800 ms hit
/// before the key file, between it and the store, and during the store's creation.
#[test]
fn a_kill_while_an_encrypted_store_is_created_leaves_it_openable() {
    kills_during_init(Kind::Encrypted, 40, Duration::from_millis(20), 40);
}

fn kills_during_init(kind: Kind, attempts: u64, step: Duration, steps: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    for attempt in 0..attempts {
        let data = dir.path().join(format!("d{attempt}"));
        let mut child = common::xf_cmd()
            .arg("--data")
            .arg(&data)
            .arg("init")
            .args(kind.flags())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("xf starts");
        let delay = step * (attempt % steps) as u32;
        std::thread::sleep(delay);
        child.kill().expect("kill xf");
        child.wait().expect("wait for xf");
        if !data.join("data.mdb").exists() {
            // No store: another init finishes the job.
            if attempt % 8 == 0 {
                let mut args = vec!["init"];
                args.extend_from_slice(kind.flags());
                assert_eq!(
                    ok_json(&data, &args)["encrypted"],
                    kind == Kind::Encrypted,
                    "attempt {attempt}"
                );
            }
            continue;
        }
        let out = xf(&data, &["stats"]);
        assert!(
            out.status.success(),
            "attempt {attempt}, killed after {} µs: {}",
            delay.as_micros(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
