//! Logging: one JSON object per line on stdout, which CloudWatch Logs indexes field by field.

use tracing_subscriber::EnvFilter;

/// Install the global JSON subscriber with `filter` (validated by [`crate::FunctionConfig`]).
pub fn init_json(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_target(true)
        .with_current_span(false)
        .flatten_event(true)
        // ANSI codes would end up in the log text.
        .with_ansi(false)
        .init();
}
