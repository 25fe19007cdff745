//! What keeps one client from holding connections without doing work: the per-address cap, the first-byte and
//! idle watchdog of each connection, and the read timeout of request bodies. Timeouts hyper has (HTTP/1 header
//! read, HTTP/2 keep-alive pings) are set on its builder in `serve.rs`; these are the ones it lacks.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// How many connections each client address has open, up to a cap.
pub struct AddressCap {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its address; uncounted on drop.
pub struct AddressSlot {
    cap: Arc<AddressCap>,
    ip: IpAddr,
}

impl AddressCap {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { max: max.max(1), open: Mutex::new(HashMap::new()) })
    }

    /// A slot for a connection from `ip`, or `None` when that address already has the most it may.
    pub fn claim(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        // An IPv4 client reaching a dual-stack socket is the same client as over IPv4.
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot { cap: self.clone(), ip })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.cap.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// What a connection's watchdog needs to know: whether the client has sent anything, how many requests are in
/// flight, and since when none has been.
pub struct Activity {
    first_byte: AtomicBool,
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
    changed: Notify,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            first_byte: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            changed: Notify::new(),
        })
    }

    /// Counts a request as in flight until the guard is dropped (when the request is answered).
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        InFlight(self.clone())
    }

    /// Resolves when the connection should be closed: no byte within `first_byte` of the start, or no request in
    /// flight for `idle`. Activity that is not a request (HTTP/2 pings and settings, a request head still
    /// arriving) does not keep a connection open.
    pub async fn expired(&self, first_byte: Duration, idle: Duration) {
        let started = Instant::now();
        loop {
            let changed = self.changed.notified();
            let deadline = if self.in_flight.load(Ordering::SeqCst) > 0 {
                None
            } else if !self.first_byte.load(Ordering::SeqCst) {
                Some(started + first_byte)
            } else {
                Some(*self.idle_since.lock().unwrap_or_else(PoisonError::into_inner) + idle)
            };
            match deadline {
                None => changed.await,
                Some(deadline) if deadline <= Instant::now() => return,
                Some(deadline) => drop(tokio::time::timeout_at(deadline, changed).await),
            }
        }
    }

    fn saw_bytes(&self) {
        if !self.first_byte.swap(true, Ordering::SeqCst) {
            self.changed.notify_waiters();
        }
    }
}

/// A request in flight on its connection (see [`Activity::request`]).
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        *activity.idle_since.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        activity.in_flight.fetch_sub(1, Ordering::SeqCst);
        activity.changed.notify_waiters();
    }
}

/// The decrypted stream of a connection, noting the client's first byte in its [`Activity`].
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut this.inner).poll_read(cx, buf));
        if buf.filled().len() > before {
            this.activity.saw_bytes();
        }
        Poll::Ready(result)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The error a body gives when its client stops sending for longer than the read timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly")]
pub struct BodyTimedOut;

/// A request body whose every read must make progress within `limit`; a slow one fails with [`BodyTimedOut`]
/// and raises `cut`, so the server can answer 408 whatever the handler made of the error.
pub struct ReadTimeout<B> {
    inner: B,
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    cut: Arc<AtomicBool>,
}

impl<B> ReadTimeout<B> {
    pub fn new(inner: B, limit: Duration, cut: Arc<AtomicBool>) -> Self {
        Self { inner, limit, sleep: None, cut }
    }
}

impl<B> Body for ReadTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.cut.load(Ordering::SeqCst) {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                // The clock runs only while the reader waits for data: it restarts after every frame.
                this.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let limit = this.limit;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                ready!(sleep.as_mut().poll(cx));
                this.cut.store(true, Ordering::SeqCst);
                Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_at_most_its_cap_and_slots_come_back() {
        let cap = AddressCap::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let (one, _two) = (cap.claim(a).unwrap(), cap.claim(mapped).unwrap());
        assert!(cap.claim(a).is_none(), "a third from one address (IPv4 or IPv4-mapped) is refused");
        assert!(cap.claim("192.0.2.2".parse().unwrap()).is_some(), "other addresses are not affected");
        drop(one);
        assert!(cap.claim(a).is_some());
    }
}
