//! ingress-nginx's `proxy-buffering: on`: an endpoint's response read ahead of a slow
//! client, so that the endpoint connection is free (back in the pool) once the
//! response is in, however slowly the client takes it.
//!
//! A task of its own reads the endpoint's body into a queue of frames while the
//! serving task hands them to the client. Memory stays bounded twice over: one
//! response holds at most `per_response` bytes plus the one read that crossed it
//! (after which its reader waits for the client, as without buffering), and all
//! responses together hold at most `budget`; a response that finds the budget spent
//! holds one frame at a time, again as without buffering. Nothing goes to disk: nginx
//! spills what does not fit its buffers into a temporary file of up to 1 GiB
//! (`proxy_max_temp_file_size`), which Portico trades for the endpoint connection a
//! larger response keeps (docs/hardening.md).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::UpstreamReadTimeout;
use crate::body::{BoxError, Held};
use crate::idle::Idle;

/// Bytes of responses read ahead of their clients by the whole process.
static READ_AHEAD: AtomicU64 = AtomicU64::new(0);

/// Bytes of responses the process holds read ahead of their clients now.
pub fn read_ahead_bytes() -> u64 {
    READ_AHEAD.load(std::sync::atomic::Ordering::Acquire)
}

/// How much may be read ahead.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Of one response; the read that crosses it is kept, then reading waits.
    pub per_response: u64,
    /// Of all responses at once.
    pub budget: u64,
}

/// The client's side: frames as the reader queued them.
pub struct ReadAhead {
    shared: Arc<Mutex<State>>,
    /// What is left of a body of known length, for the writer's framing.
    remaining: Option<u64>,
}

struct State {
    /// Frames read and not yet taken, each with whether its bytes count against the
    /// process's budget.
    frames: VecDeque<(Frame<Bytes>, bool)>,
    /// Data bytes among `frames`.
    len: u64,
    held: Held,
    end: End,
    /// The reader stopped for want of room and waits for the client to take some.
    blocked: bool,
    /// The budget was spent at the last read: one frame at a time until it is not.
    over_budget: bool,
    /// The client went: the reader stops and drops the endpoint's body.
    gone: bool,
    client: Option<Waker>,
    reader: Option<Waker>,
}

enum End {
    Open,
    Done,
    Failed(Option<BoxError>),
}

impl State {
    /// No room for another read. An empty queue always has room: a bound of 0 reads
    /// one frame at a time, never none.
    fn full(&self, limits: Limits) -> bool {
        self.len > 0 && (self.len >= limits.per_response || self.over_budget)
    }

    fn wake_client(&mut self) {
        if let Some(w) = self.client.take() {
            w.wake();
        }
    }
}

