//! Command line and environment: the whole configuration of the binary, read once at start.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Device Provisioning Service (Azure DPS wire protocol), single-machine edition.
///
/// Without a subcommand, `dps` serves (same as `dps serve`).
#[derive(Debug, Parser)]
#[command(name = "dps", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Directory holding the embedded database and the generated TLS files.
    #[arg(long, env = "DPS_DATA_DIR", default_value = ".dps-data", global = true)]
    pub data_dir: PathBuf,
    /// Log format on stderr.
    #[arg(long, env = "DPS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
    /// Service host name of the `default` instance when a command creates it (first run).
    #[arg(long, env = "DPS_SERVICE_HOST_NAME", default_value = "localhost", global = true)]
    pub service_host_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable, one line per event.
    Pretty,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the device API and the service API over HTTPS (the default command).
    Serve(Box<ServeArgs>),
    /// Manage provisioning service instances (works on the data dir; the server must be stopped).
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Print a SharedAccessSignature Authorization header value.
    #[command(subcommand)]
    Token(TokenCommand),
    #[command(flatten)]
    Remote(Box<crate::remote::RemoteCommand>),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address for HTTPS: both APIs, or only the device API when --service-listen is given.
    #[arg(long, env = "DPS_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Serve the service API on this separate address.
    #[arg(long, env = "DPS_SERVICE_LISTEN")]
    pub service_listen: Option<SocketAddr>,
    /// Server certificate chain (PEM). Without it, a local CA and server certificate are generated.
    #[arg(long, env = "DPS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, env = "DPS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Extra DNS names or IP addresses for the generated server certificate (comma-separated).
    #[arg(long, env = "DPS_TLS_SAN", value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// Region this server serves from, for the geoLatency allocation policy (e.g. `eu-west-1`).
    #[arg(long, env = "DPS_REGION")]
    pub region: Option<String>,
    /// Seconds instance configuration and enrollment groups may be served from memory.
    #[arg(long, env = "DPS_CACHE_TTL", default_value_t = 5)]
    pub cache_ttl: u64,
    /// Seconds ahead a SAS token's expiry may be (device and service tokens); tokens beyond it get 401.
    #[arg(long, env = "DPS_MAX_TOKEN_LIFETIME", default_value_t = 30 * 24 * 3600)]
    pub max_token_lifetime: u64,
    /// Most enrollment groups one registration is checked against (bounds an unauthenticated request's cost).
    #[arg(long, env = "DPS_MAX_GROUPS_TRIED", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_groups_tried: u32,
    /// Most enrollment groups an instance may have.
    #[arg(long, env = "DPS_MAX_GROUPS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_groups: u32,
    /// Failed device attestations per second one client address may cause (bursts of 10x); more get 429.
    #[arg(long, env = "DPS_FAILED_ATTESTATIONS_PER_ADDRESS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub failed_attestations_per_address: u32,
    /// Failed device attestations per second one ID scope may see (bursts of 5x); more get 429.
    #[arg(long, env = "DPS_FAILED_ATTESTATIONS_PER_SCOPE", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub failed_attestations_per_scope: u32,
    /// Seconds the key a TPM challenge issues stays usable (the device's signed register and status lookups).
    #[arg(long, env = "DPS_TPM_CHALLENGE_TTL", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub tpm_challenge_ttl: u64,
    /// Seconds a request may take before it is answered with 503.
    #[arg(long, env = "DPS_REQUEST_TIMEOUT", default_value_t = 30)]
    pub request_timeout: u64,
    /// Most simultaneous connections; further clients wait in the listen backlog.
    #[arg(long, env = "DPS_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Most simultaneous connections from one client IP address; more are closed at once.
    #[arg(long, env = "DPS_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_address: u32,
    /// Seconds a client may take to complete the TLS handshake.
    #[arg(long, env = "DPS_TLS_HANDSHAKE_TIMEOUT", default_value_t = 10, value_parser = seconds())]
    pub tls_handshake_timeout: u64,
    /// TLS 1.3 session tickets sent after each full handshake, so that a device which comes back can resume
    /// instead of paying a full handshake. Tickets are stateless (encrypted under a key the server rotates every
    /// 6 hours, keeping the previous one 6 more: a ticket resumes for 6 to 12 hours), so resumption works
    /// whatever the fleet's size; 0 sends none.
    #[arg(long, env = "DPS_TLS_TICKETS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=4))]
    pub tls_tickets: u8,
    /// Seconds after the TLS handshake within which the client must send its first byte.
    #[arg(long, env = "DPS_FIRST_BYTE_TIMEOUT", default_value_t = 10, value_parser = seconds())]
    pub first_byte_timeout: u64,
    /// Seconds a connection may stay open with no request in flight (HTTP/1.1 keep-alive, HTTP/2 with no open
    /// stream, a request head still arriving, an answer the client does not read); then it is closed (HTTP/2:
    /// GOAWAY).
    #[arg(long, env = "DPS_IDLE_TIMEOUT", default_value_t = 10, value_parser = seconds())]
    pub idle_timeout: u64,
    /// Seconds a request body may go without sending data before the request is answered with 408.
    #[arg(long, env = "DPS_BODY_READ_TIMEOUT", default_value_t = 10, value_parser = seconds())]
    pub body_read_timeout: u64,
    /// Seconds between HTTP/2 keep-alive pings on a connection that has sent nothing.
    #[arg(long, env = "DPS_HTTP2_KEEPALIVE_INTERVAL", default_value_t = 20, value_parser = seconds())]
    pub http2_keepalive_interval: u64,
    /// Seconds to wait for the answer to an HTTP/2 keep-alive ping before closing the connection.
    #[arg(long, env = "DPS_HTTP2_KEEPALIVE_TIMEOUT", default_value_t = 10, value_parser = seconds())]
    pub http2_keepalive_timeout: u64,
    /// Seconds to let in-flight requests finish after SIGINT/SIGTERM.
    #[arg(long, env = "DPS_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,
    /// Print the startup information as one JSON line on stdout instead of the banner (for scripts).
    #[arg(long)]
    pub print_json: bool,
    /// Let instances that opt in (`allowPrivateWebhookTargets`) call webhooks on private, loopback and link-local
    /// addresses (and over plain http). Off by default: without it no instance can reach this machine's network.
    #[arg(long, env = "DPS_ALLOW_PRIVATE_WEBHOOK_TARGETS")]
    pub allow_private_webhook_targets: bool,
    /// Let linked hubs use the AWS IoT Core connector (`connector.kind: awsIotCore`), with the AWS credentials and
    /// region of the environment. Off by default: without it such hubs cannot be linked (docs/hubs.md).
    #[arg(long, env = "DPS_AWS_HUBS")]
    pub aws_hubs: bool,
    /// Let HTTP registry hubs (`connector.kind: httpRegistry`) name private, loopback and link-local URLs, and AWS
    /// IoT Core hubs their own `endpointUrl` / `dataEndpointUrl` (an emulator). Off by default: a hub is linked by
    /// an instance's owner, and without it no instance can make the server call this machine's network or send
    /// requests signed with its AWS credentials elsewhere (Azure IoT Hub host names are always public).
    #[arg(long, env = "DPS_ALLOW_PRIVATE_HUB_TARGETS")]
    pub allow_private_hub_targets: bool,
    /// Send Azure IoT Hub registry calls to this base URL instead of https://{hub host name} (tokens are still
    /// signed for the hub): for tests against a local stand-in registry.
    #[arg(long, env = "DPS_AZURE_HUB_ENDPOINT", hide = true)]
    pub azure_hub_endpoint: Option<String>,
    #[command(flatten)]
    pub mqtt: Box<crate::mqtt::MqttArgs>,
    #[command(flatten)]
    pub events: Box<crate::events::EventsArgs>,
    /// Serve Prometheus metrics at http://ADDR/metrics (plain HTTP, no credential: bind loopback or a private
    /// network). Off by default; docs/metrics.md lists the series.
    #[arg(long, env = "DPS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// A whole number of seconds, at least 1 (a zero timeout would close every connection at once).
