//! Lambda function for the device endpoint: `PUT /{idScope}/registrations/{id}/register` and the operation
//! status poll, behind a function URL. Everything a request needs is built once, at cold start; the router is
//! the same one the single-machine server runs.

use std::time::Instant;

use dps_admin::{FunctionConfig, aws, logging};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let started = Instant::now();
    let config = FunctionConfig::from_env()?;
    logging::init_json(&config.log_filter);
    let dps = aws::dps(&config).await?;
    let router = dps_api::device_router(dps);
    tracing::info!(
        function = "device",
        table = %config.dynamo.table_name,
        cache_ttl_secs = config.cache_ttl.as_secs(),
        init_micros = started.elapsed().as_micros() as u64,
        "ready"
    );
    lambda_http::run(router).await
}
