//! Lifecycle events of `dps serve`: the flags, and the delivery queue built from them (dps-events). Off unless a
//! file or a webhook is named.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use dps_events::{EventSink, JsonlFile, Queue, Webhook};

/// Flags of event delivery (docs/events.md).
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Append lifecycle events to this file, one JSON object (CloudEvents 1.0) per line.
    #[arg(long, env = "DPS_EVENTS_FILE")]
    pub events_file: Option<PathBuf>,
    /// POST lifecycle events to this http(s) URL, one CloudEvent per request (retried 5 times with backoff).
    #[arg(long, env = "DPS_EVENTS_WEBHOOK", hide_env_values = true)]
    pub events_webhook: Option<String>,
    /// Most undelivered events held per destination; past it new events are dropped (and logged).
    #[arg(long, env = "DPS_EVENTS_QUEUE", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub events_queue: u64,
}

impl EventsArgs {
    /// The delivery queue to hand the service, or `None` when no destination is configured.
    pub async fn queue(&self) -> anyhow::Result<Option<Arc<Queue>>> {
        // A file takes many events per fsync; a webhook one per delivery, so its counts are exact.
        let mut sinks: Vec<(Arc<dyn EventSink>, usize)> = Vec::new();
        if let Some(path) = &self.events_file {
            let file =
                JsonlFile::open(path).await.with_context(|| format!("cannot open events file {}", path.display()))?;
            sinks.push((Arc::new(file), 100));
        }
        if let Some(url) = &self.events_webhook {
            sinks.push((Arc::new(Webhook::new(url).map_err(anyhow::Error::msg)?), 1));
        }
        if sinks.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Queue::start(sinks, self.events_queue as usize))))
    }
}

/// At shutdown, after the last request: deliver what is queued (within `grace`) and log the counts.
pub async fn drain(queue: Option<Arc<Queue>>, grace: Duration) {
    if let Some(queue) = queue {
        let stats = queue.close(grace).await;
        tracing::info!(delivered = stats.delivered, failed = stats.failed, dropped = stats.dropped, "events");
    }
}
