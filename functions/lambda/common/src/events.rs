//! Lifecycle events sent to an Amazon EventBridge bus (`DPS_EVENT_BUS`, the template's `EventBus`): one
//! PutEvents call per change, made before the function answers (Lambda may freeze a process between requests,
//! so nothing is left to a background task). `Source` is `dps`, `DetailType` the event's `type`, `Detail` the
//! whole CloudEvent; rules match on them.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use dps_core::events::{Event, EventSink};
use dps_core::{Error, Result};

/// `Source` of every entry.
pub const SOURCE: &str = "dps";
/// Entries per PutEvents call (the API's limit).
const ENTRIES_PER_CALL: usize = 10;
/// Tries of the entries EventBridge answers as failed (throttled or internal): the first and one more.
const ATTEMPTS: usize = 2;
/// Bound of one PutEvents call: a slow bus must not hold the device's answer for long.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Puts events on one bus.
pub struct EventBridgeSink {
    client: Client,
    bus: String,
}

impl EventBridgeSink {
    /// A sink onto `bus` (a name or an ARN) through `client`.
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self { client, bus: bus.into() }
    }

    /// The function's sink, when `DPS_EVENT_BUS` is set: an EventBridge client from the function's shared SDK
    /// configuration, with `DPS_EVENTS_ENDPOINT` as its endpoint when set (an emulator).
    pub fn from_config(config: &crate::FunctionConfig, sdk: &aws_config::SdkConfig) -> Option<Self> {
        let bus = config.event_bus.clone()?;
        let mut builder = aws_sdk_eventbridge::config::Builder::from(sdk);
        builder.set_endpoint_url(config.events_endpoint.clone());
        Some(Self::new(Client::from_conf(builder.build()), bus))
    }

    fn entry(&self, event: &Event) -> Result<PutEventsRequestEntry> {
        let detail = serde_json::to_string(event).map_err(|e| Error::internal(e.to_string()))?;
        Ok(PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(event.event_type.name())
            .detail(detail)
            .time(aws_sdk_eventbridge::primitives::DateTime::from_secs(event.time.unix_timestamp()))
            .build())
    }

    async fn put(&self, mut entries: Vec<PutEventsRequestEntry>) -> Result<()> {
        for attempt in 1..=ATTEMPTS {
            let call = self.client.put_events().set_entries(Some(entries.clone())).send();
            let answer = tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .map_err(|_| Error::Unavailable("EventBridge PutEvents timed out".into()))?
                .map_err(|e| Error::Unavailable(format!("EventBridge PutEvents: {}", DisplayErrorContext(&e))))?;
            if answer.failed_entry_count() == 0 {
                return Ok(());
            }
            // Results are in entry order; an entry with an error code was not put.
            let results = answer.entries();
            let failed: Vec<PutEventsRequestEntry> =
                entries.iter().zip(results).filter(|(_, r)| r.error_code().is_some()).map(|(e, _)| e.clone()).collect();
            if attempt == ATTEMPTS {
                let code = results.iter().find_map(|r| r.error_code()).unwrap_or("unknown");
                return Err(Error::Unavailable(format!("EventBridge refused {} event(s): {code}", failed.len())));
            }
            entries = failed;
        }
        Ok(())
    }
}

#[async_trait]
impl EventSink for EventBridgeSink {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        for chunk in events.chunks(ENTRIES_PER_CALL) {
            let entries = chunk.iter().map(|e| self.entry(e)).collect::<Result<Vec<_>>>()?;
            self.put(entries).await?;
        }
        Ok(())
    }
}
