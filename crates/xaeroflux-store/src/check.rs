//! Integrity check: every stored event re-verified, every index (the Merkle index included)
//! checked against the events.

use std::collections::HashMap;

use xaeroflux_event::{verify_batch_parallel, Kind, Limits, PAYLOAD_BYTES_MAX};

use crate::error::ReadError;
use crate::merkle;
use crate::read::{decode_stored, ReadTxn};
use crate::seal::Slot;
use crate::tables::{decode_seq, kind_key, Pos, Table, DROPPED_DELETED, DROPPED_SUPERSEDED};
use xaeroflux_event::SetKey;

/// What [`ReadTxn::check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Events checked.
    pub events: u64,
    /// Index entries checked.
    pub index_entries: u64,
    /// The first problems found (at most [`CheckReport::PROBLEMS_SHOWN`]).
    pub problems: Vec<String>,
    /// All problems found.
    pub problems_total: u64,
    /// Merkle index pages checked.
    pub merkle_pages: u64,
    /// Problems found in the Merkle index (counted in `problems_total` too; their descriptions
    /// start with "merkle").
    pub merkle_problems: u64,
}

impl CheckReport {
    /// Problems kept in the report; the rest are only counted.
    pub const PROBLEMS_SHOWN: usize = 100;

    /// True if nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems_total == 0
    }

    fn problem(&mut self, what: String) {
        self.problems_total += 1;
        if self.problems.len() < Self::PROBLEMS_SHOWN {
            self.problems.push(what);
        }
    }
}

