//! MQTT front door of the device API: Azure DPS's MQTT 3.1.1 protocol (`$dps/registrations/...` topics) for the
//! device SDKs that provision over nothing else.
//!
//! Each PUBLISH is translated into the HTTPS API's request (the register PUT or the operation status GET, with
//! the CONNECT password as `Authorization`) and answered by the same device router that serves HTTPS, so both
//! doors give the same answers from the same code path. It is not a broker: every answer goes to the connection
//! that asked, and nothing is shared between connections. The packet layer is rumqttc's MQTT 3.1.1 codec. TLS,
//! connection limits and the accept loop belong to the server that hands connections in (the `dps` binary).

mod connection;
mod device;
mod exchange;
mod topic;

use std::time::Duration;

pub use connection::{Ended, serve};
pub use device::{Device, Refusal};
pub use topic::RESPONSE_PREFIX;

/// The bounds of an MQTT connection.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time from the start of the connection to its CONNECT.
    pub connect_timeout: Duration,
    /// Largest keep-alive honoured; a client asking for none (0) or more is held to this one.
    pub max_keep_alive: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Largest packet accepted (remaining length); a larger one closes the connection.
    pub max_packet_bytes: usize,
    /// Requests one connection may have in flight; one more is answered 429.
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            max_keep_alive: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(60),
            // Room for the HTTPS API's 96 KB body limit and a topic, so that a body past it gets the HTTPS 413.
            max_packet_bytes: 128 * 1024,
            max_in_flight: 8,
        }
    }
}
