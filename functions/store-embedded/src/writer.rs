//! Group commit: every write runs on one writer thread, which puts the writes that queued up while the previous
//! commit was in flight into one write transaction of the engine (fjall's journal, `engine.rs`) and makes them
//! durable with one commit.
//!
//! The writes of a batch run one after another, in arrival order, inside the shared transaction: each reads the
//! state the earlier ones left and checks its own precondition against it, so every write has the outcome it would
//! have had in a transaction of its own. A write whose check fails returns its error and the others are still
//! committed. Every caller is answered only after the commit that holds its data has returned.
//!
//! The contract for write closures: a transaction cannot roll back part of itself (the overlay keeps no undo
//! log), so a closure that returns an `Err` must have written nothing: check first, then write. A closure that
//! fails with `Error::Internal` (a storage failure, which may strike half-way through its writes) or panics spoils
//! the batch: the transaction is aborted, that write gets its error and the others `Unavailable` (retryable), so
//! nothing half-written is ever committed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use dps_core::error::{Error, Result};
use tokio::sync::oneshot;

use crate::engine::internal;

/// What the writer needs of a storage engine: a write transaction it can begin, commit durably, or abort.
pub(crate) trait Engine: Send + Sync + 'static {
    type Txn;
    fn begin(&self) -> Result<Self::Txn>;
    /// Make every write of `txn` durable, atomically; nothing of it is visible to readers before.
    fn commit(&self, txn: Self::Txn) -> Result<()>;
    fn abort(&self, txn: Self::Txn);
}

/// The most writes one transaction takes; more wait for the next commit (bounds the latency one commit adds).
const MAX_BATCH: usize = 1024;

/// A queued write: runs in the shared transaction, or is refused without running.
trait Job<Txn>: Send {
    fn run(self: Box<Self>, txn: &mut Txn) -> Box<dyn Ran>;
    fn refuse(self: Box<Self>, err: Error);
}

/// A write that has run and waits for the commit to be answered.
trait Ran: Send {
    /// Whether it failed in a way that may have left some of its writes in the transaction.
    fn spoils_batch(&self) -> bool;
    /// Its own error, if it failed.
    fn error(&self) -> Option<Error>;
    /// Answer the caller: with its own result when the transaction committed (`failed` is None), otherwise with
    /// `failed`, whatever its own result was (a precondition that failed against writes of the same batch that
    /// were then lost must not be reported either).
    fn answer(self: Box<Self>, failed: Option<Error>);
}

struct Write<T, F> {
    f: F,
    reply: oneshot::Sender<Result<T>>,
}

struct Done<T> {
    result: Result<T>,
    reply: oneshot::Sender<Result<T>>,
}

impl<Txn, T, F> Job<Txn> for Write<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Txn) -> Result<T> + Send + 'static,
{
    fn run(self: Box<Self>, txn: &mut Txn) -> Box<dyn Ran> {
        let Write { f, reply } = *self;
        let result = catch_unwind(AssertUnwindSafe(|| f(txn))).unwrap_or_else(|_| Err(internal("a write panicked")));
        Box::new(Done { result, reply })
    }

    fn refuse(self: Box<Self>, err: Error) {
        // The caller may have gone (its request was cancelled): nobody to answer.
        let _ = self.reply.send(Err(err));
    }
}

impl<T: Send + 'static> Ran for Done<T> {
    fn spoils_batch(&self) -> bool {
        matches!(self.result, Err(Error::Internal(_)))
    }

    fn error(&self) -> Option<Error> {
        self.result.as_ref().err().cloned()
    }

    fn answer(self: Box<Self>, failed: Option<Error>) {
        let _ = self.reply.send(match failed {
            None => self.result,
            Some(err) => Err(err),
        });
    }
}

/// The writer thread and the queue into it. Dropping it lets the queued writes finish, then closes the thread
/// (and with it the thread's handle on the database), so the store's folder can be opened again right after.
pub(crate) struct Writer<E: Engine> {
    queue: Option<Sender<Box<dyn Job<E::Txn>>>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<Counters>,
}

/// Durable commits and the writes they carried, since the store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Transactions committed durably.
    pub commits: u64,
    /// Writes those transactions carried (failed preconditions included).
    pub writes: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
}

impl<E: Engine> Writer<E> {
    pub(crate) fn start(db: Arc<E>) -> Result<Self> {
        let (queue, jobs) = channel();
        let stats = Arc::new(Counters::default());
        let counters = stats.clone();
        let thread = std::thread::Builder::new()
            .name("dps-store-writer".into())
            .spawn(move || run(&*db, jobs, &counters))
            .map_err(|e| internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { queue: Some(queue), thread: Some(thread), stats })
    }

    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.stats.commits.load(Ordering::Relaxed),
            writes: self.stats.writes.load(Ordering::Relaxed),
        }
    }

    /// Queue `f` for the next shared transaction; resolves once that transaction is durably committed (or `f`'s
    /// own error, which commits nothing of it).
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut E::Txn) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or_else(|| internal("the writer is closed"))?;
        queue.send(Box::new(Write { f, reply })).map_err(|_| internal("the writer thread has stopped"))?;
        answer.await.map_err(|_| internal("the writer thread dropped a write"))?
    }
}

impl<E: Engine> Drop for Writer<E> {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run<E: Engine>(db: &E, jobs: Receiver<Box<dyn Job<E::Txn>>>, stats: &Counters) {
    while let Ok(first) = jobs.recv() {
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let writes = batch.len() as u64;
        if commit_batch(db, batch) {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.writes.fetch_add(writes, Ordering::Relaxed);
        }
    }
}

/// Run one batch in one transaction and answer every write in it; true if it was committed.
fn commit_batch<E: Engine>(db: &E, batch: Vec<Box<dyn Job<E::Txn>>>) -> bool {
    let mut txn = match db.begin() {
        Ok(txn) => txn,
        Err(err) => {
            batch.into_iter().for_each(|job| job.refuse(err.clone()));
            return false;
        }
    };
    let ran: Vec<Box<dyn Ran>> = batch.into_iter().map(|job| job.run(&mut txn)).collect();
    if ran.iter().any(|r| r.spoils_batch()) {
        db.abort(txn);
        let retry = Error::Unavailable("the embedded store failed another write of the same commit; retry".into());
        for r in ran {
            if r.spoils_batch() {
                let own = r.error();
                r.answer(own);
            } else {
                r.answer(Some(retry.clone()));
            }
        }
        return false;
    }
    let failed = db.commit(txn).err();
    let committed = failed.is_none();
    for r in ran {
        r.answer(failed.clone());
    }
    committed
}
