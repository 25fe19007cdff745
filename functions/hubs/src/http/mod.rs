//! The HTTP registry contract (docs/hub-connectors.md).
