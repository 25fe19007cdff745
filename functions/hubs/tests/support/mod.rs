//! Shared by the AWS IoT Core connector tests: a moto server and an HTTP client that records every request.

pub mod moto;
pub mod record;
