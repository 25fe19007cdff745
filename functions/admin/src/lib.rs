//! The AWS side of the device provisioning service, shared by the two Lambda functions and the `dps-admin`
//! operator tool: typed configuration read once from the environment, the AWS clients and the store built
//! from it, and JSON logging for CloudWatch.

pub mod aws;
pub mod config;
pub mod logging;

pub use config::{ConfigError, FunctionConfig};
