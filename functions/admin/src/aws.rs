//! The store and the service, built once per process (cold start) from the caller's AWS credentials chain
//! (environment variables on Lambda; profiles, SSO or a credential process for operators).

use std::sync::Arc;

use dps_core::Dps;

use crate::FunctionConfig;

/// The provisioning service over the deployment's table, as a Lambda function runs it. The SDK client (rustls
/// on ring, the store's retry and timeout settings) is created here and reused by every invocation.
pub async fn dps(config: &FunctionConfig) -> Dps {
    let store = config.dynamo.connect().await;
    Dps::new(Arc::new(store), config.settings())
}
