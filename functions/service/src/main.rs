//! Lambda function for the service endpoint: enrollments, enrollment groups, registration records and the
//! instance configuration, behind a function URL. Callers authenticate with the instance's SAS keys, checked by
//! the router; everything a request needs is built once, at cold start.

use std::time::Instant;

use dps_admin::{FunctionConfig, aws, logging};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let started = Instant::now();
    let config = FunctionConfig::from_env()?;
    logging::init_json(&config.log_filter);
    let dps = aws::dps(&config).await?;
    let router = dps_api::service_router(dps);
    tracing::info!(
        function = "service",
        table = %config.dynamo.table_name,
        cache_ttl_secs = config.cache_ttl.as_secs(),
        init_micros = started.elapsed().as_micros() as u64,
        "ready"
    );
    lambda_http::run(router).await
}
