//! The MQTT listener of `dps serve`: its flags, its TLS configuration, and the hand-over of an accepted,
//! handshaken connection to `dps-mqtt`. Accepting, the connection limits (shared with HTTPS), the TLS handshake
//! timeout and the shutdown grace are `serve.rs`'s, as for every listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::Args;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Flags of the MQTT listener (off unless `--mqtt-listen` is given).
#[derive(Debug, Clone, Args)]
pub struct MqttArgs {
    /// Serve the device API over MQTT 3.1.1 + TLS on this address too (the Azure SDKs connect to port 8883).
    #[arg(long, env = "DPS_MQTT_LISTEN")]
    pub mqtt_listen: Option<SocketAddr>,
    /// Seconds an MQTT client may take, after the TLS handshake, to send its CONNECT.
    #[arg(long, env = "DPS_MQTT_CONNECT_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub mqtt_connect_timeout: u64,
    /// Largest MQTT keep-alive honoured, in seconds; a client asking for none (0) or more is held to it (closed
    /// after 1.5 times it without a packet).
    #[arg(long, env = "DPS_MQTT_MAX_KEEP_ALIVE", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=65535))]
    pub mqtt_max_keep_alive: u64,
    /// Seconds an MQTT connection may stay open with no request in flight.
    #[arg(long, env = "DPS_MQTT_IDLE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub mqtt_idle_timeout: u64,
    /// Largest MQTT packet accepted, in bytes; a larger one closes the connection.
    #[arg(long, env = "DPS_MQTT_MAX_PACKET_SIZE", default_value_t = 128 * 1024, value_parser = clap::value_parser!(u64).range(1024..=268_435_455))]
    pub mqtt_max_packet_size: u64,
    /// Requests one MQTT connection may have in flight; one more is answered 429.
    #[arg(long, env = "DPS_MQTT_MAX_IN_FLIGHT", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub mqtt_max_in_flight: u64,
}

impl MqttArgs {
    /// The per-connection bounds.
    pub fn limits(&self) -> dps_mqtt::Limits {
        dps_mqtt::Limits {
            connect_timeout: Duration::from_secs(self.mqtt_connect_timeout),
            max_keep_alive: Duration::from_secs(self.mqtt_max_keep_alive),
            idle_timeout: Duration::from_secs(self.mqtt_idle_timeout),
            max_packet_bytes: self.mqtt_max_packet_size as usize,
            max_in_flight: self.mqtt_max_in_flight as usize,
        }
    }
}

/// The HTTPS listeners' TLS configuration (certificate, versions, client authentication) without their ALPN
/// list: MQTT clients offer no protocol or one of their own, and rustls refuses a handshake whose offer shares
/// nothing with the server's list.
pub fn tls_config(https: &Arc<ServerConfig>) -> Arc<ServerConfig> {
    let mut config = ServerConfig::clone(https);
    config.alpn_protocols.clear();
    Arc::new(config)
}

/// Serve one handshaken MQTT connection until it ends or `stop` resolves.
pub async fn serve(
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    router: Router,
    limits: &dps_mqtt::Limits,
    stop: impl std::future::Future<Output = ()>,
) {
    // What each of the connection's requests carries, as the HTTPS listener puts it on every request: the client
    // address, and the TLS client certificate chain if the device sent one (a CONNECT without a password then
    // reaches the device API as an HTTPS request with a certificate and no Authorization does: X.509).
    let mut extensions = http::Extensions::new();
    extensions.insert(dps_api::ClientAddress(peer.ip().to_canonical()));
    if let Some(chain) = stream.get_ref().1.peer_certificates() {
        let der = chain.iter().map(|c| c.as_ref().to_vec()).collect();
        extensions.insert(dps_api::ClientCertificates::Der(Arc::new(der)));
    }
    let ended = dps_mqtt::serve(stream, router, extensions, limits, stop).await;
    tracing::debug!(%peer, ended = ?ended, "mqtt connection closed");
}