fn lock(shared: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every critical section leaves the state whole, so a poisoned lock is usable.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReadAhead {
    /// Starts reading `body` ahead, waiting up to `idle`'s limit between two of its
    /// frames (nginx's `proxy_read_timeout`).
    pub fn spawn<B>(body: B, idle: Idle, limits: Limits) -> ReadAhead
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let remaining = body.size_hint().exact();
        let shared = Arc::new(Mutex::new(State {
            frames: VecDeque::new(),
            len: 0,
            held: Held::new(&READ_AHEAD),
            end: End::Open,
            blocked: false,
            over_budget: false,
            gone: false,
            client: None,
            reader: None,
        }));
        let mut reader = Reader {
            body,
            idle,
            limits,
            shared: shared.clone(),
            resumed: false,
        };
        tokio::spawn(std::future::poll_fn(move |cx| reader.poll(cx)));
        ReadAhead { shared, remaining }
    }

    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut st = lock(&self.shared);
        if let Some((frame, counted)) = st.frames.pop_front() {
            let n = frame.data_ref().map_or(0, |d| d.len() as u64);
            st.len -= n;
            if counted {
                st.held.give_back(n);
            }
            if st.blocked {
                st.blocked = false;
                if let Some(w) = st.reader.take() {
                    w.wake();
                }
            }
            if let Some(left) = &mut self.remaining {
                *left = left.saturating_sub(n);
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        match &mut st.end {
            End::Done => Poll::Ready(None),
            End::Failed(e) => Poll::Ready(Some(Err(e.take().unwrap_or_else(|| "response body failed".into())))),
            End::Open => {
                if !st.client.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    st.client = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    pub fn is_end_stream(&self) -> bool {
        let st = lock(&self.shared);
        st.frames.is_empty() && matches!(st.end, End::Done)
    }

    pub fn size_hint(&self) -> SizeHint {
        self.remaining.map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        let mut st = lock(&self.shared);
        st.gone = true;
        st.frames.clear();
        st.len = 0;
        st.held.give_back(u64::MAX);
        if let Some(w) = st.reader.take() {
            w.wake();
        }
    }
}

/// The task's side: reads the endpoint's body while there is room.
struct Reader<B> {
    body: B,
    idle: Idle,
    limits: Limits,
    shared: Arc<Mutex<State>>,
    /// The reader waited for room since its last read: the endpoint was not being
    /// waited for meanwhile, so its read timeout starts afresh.
    resumed: bool,
}

impl<B> Reader<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            {
                let mut st = lock(&self.shared);
                if st.gone {
                    return Poll::Ready(());
                }
                if st.full(self.limits) {
                    st.blocked = true;
                    st.reader = Some(cx.waker().clone());
                    self.resumed = true;
                    return Poll::Pending;
                }
            }
            if std::mem::take(&mut self.resumed) {
                self.idle.progress();
            }
            let polled = Pin::new(&mut self.body).poll_frame(cx);
            let mut st = lock(&self.shared);
            match polled {
                Poll::Ready(Some(Ok(frame))) => {
                    self.idle.progress();
                    if st.gone {
                        return Poll::Ready(());
                    }
                    let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                    let counted = st.held.take(n, self.limits.budget);
                    st.over_budget = !counted;
                    st.len += n;
                    st.frames.push_back((frame, counted));
                    st.wake_client();
                }
                Poll::Ready(Some(Err(e))) => {
                    st.end = End::Failed(Some(e.into()));
                    st.wake_client();
                    return Poll::Ready(());
                }
                Poll::Ready(None) => {
                    st.end = End::Done;
                    st.wake_client();
                    return Poll::Ready(());
                }
                Poll::Pending => {
                    if st.gone {
                        return Poll::Ready(());
                    }
                    if self.idle.poll_expired(cx).is_ready() {
                        st.end = End::Failed(Some(Box::new(UpstreamReadTimeout(self.idle.limit()))));
                        st.wake_client();
                        return Poll::Ready(());
                    }
                    // Under the lock with the check of `gone` above: a client that goes
                    // now finds this waker and wakes it.
                    st.reader = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;

    const FRAME: usize = 16 * 1024;

    /// An endpoint's body fed by the test; says when the reader has dropped it.
    struct Endpoint {
        rx: mpsc::Receiver<Bytes>,
        dropped: Arc<AtomicBool>,
    }

    impl Body for Endpoint {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.rx.poll_recv(cx).map(|d| d.map(|d| Ok(Frame::data(d))))
        }
    }

    impl Drop for Endpoint {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::Release);
        }
    }

    /// A body of `frames` frames already sent (the sender closed when `end`), read
    /// ahead within `per_response` bytes and a process budget of `budget`.
    fn start(
        frames: usize,
        end: bool,
        per_response: u64,
        budget: u64,
    ) -> (ReadAhead, mpsc::Sender<Bytes>, Arc<AtomicBool>) {
        let (tx, rx) = mpsc::channel(64);
        for _ in 0..frames {
            tx.try_send(Bytes::from(vec![b'x'; FRAME]))
                .expect("room in the channel");
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let body = Endpoint {
            rx,
            dropped: dropped.clone(),
        };
        let limits = Limits { per_response, budget };
        let ahead = ReadAhead::spawn(body, Idle::new(Duration::from_secs(60)), limits);
        let tx = if end { mpsc::channel(1).0 } else { tx };
        (ahead, tx, dropped)
    }

    /// Frames the reader has taken from the endpoint so far.
    fn read_from(tx: &mpsc::Sender<Bytes>, sent: usize) -> usize {
        sent - (tx.max_capacity() - tx.capacity())
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    async fn take(ahead: &mut ReadAhead) -> Option<usize> {
        let frame = std::future::poll_fn(|cx| ahead.poll_frame(cx)).await?;
        Some(frame.expect("a frame").into_data().map_or(0, |d| d.len()))
    }

    /// A response within the bound is read to its end (and the endpoint's body let go
    /// of, its connection back in the pool) while the client takes nothing; the
    /// client then gets all of it.
    #[tokio::test]
    async fn a_response_within_the_bound_is_read_whole_before_the_client_takes_any() {
        let (mut ahead, _tx, dropped) = start(8, true, 1 << 20, u64::MAX);
        settle().await;
        assert!(dropped.load(Ordering::Acquire), "the endpoint's body is still held");
        let mut got = 0;
        while let Some(n) = take(&mut ahead).await {
            got += n;
        }
        assert_eq!(got, 8 * FRAME);
        assert!(ahead.is_end_stream());
    }

    /// A response over the bound is read up to it, then only as the client takes
    /// what was read: memory per response stays at the bound.
    #[tokio::test]
    async fn a_response_over_the_bound_is_read_only_as_far_as_the_bound() {
        let (mut ahead, tx, dropped) = start(10, false, 2 * FRAME as u64, u64::MAX);
        settle().await;
        assert_eq!(read_from(&tx, 10), 2);
        assert_eq!(take(&mut ahead).await, Some(FRAME));
        settle().await;
        assert_eq!(read_from(&tx, 10), 3);
        assert!(!dropped.load(Ordering::Acquire));
    }

    /// With the process's budget spent, a response is read one frame at a time, as
    /// without buffering.
    #[tokio::test]
    async fn a_response_that_finds_the_budget_spent_holds_one_frame_at_a_time() {
        let (mut ahead, tx, _dropped) = start(10, false, 1 << 20, 0);
        settle().await;
        assert_eq!(read_from(&tx, 10), 1);
        assert_eq!(take(&mut ahead).await, Some(FRAME));
        settle().await;
        assert_eq!(read_from(&tx, 10), 2);
    }

    /// A client that goes stops the reader, which lets go of the endpoint's body (its
    /// connection closed, not kept for a read timeout).
    #[tokio::test]
    async fn a_client_that_goes_ends_the_read_ahead() {
        let (ahead, _tx, dropped) = start(1, false, 1 << 20, u64::MAX);
        settle().await;
        assert!(!dropped.load(Ordering::Acquire));
        drop(ahead);
        settle().await;
        assert!(dropped.load(Ordering::Acquire), "the endpoint's body is still held");
    }

    /// An endpoint that stops sending in the middle of a response fails it after the
    /// read timeout, as a streamed response does.
    #[tokio::test(start_paused = true)]
    async fn an_endpoint_that_stalls_fails_the_response_after_the_read_timeout() {
        let (tx, rx) = mpsc::channel(1);
        let body = Endpoint {
            rx,
            dropped: Arc::new(AtomicBool::new(false)),
        };
        let limits = Limits {
            per_response: 1 << 20,
            budget: u64::MAX,
        };
        let mut ahead = ReadAhead::spawn(body, Idle::new(Duration::from_secs(5)), limits);
        let failed = std::future::poll_fn(|cx| ahead.poll_frame(cx)).await;
        assert!(matches!(failed, Some(Err(e)) if e.is::<UpstreamReadTimeout>()));
        drop(tx);
    }
}