/// The key an event has in a secondary index.
type IndexedField = fn(&xaeroflux_event::EventRef<'_>) -> Vec<u8>;

/// Events re-verified per batch.
const VERIFY_CHUNK: usize = 4096;

impl ReadTxn<'_> {
    /// Recomputes every id and signature and checks that each index holds exactly one entry per
    /// event, pointing at an event with the indexed field. Reads everything: O(n).
    pub fn check(&self, threads: usize) -> Result<CheckReport, ReadError> {
        let t = *self.tables();
        let mut report = CheckReport::default();
        // Stored events carry no clock bound: they were checked on arrival.
        let limits = Limits {
            now_ms: u64::MAX,
            future_skew_ms: 0,
            payload_bytes_max: PAYLOAD_BYTES_MAX,
        };
        let mut chunk = Vec::with_capacity(VERIFY_CHUNK);
        let mut expected = HashMap::<&'static str, u64>::new();
        let mut set_keys = Vec::new();
        for item in t.events.iter(&self.txn)? {
            let (k, v) = item?;
            report.events += 1;
            let Some(seq) = decode_seq(k) else {
                report.problem("events key is not a sequence number".into());
                continue;
            };
            let body = match self.event_body(seq, v) {
                Ok(body) => body,
                Err(e) => {
                    report.problem(e.to_string());
                    continue;
                }
            };
            let ev = match decode_stored(&body, seq) {
                Ok(ev) => ev,
                Err(e) => {
                    report.problem(e.to_string());
                    continue;
                }
            };
            match self.seq_of(ev.id())? {
                Some(s) if s == seq => {}
                other => {
                    report.problem(format!("ids[{}] is {other:?}, event is at {seq}", ev.id()))
                }
            }
            set_keys.push(
                SetKey {
                    created_at: ev.created_at(),
                    id: *ev.id(),
                }
                .encode(),
            );
            *expected.entry("by_author").or_default() += 1;
            *expected.entry("by_kind").or_default() += 1;
            *expected.entry("by_topic").or_default() += u64::from(!ev.topic().is_zero());
            *expected.entry("by_ref").or_default() += u64::from(!ev.reference().is_zero());
            if ev.kind().is_replaceable() {
                let key = self.key(Slot::Latest, &[&ev.author().0, &ev.kind().0.to_be_bytes()]);
                match t.latest.get(&self.txn, &key)?.and_then(decode_seq) {
                    Some(s) if s == seq => {}
                    other => report.problem(format!(
                        "latest for replaceable {} is {other:?}, not {seq}",
                        ev.id()
                    )),
                }
            }
            chunk.push(ev.to_vec());
            if chunk.len() == VERIFY_CHUNK {
                verify_chunk(std::mem::take(&mut chunk), &limits, threads, &mut report);
            }
        }
        verify_chunk(chunk, &limits, threads, &mut report);
        let ids = t.ids.len(&self.txn)?;
        if ids != report.events {
            report.problem(format!(
                "ids holds {ids} entries for {} events",
                report.events
            ));
        }
        let dup_tables: [(&'static str, Table, Slot, IndexedField); 4] = [
            ("by_author", t.by_author, Slot::Author, |e| {
                e.author().0.to_vec()
            }),
            ("by_kind", t.by_kind, Slot::Kind, |e| {
                kind_key(e.kind().0).to_vec()
            }),
            ("by_topic", t.by_topic, Slot::Topic, |e| {
                e.topic().0.to_vec()
            }),
            ("by_ref", t.by_ref, Slot::Ref, |e| e.reference().0.to_vec()),
        ];
        for (name, table, slot, field) in dup_tables {
            let mut entries = 0u64;
            for item in table.iter(&self.txn)? {
                let (key, value) = item?;
                entries += 1;
                self.check_entry(&mut report, name, value, |ev| {
                    *self.key(slot, &[&field(ev)]) == *key
                })?;
            }
            report.index_entries += entries;
            let want = expected.get(name).copied().unwrap_or(0);
            if entries != want {
                report.problem(format!("{name} holds {entries} entries, {want} expected"));
            }
        }
        for item in t.latest.iter(&self.txn)? {
            let (key, value) = item?;
            let body = match decode_seq(value).map(|s| (s, self.event_owned(s))) {
                Some((seq, Ok(Some(body)))) => (seq, body),
                _ => {
                    report.problem("latest points at no event".into());
                    continue;
                }
            };
            let ev = match decode_stored(&body.1, body.0) {
                Ok(ev) => ev,
                Err(e) => {
                    report.problem(e.to_string());
                    continue;
                }
            };
            let want = self.key(Slot::Latest, &[&ev.author().0, &ev.kind().0.to_be_bytes()]);
            if *key != *want || !ev.kind().is_replaceable() {
                report.problem(format!("latest entry does not match event {}", ev.id()));
            }
            if ev.kind() == Kind::DELETION {
                report.problem("a deletion is recorded as replaceable".into());
            }
        }
        for item in t.dropped.iter(&self.txn)? {
            let (key, value) = item?;
            let reason_ok = matches!(value, [DROPPED_DELETED] | [DROPPED_SUPERSEDED]);
            if key.len() != 32 || !reason_ok {
                report.problem(format!("dropped holds a malformed entry {key:02x?}"));
            } else if t.ids.get(&self.txn, key)?.is_some() {
                report.problem(format!("dropped lists the stored event {key:02x?}"));
            }
        }
        set_keys.sort_unstable();
        set_keys.dedup();
        let mut merkle_problems = Vec::new();
        report.merkle_pages = merkle::verify(&self.txn, &t, self.cipher(), &set_keys, &mut |p| {
            merkle_problems.push(p);
        })?;
        report.merkle_problems = merkle_problems.len() as u64;
        for p in merkle_problems {
            report.problem(p);
        }
        Ok(report)
    }

    /// One index entry: a position whose event exists, has that time, and passes `field_ok`.
    fn check_entry(
        &self,
        report: &mut CheckReport,
        name: &str,
        pos: &[u8],
        field_ok: impl Fn(&xaeroflux_event::EventRef<'_>) -> bool,
    ) -> Result<(), ReadError> {
        let Some(pos) = Pos::decode(pos) else {
            report.problem(format!("{name} holds a malformed position"));
            return Ok(());
        };
        let body = match self.event_owned(pos.seq) {
            Ok(Some(body)) => body,
            Ok(None) => {
                report.problem(format!("{name} entry points at missing event {}", pos.seq));
                return Ok(());
            }
            Err(e) => {
                report.problem(format!("{name}: {e}"));
                return Ok(());
            }
        };
        match decode_stored(&body, pos.seq) {
            Ok(ev) if ev.created_at() == pos.created_at && field_ok(&ev) => {}
            Ok(ev) => report.problem(format!(
                "{name} entry at {} does not match event {}",
                pos.seq,
                ev.id()
            )),
            Err(e) => report.problem(format!("{name}: {e}")),
        }
        Ok(())
    }
}

fn verify_chunk(chunk: Vec<Vec<u8>>, limits: &Limits, threads: usize, report: &mut CheckReport) {
    for result in verify_batch_parallel(chunk, limits, threads) {
        if let Err(e) = result {
            report.problem(format!("stored event fails verification: {e}"));
        }
    }
}
