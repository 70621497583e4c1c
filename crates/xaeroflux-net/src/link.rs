//! Frames on a byte stream: a 4-byte little-endian length, then the frame. The reader checks
//! the length against its cap before reading a byte of the frame, so a peer claiming a 1 GiB
//! frame costs this side nothing but the four bytes.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::transport::{LinkError, SyncLink, LINK_FRAMES_BUFFERED};

/// Bytes of the length prefix.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Splits a stream into a [`SyncLink`], with a reader and a writer task on the current
/// `LocalSet`. Frames above `frame_bytes_max` end the stream with
/// [`LinkError::FrameTooLarge`]. The stream is idle, and ends with [`LinkError::Idle`], only
/// when no whole frame went either way for `idle`: a side that streams events over a slow
/// link while the other only listens is making progress.
pub fn spawn_framed<S>(stream: S, frame_bytes_max: usize, idle: Duration) -> SyncLink
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (mut read, mut write) = stream.split();
    let (in_tx, in_rx) = mpsc::channel(LINK_FRAMES_BUFFERED);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(LINK_FRAMES_BUFFERED);
    let (flushed_tx, flushed_rx) = tokio::sync::oneshot::channel();
    // Both tasks run on this thread: a cell is enough.
    let progress = Rc::new(Cell::new(Instant::now()));
    let written = progress.clone();
    tokio::task::spawn_local(async move {
        loop {
            let frame = match read_or_idle(&mut read, frame_bytes_max, idle, &progress).await {
                Ok(Some(frame)) => Ok(frame),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            progress.set(Instant::now());
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
            written.set(Instant::now());
        }
        let _ = write.close().await;
        let _ = flushed_tx.send(());
    });
    SyncLink::from_stream(in_rx, out_tx, flushed_rx)
}

/// Reads one frame, failing with [`LinkError::Idle`] once nothing moved either way (as
/// `progress` records) for `idle`. The read itself is never cancelled halfway.
async fn read_or_idle<R: AsyncRead + Unpin>(
    read: &mut R,
    frame_bytes_max: usize,
    idle: Duration,
    progress: &Cell<Instant>,
) -> Result<Option<Vec<u8>>, LinkError> {
    let reading = read_frame(read, frame_bytes_max);
    tokio::pin!(reading);
    loop {
        let deadline = progress.get() + idle;
        tokio::select! {
            r = &mut reading => return r,
            _ = tokio::time::sleep_until(deadline) => {
                if progress.get() + idle <= Instant::now() {
                    return Err(LinkError::Idle { secs: idle.as_secs() });
                }
            }
        }
    }
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

    /// One direction of an in-memory byte pipe, for driving `spawn_framed` in tests.
    struct Pipe {
        rx: futures::channel::mpsc::UnboundedReceiver<Vec<u8>>,
        tx: futures::channel::mpsc::UnboundedSender<Vec<u8>>,
        left: Vec<u8>,
    }

    fn pipe_pair() -> (Pipe, Pipe) {
        let (a_tx, b_rx) = futures::channel::mpsc::unbounded();
        let (b_tx, a_rx) = futures::channel::mpsc::unbounded();
        let pipe = |rx, tx| Pipe {
            rx,
            tx,
            left: Vec::new(),
        };
        (pipe(a_rx, a_tx), pipe(b_rx, b_tx))
    }

    impl AsyncRead for Pipe {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            use futures::StreamExt;
            while self.left.is_empty() {
                match self.rx.poll_next_unpin(cx) {
                    std::task::Poll::Ready(Some(bytes)) => self.left = bytes,
                    std::task::Poll::Ready(None) => return std::task::Poll::Ready(Ok(0)),
                    std::task::Poll::Pending => return std::task::Poll::Pending,
                }
            }
            let n = buf.len().min(self.left.len());
            buf[..n].copy_from_slice(&self.left[..n]);
            self.left.drain(..n);
            std::task::Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Pipe {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let sent = self.tx.unbounded_send(buf.to_vec());
            std::task::Poll::Ready(sent.map(|_| buf.len()).map_err(std::io::Error::other))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self.tx.close_channel();
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn local<F: std::future::Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, f)
    }

    #[test]
    fn a_side_that_only_sends_is_not_idle() {
        local(async {
            let (a, b) = pipe_pair();
            let idle = Duration::from_secs(60);
            let mut sender = spawn_framed(a, 1024, idle);
            let mut receiver = spawn_framed(b, 1024, idle);
            // Ten minutes of one frame every 20 s, never a frame back: a slow bulk transfer.
            for i in 0..30u8 {
                sender.tx.send(vec![i; 100]).await.unwrap();
                assert_eq!(receiver.rx.recv().await.unwrap().unwrap(), vec![i; 100]);
                tokio::time::sleep(Duration::from_secs(20)).await;
            }
            let quiet = tokio::time::timeout(Duration::from_millis(1), sender.rx.recv()).await;
            assert!(quiet.is_err(), "the sending side reported {quiet:?}");
        });
    }

    #[test]
    fn a_link_where_nothing_moves_either_way_is_idle() {
        local(async {
            let (a, _b) = pipe_pair();
            let mut link = spawn_framed(a, 1024, Duration::from_secs(60));
            let started = tokio::time::Instant::now();
            let got = link.rx.recv().await;
            assert_eq!(got, Some(Err(LinkError::Idle { secs: 60 })));
            assert!(started.elapsed() >= Duration::from_secs(60));
        });
    }
}
