//! Reference stores that benchmarks run beside the real store, in the same process, on the same
//! data: [`PlainHeed`], a straightforward strfry-like LMDB layout, and [`Sqlite`], the usual
//! embedded choice. Neither verifies anything: the caller hands them bytes it already verified.

mod plain_heed;
mod sqlite;

pub(crate) use plain_heed::open_env;
pub use plain_heed::PlainHeed;
pub use sqlite::Sqlite;

use xaeroflux_event::DecodeError;

/// Why a baseline store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineError {
    /// LMDB failed. Fix: check the directory's free space and that no other process holds it.
    #[error("LMDB: {0}")]
    Heed(#[from] heed::Error),
    /// SQLite failed. Fix: check the directory's free space and permissions.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file system failed. Fix: check that the directory can be created and read.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes given to `ingest` are not an encoded event. Fix: pass verified event bytes.
    #[error("not an encoded event: {0}")]
    Decode(#[from] DecodeError),
}

/// Sorted, deduplicated copy of a feed's authors, so both baselines answer the same question.
fn distinct(authors: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut authors = authors.to_vec();
    authors.sort_unstable();
    authors.dedup();
    authors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::{generate_vec, GenParams};
    use xaeroflux_event::VerifiedEvent;

    /// The newest `limit` ids by the given authors, by a plain sort.
    fn model_feed(events: &[VerifiedEvent], authors: &[[u8; 32]], limit: usize) -> Vec<[u8; 32]> {
        let mut matching: Vec<(u64, [u8; 32])> = events
            .iter()
            .map(VerifiedEvent::as_ref)
            .filter(|e| authors.contains(&e.author().0))
            .map(|e| (e.created_at(), e.id().0))
            .collect();
        matching.sort_unstable_by(|a, b| b.cmp(a));
        matching.into_iter().take(limit).map(|(_, id)| id).collect()
    }

    /// A few popular and a few quiet authors, plus one with no events and a repeat.
    fn feed_authors(events: &[VerifiedEvent]) -> Vec<[u8; 32]> {
        let mut authors: Vec<[u8; 32]> = [0u32, 1, 5, 17, 30, 49]
            .iter()
            .map(|&a| crate::gen::identity_for(9, a).public_key().0)
            .collect();
        authors.push([0xee; 32]);
        authors.push(authors[0]);
        assert!(events.iter().any(|e| e.as_ref().author().0 == authors[5]));
        authors
    }

    trait Baseline {
        fn ingest(&mut self, events: &[&[u8]]) -> Result<(), BaselineError>;
        fn get(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, BaselineError>;
        fn get_len(&self, id: &[u8; 32]) -> Result<Option<usize>, BaselineError>;
        fn feed(&self, authors: &[[u8; 32]], limit: usize) -> Result<Vec<[u8; 32]>, BaselineError>;
        fn disk_bytes(&self) -> u64;
    }

    macro_rules! impl_baseline {
        ($t:ty) => {
            impl Baseline for $t {
                fn ingest(&mut self, events: &[&[u8]]) -> Result<(), BaselineError> {
                    <$t>::ingest(self, events)
                }
                fn get(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, BaselineError> {
                    <$t>::get(self, id)
                }
                fn get_len(&self, id: &[u8; 32]) -> Result<Option<usize>, BaselineError> {
                    <$t>::get_with(self, id, <[u8]>::len)
                }
                fn feed(
                    &self,
                    authors: &[[u8; 32]],
                    limit: usize,
                ) -> Result<Vec<[u8; 32]>, BaselineError> {
                    <$t>::feed(self, authors, limit)
                }
                fn disk_bytes(&self) -> u64 {
                    <$t>::disk_bytes(self)
                }
            }
        };
    }
    impl_baseline!(PlainHeed);
    impl_baseline!(Sqlite);

    fn check(store: &mut dyn Baseline, events: &[VerifiedEvent]) {
        let bytes: Vec<&[u8]> = events.iter().map(VerifiedEvent::as_bytes).collect();
        for batch in bytes.chunks(700) {
            store.ingest(batch).unwrap();
        }
        // Ingesting again changes nothing.
        store.ingest(&bytes[..10]).unwrap();
        for event in events {
            let id = &event.id().0;
            assert_eq!(store.get(id).unwrap().as_deref(), Some(event.as_bytes()));
            assert_eq!(store.get_len(id).unwrap(), Some(event.as_bytes().len()));
        }
        assert_eq!(store.get(&[0x55; 32]).unwrap(), None);
        assert_eq!(store.get_len(&[0x55; 32]).unwrap(), None);
        let authors = feed_authors(events);
        for limit in [0, 1, 20, 100, 5000] {
            let got = store.feed(&authors, limit).unwrap();
            assert_eq!(got, model_feed(events, &authors, limit), "limit {limit}");
        }
        assert_eq!(store.feed(&[], 10).unwrap(), Vec::<[u8; 32]>::new());
        assert!(store.disk_bytes() > 0);
    }

    #[test]
    fn plain_heed_matches_model() {
        let events = generate_vec(&GenParams::new(2000, 50, 9));
        let dir = tempfile::tempdir().unwrap();
        let mut store = PlainHeed::open(dir.path()).unwrap();
        check(&mut store, &events);
        let rtxn = store.read_txn().unwrap();
        let first = &events[0];
        assert_eq!(
            store.get_in(&rtxn, &first.id().0).unwrap(),
            Some(first.as_bytes())
        );
        drop(rtxn);
        drop(store);
        let reopened = PlainHeed::open(dir.path()).unwrap();
        assert_eq!(
            reopened.get(&first.id().0).unwrap().as_deref(),
            Some(first.as_bytes())
        );
    }

    #[test]
    fn sqlite_matches_model() {
        let events = generate_vec(&GenParams::new(2000, 50, 9));
        let dir = tempfile::tempdir().unwrap();
        let mut store = Sqlite::open(dir.path()).unwrap();
        check(&mut store, &events);
        drop(store);
        let reopened = Sqlite::open(dir.path()).unwrap();
        let first = &events[0];
        assert_eq!(
            reopened.get(&first.id().0).unwrap().as_deref(),
            Some(first.as_bytes())
        );
    }

    #[test]
    fn errors_cross_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<BaselineError>();
    }

    #[test]
    fn junk_is_a_decode_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut heed = PlainHeed::open(dir.path().join("heed")).unwrap();
        let mut sqlite = Sqlite::open(dir.path().join("sqlite")).unwrap();
        assert!(matches!(
            heed.ingest(&[b"junk"]),
            Err(BaselineError::Decode(_))
        ));
        assert!(matches!(
            sqlite.ingest(&[b"junk"]),
            Err(BaselineError::Decode(_))
        ));
    }
}
