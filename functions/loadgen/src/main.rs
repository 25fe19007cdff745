//! `dps-loadgen`: see the library's docs and `dps-loadgen --help`.

use clap::Parser;
use dps_loadgen::{Options, emit, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let report = run(&options).await?;
    emit(&options, &report)?;
    if !report.errors.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
