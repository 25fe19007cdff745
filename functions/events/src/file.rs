//! Events appended to a file, one JSON object per line, made durable (fsync) before `publish` returns.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use dps_core::events::{Event, EventSink};
use dps_core::{Error, Result};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// A JSONL file that events are appended to (created if missing; existing lines are kept).
pub struct JsonlFile {
    path: PathBuf,
    file: Arc<Mutex<tokio::fs::File>>,
}

impl JsonlFile {
    /// Open `path` for appending.
    pub async fn open(path: &Path) -> std::io::Result<Self> {
        let file = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await?;
        Ok(Self { path: path.to_path_buf(), file: Arc::new(Mutex::new(file)) })
    }
}

#[async_trait]
impl EventSink for JsonlFile {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        let mut lines = Vec::with_capacity(events.len() * 512);
        for event in events {
            serde_json::to_writer(&mut lines, event).map_err(|e| Error::internal(e.to_string()))?;
            lines.push(b'\n');
        }
        let failed = |e: std::io::Error| Error::Unavailable(format!("events file {}: {e}", self.path.display()));
        let mut file = self.file.lock().await;
        let before = file.metadata().await.map_err(failed)?.len();
        if let Err(err) = file.write_all(&lines).await {
            // No half line stays for the next batch to be appended to.
            let _ = file.set_len(before).await;
            return Err(failed(err));
        }
        file.sync_data().await.map_err(failed)
    }
}