fn seconds() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..)
}

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Create an instance with a generated ID scope and an owner policy.
    Create {
        /// Unique instance name.
        #[arg(long)]
        name: String,
        /// Service host name that routes service API calls to it.
        #[arg(long)]
        host: String,
    },
    /// List instances: ID scope, name, service host name.
    List,
    /// Show one instance and its owner connection string.
    Show {
        /// Instance name.
        name: String,
        /// Print JSON.
        #[arg(long, conflicts_with = "env")]
        json: bool,
        /// Print shell variable assignments (`eval "$(dps instance show default --env)"`).
        #[arg(long)]
        env: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// A service API token, from a connection string or from an instance in the data dir.
    Service {
        /// `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...` (works while the server runs).
        #[arg(long, env = "DPS_CONNECTION_STRING", hide_env_values = true)]
        connection_string: Option<String>,
        /// Instance name, read from the data dir (only while the server is stopped).
        #[arg(long, conflicts_with = "connection_string")]
        instance: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
    /// A device API token for symmetric-key attestation.
    Device {
        /// ID scope.
        #[arg(long, env = "DPS_ID_SCOPE")]
        scope: String,
        /// Registration ID.
        #[arg(long)]
        registration_id: String,
        /// The device's key (base64).
        #[arg(long, required_unless_present = "group_key", conflicts_with = "group_key")]
        key: Option<String>,
        /// An enrollment group's key (base64): the device key is derived from it.
        #[arg(long)]
        group_key: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_subcommand_means_serve_with_defaults() {
        let cli = Cli::try_parse_from(["dps"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(cli.global.data_dir, PathBuf::from(".dps-data"));
        let s = &cli.serve;
        let limits = (s.tls_handshake_timeout, s.first_byte_timeout, s.idle_timeout, s.body_read_timeout);
        assert_eq!(limits, (10, 10, 10, 10), "the defaults the README documents");
        assert_eq!(
            (s.http2_keepalive_interval, s.http2_keepalive_timeout, s.max_connections_per_address),
            (20, 10, 64)
        );
    }

    #[test]
    fn mqtt_is_off_unless_asked_for() {
        let cli = Cli::try_parse_from(["dps"]).unwrap();
        assert!(cli.serve.mqtt.mqtt_listen.is_none());
        let cli = Cli::try_parse_from(["dps", "serve", "--mqtt-listen", "127.0.0.1:8883"]).unwrap();
        let Some(Command::Serve(args)) = cli.command else { panic!("serve") };
        assert_eq!(args.mqtt.mqtt_listen.unwrap().port(), 8883);
        assert_eq!(args.mqtt.limits().max_in_flight, 8);
        assert!(Cli::try_parse_from(["dps", "serve", "--mqtt-max-packet-size", "10"]).is_err());
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        assert!(Cli::try_parse_from(["dps", "serve", "--idle-timeout", "0"]).is_err());
        assert!(Cli::try_parse_from(["dps", "serve", "--max-connections-per-address", "0"]).is_err());
        assert!(Cli::try_parse_from(["dps", "serve", "--body-read-timeout", "1"]).is_ok());
    }

    #[test]
    fn global_options_follow_subcommands() {
        let cli = Cli::try_parse_from(["dps", "instance", "list", "--data-dir", "/tmp/x"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Instance(InstanceCommand::List))));
        assert_eq!(cli.global.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn tls_cert_needs_its_key() {
        assert!(Cli::try_parse_from(["dps", "serve", "--tls-cert", "a.pem"]).is_err());
    }

    #[test]
    fn device_token_needs_one_key() {
        assert!(Cli::try_parse_from(["dps", "token", "device", "--scope", "s", "--registration-id", "r"]).is_err());
        assert!(
            Cli::try_parse_from(["dps", "token", "device", "--scope", "s", "--registration-id", "r", "--key", "k"])
                .is_ok()
        );
    }
}
