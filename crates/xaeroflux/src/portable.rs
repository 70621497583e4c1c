//! The portable export format: a stream of signed events that any Xaeroflux build can import.
//!
//! ```text
//! file    = magic "XFEVENTS" (8) ‖ version u32 LE (=1) ‖ reserved u32 (=0) ‖ record* ‖ trailer
//! record  = length u32 LE (1..=ENCODED_MAX) ‖ event (id ‖ header ‖ signature ‖ payload)
//! trailer = 0xFFFFFFFF ‖ count u64 LE ‖ BLAKE3 of every record byte (32)
//! ```
//! Every event is verified again on import; the trailer detects truncation and corruption of
//! the file as a whole.

use std::io::{self, Read, Write};

use xaeroflux_event::{EventRef, ENCODED_BYTES_MIN, PAYLOAD_BYTES_MAX};
use xaeroflux_store::ReadError;

use crate::node::Node;

/// First bytes of an export file.
pub const EXPORT_MAGIC: &[u8; 8] = b"XFEVENTS";
/// Export format version.
pub const EXPORT_VERSION: u32 = 1;
const END_MARK: u32 = u32::MAX;
const ENCODED_MAX: usize = ENCODED_BYTES_MIN + PAYLOAD_BYTES_MAX;

/// Why an export file cannot be read. Events read before the error were whole and are
/// verified independently; nothing is stored from a record that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Not an export file.
    #[error("not a Xaeroflux export file (bad magic)")]
    BadMagic,
    /// Written by a newer version. Fix: upgrade this program.
    #[error("export format version {got} is not supported (this build reads {supported})")]
    UnsupportedVersion {
        /// Version in the file.
        got: u32,
        /// Version supported.
        supported: u32,
    },
    /// The file ends in the middle. Fix: copy it again.
    #[error("export file truncated at byte {at}")]
    Truncated {
        /// Offset where data ran out.
        at: u64,
    },
    /// A record claims more bytes than any event can have.
    #[error("record at byte {at} claims {len} bytes (at most {max})")]
    Oversized {
        /// Offset of the record.
        at: u64,
        /// Claimed length.
        len: u64,
        /// Largest event.
        max: usize,
    },
    /// The trailer's checksum or count does not match the records.
    #[error("export file corrupt: {0}")]
    Corrupt(&'static str),
    /// Bytes after the trailer.
    #[error("trailing bytes after the end of the export")]
    TrailingBytes,
    /// Reading failed.
    #[error("reading the export: {0}")]
    Io(#[from] io::Error),
}

/// Why an export stopped. What was written is not a whole export (it has no trailer): an
/// import of it stops with [`ImportError::Truncated`], after storing the events before.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Reading the store failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Writing failed.
    #[error("writing the export: {0}")]
    Io(#[from] io::Error),
}

/// Events read from the store per page while exporting.
const EXPORT_PAGE: usize = 4096;

impl Node {
    /// Writes every stored event, in store order, as an export stream (see the module's
    /// format) to `out`, one read transaction and bounded memory, and returns the sink and the
    /// number of events. The stream is not sealed, even from an encrypted store: it is for
    /// moving events elsewhere, and anyone who can read it reads every event.
    pub fn export_to<W: Write>(&self, out: W) -> Result<(W, u64), ExportError> {
        let mut writer = ExportWriter::new(out)?;
        let read = self.store().read()?;
        let mut after = 0;
        loop {
            let page = read.changes_since(after, EXPORT_PAGE)?;
            let Some(&(last, _)) = page.last() else { break };
            for (_, ev) in &page {
                writer.write_event_ref(ev)?;
            }
            after = last;
        }
        Ok(writer.finish()?)
    }
}

/// Writes an export stream.
pub struct ExportWriter<W: Write> {
    out: W,
    count: u64,
    hasher: blake3::Hasher,
}

impl<W: Write> ExportWriter<W> {
    /// Writes the file header.
    pub fn new(mut out: W) -> io::Result<ExportWriter<W>> {
        out.write_all(EXPORT_MAGIC)?;
        out.write_all(&EXPORT_VERSION.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        Ok(ExportWriter {
            out,
            count: 0,
            hasher: blake3::Hasher::new(),
        })
    }

    /// Appends one encoded event (`id ‖ header ‖ signature ‖ payload`).
    pub fn write_event(&mut self, event: &[u8]) -> io::Result<()> {
        self.write_record(&[event])
    }

    /// Appends a stored event without first copying it into one buffer.
    pub fn write_event_ref(&mut self, event: &EventRef<'_>) -> io::Result<()> {
        self.write_record(&[&event.id().0, event.body()])
    }

    fn write_record(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len == 0 || len > ENCODED_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "event size out of bounds",
            ));
        }
        let len = (len as u32).to_le_bytes();
        self.hasher.update(&len);
        self.out.write_all(&len)?;
        for part in parts {
            self.hasher.update(part);
            self.out.write_all(part)?;
        }
        self.count += 1;
        Ok(())
    }

    /// Writes the trailer and returns the sink and the number of events written.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.out.write_all(&END_MARK.to_le_bytes())?;
        self.out.write_all(&self.count.to_le_bytes())?;
        self.out.write_all(self.hasher.finalize().as_bytes())?;
        self.out.flush()?;
        Ok((self.out, self.count))
    }
}

