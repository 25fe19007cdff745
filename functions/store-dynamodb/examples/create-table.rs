//! Create the table (with its index and TTL) where the configuration points, e.g. a local moto server:
//!
//! ```sh
//! DPS_TABLE_NAME=dps DPS_DYNAMODB_ENDPOINT=http://127.0.0.1:5000 AWS_REGION=us-east-1 \
//!   AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
//!   cargo run -p dps-store-dynamodb --example create-table
//! ```

use dps_store_dynamodb::{DynamoConfig, create_table};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = DynamoConfig::from_env(|name| std::env::var(name).ok())?;
    let store = config.connect().await;
    create_table(store.client(), store.table_name()).await?;
    println!("table {} is ready", store.table_name());
    Ok(())
}
