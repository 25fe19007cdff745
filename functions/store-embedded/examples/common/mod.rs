//! What the store examples share.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// CPU time (user + system) of this process so far, from /proc/self/stat (10 ms ticks).
pub fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(14) + ticks(15)) * 10)
}

/// What a measured phase took: CPU and wall time, operations.
#[derive(Default, Clone, Copy)]
pub struct Cost {
    pub cpu: Duration,
    pub wall: Duration,
    pub ops: usize,
}

impl Cost {
    /// Process CPU per operation in µs, and operations per second.
    pub fn per_op(&self) -> (f64, f64) {
        let us = self.cpu.as_secs_f64() * 1e6 / self.ops.max(1) as f64;
        (us, self.ops as f64 / self.wall.as_secs_f64().max(1e-9))
    }
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        self.cpu += other.cpu;
        self.wall += other.wall;
        self.ops += other.ops;
    }
}

/// Run `work(i)` for `i` in `0..n` with `concurrency` callers.
pub async fn measure<F, Fut>(n: usize, concurrency: usize, work: F) -> Cost
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    let (cpu, wall) = (process_cpu(), Instant::now());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (work, next) = (work.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                work(i).await;
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("a measured task failed");
    }
    Cost { cpu: process_cpu() - cpu, wall: wall.elapsed(), ops: n }
}