/// Reads an export stream record by record, with bounded memory.
pub struct ImportReader<R: Read> {
    input: R,
    offset: u64,
    count: u64,
    hasher: blake3::Hasher,
    done: bool,
}

impl<R: Read> ImportReader<R> {
    /// Reads and checks the file header.
    pub fn new(mut input: R) -> Result<ImportReader<R>, ImportError> {
        let mut head = [0u8; 16];
        read_exact_at(&mut input, &mut head, 0)?;
        if &head[..8] != EXPORT_MAGIC {
            return Err(ImportError::BadMagic);
        }
        let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        if version != EXPORT_VERSION {
            return Err(ImportError::UnsupportedVersion {
                got: version,
                supported: EXPORT_VERSION,
            });
        }
        if head[12..16] != [0; 4] {
            return Err(ImportError::Corrupt("reserved header field is not zero"));
        }
        Ok(ImportReader {
            input,
            offset: 16,
            count: 0,
            hasher: blake3::Hasher::new(),
            done: false,
        })
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next event's bytes, `None` after a valid trailer.
    pub fn next_event(&mut self) -> Result<Option<Vec<u8>>, ImportError> {
        if self.done {
            return Ok(None);
        }
        let at = self.offset;
        let mut len = [0u8; 4];
        self.read(&mut len)?;
        let n = u32::from_le_bytes(len);
        if n == END_MARK {
            self.finish()?;
            return Ok(None);
        }
        if n == 0 || n as usize > ENCODED_MAX {
            return Err(ImportError::Oversized {
                at,
                len: u64::from(n),
                max: ENCODED_MAX,
            });
        }
        let mut event = vec![0u8; n as usize];
        self.read(&mut event)?;
        self.hasher.update(&len);
        self.hasher.update(&event);
        self.count += 1;
        Ok(Some(event))
    }

    fn finish(&mut self) -> Result<(), ImportError> {
        let mut trailer = [0u8; 40];
        self.read(&mut trailer)?;
        let count = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
        if count != self.count {
            return Err(ImportError::Corrupt(
                "event count in the trailer does not match",
            ));
        }
        if &trailer[8..] != self.hasher.finalize().as_bytes() {
            return Err(ImportError::Corrupt(
                "checksum in the trailer does not match",
            ));
        }
        let mut extra = [0u8; 1];
        if self.input.read(&mut extra)? != 0 {
            return Err(ImportError::TrailingBytes);
        }
        self.done = true;
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<(), ImportError> {
        read_exact_at(&mut self.input, buf, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(())
    }
}

fn read_exact_at(input: &mut impl Read, buf: &mut [u8], offset: u64) -> Result<(), ImportError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(ImportError::Truncated {
                    at: offset + filled as u64,
                })
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = ExportWriter::new(Vec::new()).unwrap();
        w.write_event(&[1u8; 300]).unwrap();
        w.write_event(&[2u8; 250]).unwrap();
        w.finish().unwrap().0
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Vec<u8>>, ImportError> {
        let mut r = ImportReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(e) = r.next_event()? {
            out.push(e);
        }
        Ok(out)
    }

    #[test]
    fn round_trip() {
        let events = read_all(&sample()).unwrap();
        assert_eq!(events, vec![vec![1u8; 300], vec![2u8; 250]]);
    }

    #[test]
    fn every_truncation_and_every_flip_is_an_error() {
        let file = sample();
        for cut in 0..file.len() {
            assert!(read_all(&file[..cut]).is_err(), "cut at {cut} accepted");
        }
        for at in 0..file.len() {
            let mut bad = file.clone();
            bad[at] ^= 0x40;
            assert!(read_all(&bad).is_err(), "flip at {at} accepted");
        }
        let mut long = file.clone();
        long.push(0);
        assert!(matches!(read_all(&long), Err(ImportError::TrailingBytes)));
    }

    #[test]
    fn a_huge_length_is_refused_before_allocating() {
        let mut file = sample()[..16].to_vec();
        file.extend_from_slice(&(1u32 << 30).to_le_bytes());
        assert!(matches!(
            read_all(&file),
            Err(ImportError::Oversized {
                len: 1_073_741_824,
                ..
            })
        ));
    }
}
