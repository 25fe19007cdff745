//! Lambda function for the device endpoint: `PUT /{idScope}/registrations/{id}/register` and the operation
//! status poll, behind a function URL. Everything a request needs is built once, at cold start; the router is
//! the same one the single-machine server runs.

fn main() -> Result<(), dps_lambda::Error> {
    dps_lambda::run(dps_lambda::Function::Device, dps_api::device_router)
}
