//! Frames on a byte stream: a 4-byte little-endian length, then the frame. The reader checks
//! the length against its cap before reading a byte of the frame, so a peer claiming a 1 GiB
//! frame costs this side nothing but the four bytes.

use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::transport::{LinkError, SyncLink, LINK_FRAMES_BUFFERED};

/// Bytes of the length prefix.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Splits a stream into a [`SyncLink`], with a reader and a writer task on the current
/// `LocalSet`. Frames above `frame_bytes_max` end the stream with
/// [`LinkError::FrameTooLarge`]; a peer silent for `idle` ends it with [`LinkError::Idle`].
pub fn spawn_framed<S>(stream: S, frame_bytes_max: usize, idle: Duration) -> SyncLink
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (mut read, mut write) = stream.split();
    let (in_tx, in_rx) = mpsc::channel(LINK_FRAMES_BUFFERED);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(LINK_FRAMES_BUFFERED);
    let (flushed_tx, flushed_rx) = tokio::sync::oneshot::channel();
    tokio::task::spawn_local(async move {
        loop {
            let frame =
                match tokio::time::timeout(idle, read_frame(&mut read, frame_bytes_max)).await {
                    Ok(Ok(Some(frame))) => Ok(frame),
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(LinkError::Idle {
                        secs: idle.as_secs(),
                    }),
                };
            let failed = frame.is_err();
            if in_tx.send(frame).await.is_err() || failed {
                break;
            }
        }
    });
    tokio::task::spawn_local(async move {
        while let Some(frame) = out_rx.recv().await {
            if write_frame(&mut write, &frame).await.is_err() {
                // The reader side reports the broken stream; nothing more to write.
                return;
            }
        }
        let _ = write.close().await;
        let _ = flushed_tx.send(());
    });
    SyncLink::from_stream(in_rx, out_tx, flushed_rx)
}

/// Reads one frame; `None` at a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    read: &mut R,
    frame_bytes_max: usize,
) -> Result<Option<Vec<u8>>, LinkError> {
    let mut prefix = [0u8; FRAME_PREFIX_BYTES];
    let mut got = 0;
    while got < prefix.len() {
        let n = read
            .read(&mut prefix[got..])
            .await
            .map_err(|e| LinkError::Io(e.to_string()))?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(LinkError::Io("stream ended inside a frame header".into()));
        }
        got += n;
    }
    let claimed = u32::from_le_bytes(prefix) as u64;
    if claimed > frame_bytes_max as u64 {
        return Err(LinkError::FrameTooLarge {
            claimed,
            max: frame_bytes_max as u64,
        });
    }
    let mut frame = vec![0u8; claimed as usize];
    read.read_exact(&mut frame)
        .await
        .map_err(|e| LinkError::Io(e.to_string()))?;
    Ok(Some(frame))
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    write: &mut W,
    frame: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(frame.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    write.write_all(&len.to_le_bytes()).await?;
    write.write_all(frame).await?;
    write.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    #[test]
    fn frames_round_trip_and_oversized_claims_are_refused_unread() {
        let mut buf = Vec::new();
        block_on(write_frame(&mut buf, b"hello")).unwrap();
        block_on(write_frame(&mut buf, b"")).unwrap();
        let mut r = futures::io::Cursor::new(buf);
        assert_eq!(block_on(read_frame(&mut r, 16)).unwrap().unwrap(), b"hello");
        assert_eq!(block_on(read_frame(&mut r, 16)).unwrap().unwrap(), b"");
        assert_eq!(block_on(read_frame(&mut r, 16)).unwrap(), None);

        let mut claim = (1u32 << 30).to_le_bytes().to_vec();
        claim.extend_from_slice(b"xx");
        let mut r = futures::io::Cursor::new(claim);
        assert_eq!(
            block_on(read_frame(&mut r, 65_536)),
            Err(LinkError::FrameTooLarge {
                claimed: 1 << 30,
                max: 65_536
            })
        );
        let mut r = futures::io::Cursor::new(vec![5, 0]);
        assert!(matches!(
            block_on(read_frame(&mut r, 16)),
            Err(LinkError::Io(_))
        ));
        let mut r = futures::io::Cursor::new(vec![5, 0, 0, 0, b'a']);
        assert!(matches!(
            block_on(read_frame(&mut r, 16)),
            Err(LinkError::Io(_))
        ));
    }
}
