//! Creating the table (tests, local use). template.yaml declares the same table for AWS; docs/dynamodb.md
//! has the definition to copy.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use dps_core::{Error, Result};

use crate::errors;
use crate::layout::{GSI1, GSI1PK, GSI1SK, PK, SK, TTL};

/// Create the table with its GSI (on-demand capacity) and enable TTL on it; an existing table is left as is.
/// Waits until the table is active.
pub async fn create_table(client: &Client, table: &str) -> Result<()> {
    let build = |e: aws_sdk_dynamodb::error::BuildError| Error::internal(format!("table definition: {e}"));
    let string = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build)
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(build)
    };
    let index = GlobalSecondaryIndex::builder()
        .index_name(GSI1)
        .key_schema(key(GSI1PK, KeyType::Hash)?)
        .key_schema(key(GSI1SK, KeyType::Range)?)
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .map_err(build)?;
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string(PK)?)
        .attribute_definitions(string(SK)?)
        .attribute_definitions(string(GSI1PK)?)
        .attribute_definitions(string(GSI1SK)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(index)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(err) if matches!(err.as_service_error(), Some(CreateTableError::ResourceInUseException(_))) => {
            return Ok(());
        }
        Err(err) => return Err(errors::sdk("CreateTable", err)),
    }
    wait_active(client, table).await?;
    let ttl = TimeToLiveSpecification::builder().attribute_name(TTL).enabled(true).build().map_err(build)?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(ttl)
        .send()
        .await
        .map_err(|e| errors::sdk("UpdateTimeToLive", e))?;
    Ok(())
}

async fn wait_active(client: &Client, table: &str) -> Result<()> {
    for _ in 0..120 {
        let out =
            client.describe_table().table_name(table).send().await.map_err(|e| errors::sdk("DescribeTable", e))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(Error::Unavailable(format!("table {table} did not become active")))
}
