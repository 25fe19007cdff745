//! What the provisioning service's two Lambda functions share: typed configuration read once from the
//! environment, the AWS clients and the service built from it at cold start, JSON logging for CloudWatch, and
//! [`run`], the whole life of a function process.

pub mod aws;
pub mod certs;
pub mod client_address;
pub mod config;
pub mod emf;
pub mod events;
pub mod logging;
pub mod secrets;

use std::time::{Duration, Instant};

use dps_core::Dps;

pub use config::{ConfigError, Function, FunctionConfig};
pub use lambda_http::Error;

/// Requests not answered by then get the API's 503 (error table, tracking ID, `Retry-After`): one second under
/// the functions' `Timeout` of 15 s in template.yaml, so a slow dependency is answered, not killed.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(14);

/// Run a Lambda function to the end of its process: read the configuration (a bad variable fails the cold start
/// with a message naming it), install JSON logging, build the service once, hand it to `router`, log `ready`
/// with `init_micros` (start to just before the runtime loop; `tests/lambda/coldstart.py` reads it), then serve
/// the Lambda runtime API's events through the router until Lambda stops the process.
/// Every request is served under [`REQUEST_DEADLINE`].
pub fn run(function: Function, router: impl FnOnce(Dps) -> axum::Router) -> Result<(), Error> {
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let config = FunctionConfig::from_env(function)?;
        logging::init_json(&config.log_filter);
        let mut dps = aws::dps(&config).await?;
        if let Some(namespace) = &config.metrics_namespace {
            dps = dps.with_metrics(std::sync::Arc::new(emf::Emf::new(namespace.clone(), std::io::stdout())));
        }
        let metrics = dps.metrics().clone();
        let router = certs::with_client_certificates(router(dps), config.client_certificates);
        let router = client_address::with_client_addresses(router);
        let router = dps_api::with_deadline(router, REQUEST_DEADLINE);
        let router = dps_api::with_request_metrics(router, Some(function.front_door()), metrics);
        tracing::info!(
            function = function.name(),
            table = %config.dynamo.table_name,
            cache_ttl_secs = config.cache_ttl.as_secs(),
            client_certificates = ?config.client_certificates,
            init_micros = started.elapsed().as_micros() as u64,
            "ready"
        );
        lambda_http::run(router).await
    })
}
