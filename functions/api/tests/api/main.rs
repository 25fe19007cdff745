//! HTTP tests through the routers (`oneshot`) on a real embedded store.

mod common;
mod config;
mod device;
mod errors;
mod host;
mod openapi;
mod policies;
mod service;
mod tpm;
