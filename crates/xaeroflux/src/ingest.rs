//! Ingest of events from outside: verify on the node's verifier stage, store in pipelined
//! batches. While one batch is verified the next is read, and earlier ones are written.

use std::collections::VecDeque;

use xaeroflux_event::{Limits, Verification, VerifiedEvent, VerifierStopped, VerifyError};
use xaeroflux_store::{Durability, Outcome, Ticket, WriteError};

use crate::node::{now_ms, Node};
use crate::portable::ImportError;

/// A rejected event: its position in the input and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Position in the input, from 0.
    pub index: u64,
    /// The reason.
    pub error: VerifyError,
}

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Events read.
    pub seen: u64,
    /// Newly stored.
    pub stored: u64,
    /// Already present.
    pub duplicates: u64,
    /// Deleted earlier by their author.
    pub deleted: u64,
    /// Older than the author's stored replaceable event.
    pub superseded: u64,
    /// Events that failed verification (first [`IngestReport::REJECTED_SHOWN`] kept).
    pub rejected: Vec<Rejected>,
    /// All rejections.
    pub rejected_total: u64,
}

impl IngestReport {
    /// Rejections kept in the report; the rest are counted.
    pub const REJECTED_SHOWN: usize = 100;

    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Stored { .. } => self.stored += 1,
            Outcome::Duplicate => self.duplicates += 1,
            Outcome::Deleted => self.deleted += 1,
            Outcome::Superseded => self.superseded += 1,
            _ => {}
        }
    }
}

/// Why an ingest stopped. Every batch acknowledged before the error is stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// Storing failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The input could not be read.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The verifier stage stopped before it answered.
    #[error(transparent)]
    Verifier(#[from] VerifierStopped),
}

/// Events submitted but not yet acknowledged. While the writer commits, queued batches pile
/// up and the next commit folds them into one transaction: fewer fsyncs and fewer rewrites of
/// the same index pages per event.
const IN_FLIGHT_EVENTS_MAX: usize = 32 * 1024;

impl Node {
    /// Verifies and stores a stream of encoded events in batches of `batch` (bounded memory:
    /// about `IN_FLIGHT_EVENTS_MAX` events held). `progress` is called after each durable batch
    /// with the report so far. Bad events are rejected and counted; the rest are stored.
    pub fn ingest_stream<I, F>(
        &self,
        events: I,
        batch: usize,
        mut progress: F,
    ) -> Result<IngestReport, IngestError>
    where
        I: IntoIterator<Item = Result<Vec<u8>, ImportError>>,
        F: FnMut(&IngestReport),
    {
        let batch = batch.max(1);
        let in_flight_max = (IN_FLIGHT_EVENTS_MAX / batch).max(2);
        let mut report = IngestReport::default();
        let mut in_flight: VecDeque<Ticket> = VecDeque::new();
        let mut events = events.into_iter();
        let mut failure = None;
        // The batch at the verifier stage, and the input position of its first event.
        let mut checking: Option<(Verification, u64)> = None;
        loop {
            let mut chunk = Vec::with_capacity(batch);
            for item in events.by_ref() {
                match item {
                    Ok(bytes) => chunk.push(bytes),
                    Err(e) => {
                        failure = Some(IngestError::Import(e));
                        break;
                    }
                }
                if chunk.len() == batch {
                    break;
                }
            }
            let last = chunk.len() < batch || failure.is_some();
            let next = (!chunk.is_empty()).then(|| {
                let base = report.seen;
                report.seen += chunk.len() as u64;
                (self.verifier.verify(chunk, &Limits::at(now_ms())), base)
            });
            if let Some((check, base)) = std::mem::replace(&mut checking, next) {
                self.submit_passed(check, base, &mut report, &mut in_flight)?;
            }
            while in_flight.len() > in_flight_max {
                let outcomes = in_flight.pop_front().expect("non-empty").wait()?;
                outcomes.into_iter().for_each(|o| report.count(o));
                progress(&report);
            }
            if last {
                // Nothing more to read: the batch at the stage, if any, is the final one.
                if let Some((check, base)) = checking.take() {
                    self.submit_passed(check, base, &mut report, &mut in_flight)?;
                }
                break;
            }
        }
        while let Some(ticket) = in_flight.pop_front() {
            ticket.wait()?.into_iter().for_each(|o| report.count(o));
            progress(&report);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Waits for a batch at the stage and submits the events that passed, durably.
    fn submit_passed(
        &self,
        check: Verification,
        base: u64,
        report: &mut IngestReport,
        in_flight: &mut VecDeque<Ticket>,
    ) -> Result<(), IngestError> {
        let verified = passed(check.wait()?, base, report);
        if !verified.is_empty() {
            in_flight.push_back(self.store().submit(verified, Durability::Durable)?);
        }
        Ok(())
    }

    /// Verifies and durably stores one batch; returns per-event results in order.
    pub fn ingest(
        &self,
        events: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<Outcome, VerifyError>>, IngestError> {
        let results = self.verifier.verify_here(events, &Limits::at(now_ms()))?;
        let mut good = Vec::with_capacity(results.len());
        let mut slots = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(ev) => {
                    slots.push(Ok(good.len()));
                    good.push(ev);
                }
                Err(e) => slots.push(Err(e)),
            }
        }
        let outcomes = if good.is_empty() {
            Vec::new()
        } else {
            self.store().ingest(good)?
        };
        Ok(slots.into_iter().map(|s| s.map(|i| outcomes[i])).collect())
    }
}

/// The events of a verified batch that passed; the others are counted and (the first few)
/// named by their input position, from `base`.
fn passed(
    results: Vec<Result<VerifiedEvent, VerifyError>>,
    base: u64,
    report: &mut IngestReport,
) -> Vec<VerifiedEvent> {
    let mut good = Vec::with_capacity(results.len());
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(ev) => good.push(ev),
            Err(error) => {
                report.rejected_total += 1;
                if report.rejected.len() < IngestReport::REJECTED_SHOWN {
                    report.rejected.push(Rejected {
                        index: base + i as u64,
                        error,
                    });
                }
            }
        }
    }
    good
}
