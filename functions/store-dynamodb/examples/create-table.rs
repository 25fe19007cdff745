//! Create the table (with its index and TTL) where the configuration points, e.g. a local moto server:
//!
//! ```sh
//! DPS_TABLE_NAME=dps DPS_DYNAMODB_ENDPOINT=http://127.0.0.1:5000 AWS_REGION=us-east-1 \
//!   AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
//!   cargo run -p dps-store-dynamodb --example create-table
//! ```

use dps_store_dynamodb::{DynamoConfig, create_table};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match DynamoConfig::from_env(|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("create-table: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let store = config.connect().await;
    match create_table(store.client(), store.table_name()).await {
        Ok(()) => {
            println!("table {} is ready", store.table_name());
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("create-table: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
