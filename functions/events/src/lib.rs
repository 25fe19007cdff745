//! Delivery of lifecycle events (dps-core's [`EventSink`] port) for the local server: appended to a JSONL file,
//! posted to a webhook, or both, behind [`Queue`], which answers the service at once and delivers in the
//! background in order. docs/events.md says what is guaranteed.

mod file;
mod queue;
mod webhook;

pub use dps_core::events::{Event, EventSink};
pub use file::JsonlFile;
pub use queue::{Queue, QueueStats};
pub use webhook::Webhook;
