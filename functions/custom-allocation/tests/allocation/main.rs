//! Custom allocation tests: example policies, adversarial fixtures, upload validation, dry run, storage,
//! webhooks against a local server, and (ignored) measurements. One binary; fixtures under ../../../policies.

mod support;

mod measure;
mod registry;
#[cfg(feature = "s3")]
mod s3;
mod service;
mod wasm;
mod webhook;
