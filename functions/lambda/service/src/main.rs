//! Lambda function for the service endpoint: enrollments, enrollment groups, registration records and the
//! instance configuration, behind a function URL. Callers authenticate with the instance's SAS keys, checked by
//! the router; everything a request needs is built once, at cold start.

fn main() -> Result<(), dps_lambda::Error> {
    dps_lambda::run(dps_lambda::Function::Service, dps_api::service_router)
}
