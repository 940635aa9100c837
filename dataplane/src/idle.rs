//! Timeouts between two successive reads or writes: nginx's `client_body_timeout`,
//! `send_timeout`, `proxy_read_timeout` and `proxy_send_timeout`. A transfer may take
//! as long as it likes while it moves; one that stalls longer than the limit fails.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest wait between two reads (or writes), as nginx times bodies and
/// connections: between two successive operations, not for the whole transfer. The
/// timer exists only once a wait has begun, so what is ready when asked for sets none.
pub struct Idle {
    limit: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Progress was made since the timer was last set.
    progressed: bool,
}

impl Idle {
    pub fn new(limit: Duration) -> Idle {
        Idle {
            limit,
            sleep: None,
            progressed: false,
        }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Call when a read or write made progress.
    pub fn progress(&mut self) {
        self.progressed = true;
    }

    /// Call when nothing is ready yet: ready once the wait since the last progress
    /// (or since the first wait) has passed the limit.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let progressed = std::mem::take(&mut self.progressed);
        let deadline = tokio::time::Instant::now() + self.limit;
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if progressed {
                    sleep.as_mut().reset(deadline);
                }
                sleep
            }
            None => self.sleep.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        sleep.as_mut().poll(cx)
    }
}

/// A connection whose reads and writes fail with `TimedOut` when one waits longer than
/// its limit (`None`: no limit that way).
pub struct IdleIo<T> {
    inner: T,
    read: Option<Idle>,
    write: Option<Idle>,
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, read: Option<Duration>, write: Option<Duration>) -> IdleIo<T> {
        IdleIo {
            inner,
            read: read.map(Idle::new),
            write: write.map(Idle::new),
        }
    }

    pub fn into_inner(self) -> T {
        self.inner
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

/// What a wait becomes: `TimedOut` once over the limit, else still pending; progress
/// restarts the clock.
fn timed<R>(idle: &mut Option<Idle>, cx: &mut Context<'_>, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
    let Some(idle) = idle else {
        return polled;
    };
    match polled {
        Poll::Pending => match idle.poll_expired(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no progress for {:?}", idle.limit),
            ))),
            Poll::Pending => Poll::Pending,
        },
        ready => {
            idle.progress();
            ready
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        timed(&mut this.read, cx, polled)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        timed(&mut this.write, cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        timed(&mut this.write, cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        timed(&mut this.write, cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A read that waits longer than the limit fails; one that keeps getting bytes
    /// within the limit may take as long as it likes in all.
    #[tokio::test(start_paused = true)]
    async fn a_stall_fails_and_a_slow_trickle_does_not() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut a = IdleIo::new(a, Some(Duration::from_secs(10)), None);
        let writer = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(8)).await;
                b.write_all(b"x").await.expect("write");
            }
            // Then silence, with the other end still open.
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(b);
        });
        let mut got = [0u8; 1];
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            a.read_exact(&mut got).await.expect("a byte within the limit");
        }
        assert_eq!(start.elapsed(), Duration::from_secs(40));
        let err = a.read(&mut got).await.expect_err("a stall over the limit");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(50));
        writer.abort();
    }
}
