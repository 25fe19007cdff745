//! `dps`: the single-machine device provisioning server and its operator commands.
//!
//! Thin by design: read the configuration, open the embedded store, set up TLS, serve the routers of `dps-api`.
//! Everything the service does lives in `dps-core`; nothing here is a second implementation of it.

mod admin;
mod cli;
mod conn;
mod events;
mod hubs;
mod metrics;
mod mqtt;
mod remote;
mod serve;
mod store;
mod tls;

use clap::Parser;

/// mimalloc rather than glibc's malloc: the server allocates and frees many small buffers per request (HTTP,
/// TLS records, JSON), and glibc's allocator was about 14% of its CPU per registration (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crate::cli::{Cli, Command, LogFormat};

fn main() -> std::process::ExitCode {
    // Usage errors exit 1 (clap's own 2 is the client commands' "not found"; docs/cli.md lists the codes).
    let cli = Cli::try_parse().unwrap_or_else(|err| {
        let _ = err.print();
        std::process::exit(if err.use_stderr() { 1 } else { 0 });
    });
    init_tracing(cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("dps: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            None => serve::run(&cli.global, cli.serve).await,
            Some(Command::Serve(args)) => serve::run(&cli.global, *args).await,
            Some(Command::Instance(cmd)) => admin::instance(&cli.global, cmd).await,
            Some(Command::Token(cmd)) => admin::token(&cli.global, cmd).await,
            Some(Command::Remote(cmd)) => remote::run(&cli.global, *cmd).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => remote::report(&err),
    }
}

/// Logs go to stderr (stdout carries command output and the startup banner). `RUST_LOG` overrides the level; by
/// default `info`, with the storage engine's own housekeeping (fjall, lsm_tree: flushes, compactions) at `warn`.
fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,fjall=warn,lsm_tree=warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Pretty => builder.compact().init(),
    }
}
