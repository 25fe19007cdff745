//! DynamoDB adapter of the storage port: one table, per-entity partition keys, one overloaded GSI for
//! listings, sharded counters, conditional writes and transactions. docs/dynamodb.md describes the layout.
//!
//! Each entity's module (`instances`, `enrollments`, `devices`, `counters`, `tpm_challenges`) adds its methods to
//! [`DynamoStore`]; the `Store` implementation below delegates to them, and `listing` holds the one paged
//! listing (a Query per index shard per page) that every listing shares.

pub mod config;
mod counters;
mod devices;
mod enrollments;
mod errors;
mod instances;
mod item;
pub mod layout;
mod listing;
mod migrate;
mod table;
mod tpm_challenges;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};
use dps_core::model::{
    AnyEnrollment, EnrollmentKind, Instance, OperationCount, OperationKind, RegistrationRecord, TpmChallenge,
};
use dps_core::store::{DeviceContext, Page, PageRequest, Precondition, Store, Write};
use dps_core::{Error, Result};

pub use config::{ConfigError, DynamoConfig, StaticCredentials, http_client, retry_config, timeout_config};
pub use errors::THROTTLED_RETRY_AFTER_SECS;
pub use migrate::Migration;
pub use table::create_table;

use crate::errors::Cancellation;
use crate::item::{Condition, Item, condition_failed, delete_condition, put_condition};
use crate::layout::ItemKey;

/// Attempts at a transaction cancelled only by throttling or a concurrent transaction (the SDK does not
/// retry those cancellations itself).
const TRANSACTION_ATTEMPTS: u32 = 3;

/// The storage port over one DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    counter_retention: Option<Duration>,
    access_keys: bool,
}

impl DynamoStore {
    /// A store over `table`, reached with `client` (its retry and timeout settings apply to every call).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: Arc::from(table.into()), counter_retention: None, access_keys: true }
    }

    /// Let daily operation counters expire (DynamoDB TTL) this long after their day; by default they are kept.
    pub fn with_counter_retention(mut self, retention: Option<Duration>) -> Self {
        self.counter_retention = retention;
        self
    }

    /// Read instances without the service API's access keys, as a role that may not read that attribute must
    /// (the device function's; template.yaml). Such a store refuses to write instances: it would drop the keys.
    pub fn without_access_keys(mut self) -> Self {
        self.access_keys = false;
        self
    }

    /// The table this store uses.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// The SDK client this store uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Strongly consistent read of one item.
    async fn get_item(&self, key: &ItemKey) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(item::key_of(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| errors::sdk("GetItem", e))?;
        Ok(out.item)
    }

    /// Strongly consistent read of some attributes of one item.
    async fn get_attributes(&self, key: &ItemKey, attributes: &[&str]) -> Result<Option<Item>> {
        let mut request =
            self.client.get_item().table_name(&*self.table).set_key(Some(item::key_of(key))).consistent_read(true);
        let mut projection = Vec::new();
        for (i, name) in attributes.iter().enumerate() {
            projection.push(format!("#a{i}"));
            request = request.expression_attribute_names(format!("#a{i}"), *name);
        }
        let out =
            request.projection_expression(projection.join(", ")).send().await.map_err(|e| errors::sdk("GetItem", e))?;
        Ok(out.item)
    }

    /// Put a whole item under `precondition`: one PutItem, or with a meter one TransactWriteItems of the item
    /// and a counter shard, so that the operation is counted if and only if the item is written.
    async fn put_item(&self, item: Item, precondition: &Precondition, what: &str, meter: Meter<'_>) -> Result<()> {
        let condition = put_condition(precondition);
        if let Some((scope, count)) = meter.filter(|(_, m)| m.count > 0) {
            return self.counted(self.transact_put(item, condition)?, scope, count, precondition, what).await;
        }
        match self.put_if(item, condition).await? {
            Ok(()) => Ok(()),
            Err(old) => Err(condition_failed(precondition, what, old.is_some())),
        }
    }

    /// One PutItem under `condition`. A failed condition is the inner `Err`, with the item it found (ALL_OLD), if
    /// any; the caller decides what that item means.
    async fn put_if(&self, item: Item, condition: Option<Condition>) -> Result<Result<(), Option<Item>>> {
        let mut request = self.client.put_item().table_name(&*self.table).set_item(Some(item));
        if let Some(condition) = condition {
            request = request
                .condition_expression(condition.expression)
                .set_expression_attribute_names(Some(condition.names))
                .set_expression_attribute_values(condition.values)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        }
        match request.send().await {
            Ok(_) => Ok(Ok(())),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => Ok(Err(failed.item().cloned())),
                _ => Err(errors::sdk("PutItem", err)),
            },
        }
    }

    /// Delete an item that must exist (with the etag of `precondition`, if any); with a meter, in one
    /// transaction with a counter shard.
    async fn delete_item(
        &self,
        key: &ItemKey,
        precondition: &Precondition,
        what: &str,
        meter: Meter<'_>,
    ) -> Result<()> {
        if *precondition == Precondition::NotExists {
            let exists = self.get_item(key).await?.is_some();
            return Err(condition_failed(precondition, what, exists));
        }
        let condition = delete_condition(precondition);
        if let Some((scope, count)) = meter.filter(|(_, m)| m.count > 0) {
            let write = self.transact_delete(key, condition)?;
            return self.counted(write, scope, count, precondition, what).await;
        }
        let result = self
            .client
            .delete_item()
            .table_name(&*self.table)
            .set_key(Some(item::key_of(key)))
            .condition_expression(condition.expression)
            .set_expression_attribute_names(Some(condition.names))
            .set_expression_attribute_values(condition.values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(failed)) => {
                    Err(condition_failed(precondition, what, failed.item().is_some()))
                }
                _ => Err(errors::sdk("DeleteItem", err)),
            },
        }
    }

    /// A Put of a transaction, under `condition` (the old item comes back if it fails).
    fn transact_put(&self, item: Item, condition: Option<Condition>) -> Result<TransactWriteItem> {
        let mut put = Put::builder().table_name(&*self.table).set_item(Some(item));
        if let Some(condition) = condition {
            put = put
                .condition_expression(condition.expression)
                .set_expression_attribute_names(Some(condition.names))
                .set_expression_attribute_values(condition.values)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        }
        let put = put.build().map_err(|e| Error::internal(format!("building a transaction item: {e}")))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A Delete of a transaction, under `condition` (the old item comes back if it fails).
    fn transact_delete(&self, key: &ItemKey, condition: Condition) -> Result<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(&*self.table)
            .set_key(Some(item::key_of(key)))
            .condition_expression(condition.expression)
            .set_expression_attribute_names(Some(condition.names))
            .set_expression_attribute_values(condition.values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| Error::internal(format!("building a transaction item: {e}")))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// One conditional write and the increment of a counter shard, in one transaction.
    async fn counted(
        &self,
        write: TransactWriteItem,
        scope: &str,
        meter: &OperationCount,
        precondition: &Precondition,
        what: &str,
    ) -> Result<()> {
        let increment = self.counter_increment(scope, &meter.date, meter.kind, meter.count);
        let update = Update::builder()
            .table_name(&*self.table)
            .set_key(Some(item::key_of(&increment.key)))
            .update_expression(increment.expression)
            .set_expression_attribute_names(Some(increment.names))
            .set_expression_attribute_values(Some(increment.values))
            .build()
            .map_err(|e| Error::internal(format!("building the counter update: {e}")))?;
        match self.transact(vec![write, TransactWriteItem::builder().update(update).build()]).await {
            Ok(()) => Ok(()),
            Err(TransactFailure::Condition { old, .. }) => Err(condition_failed(precondition, what, old.is_some())),
            Err(TransactFailure::Error(err)) => Err(err),
        }
    }

    /// Run a transaction. A condition failure comes back as the index of the failed item and that item's old
    /// state (ALL_OLD); cancellations by throttling or by a concurrent transaction are retried with backoff.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), TransactFailure> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
            let err = match result {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            let cancelled = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => c,
                _ => return Err(TransactFailure::Error(errors::sdk("TransactWriteItems", err))),
            };
            let reasons = cancelled.cancellation_reasons();
            let retry = match errors::classify(reasons) {
                Cancellation::Condition(index) => {
                    let old = reasons[index].item().cloned();
                    return Err(TransactFailure::Condition { index, old });
                }
                Cancellation::Throttled => errors::throttled(),
                Cancellation::Conflict => Error::Conflict("A concurrent change won; retry".into()),
                Cancellation::Other => {
                    let codes: Vec<_> = reasons.iter().map(|r| r.code().unwrap_or("None")).collect();
                    tracing::error!(?codes, "DynamoDB transaction cancelled");
                    return Err(TransactFailure::Error(Error::internal(format!("transaction cancelled: {codes:?}"))));
                }
            };
            if attempt >= TRANSACTION_ATTEMPTS {
                tracing::warn!(attempt, error = %retry, "DynamoDB transaction still cancelled after retries");
                return Err(TransactFailure::Error(retry));
            }
            back_off(attempt).await;
        }
    }
}

/// Wait before retry `attempt` (1, 2, …) of a call DynamoDB cancelled or left partly undone: 25 ms doubled per
/// attempt, half of it jittered.
async fn back_off(attempt: u32) {
    let backoff = 25u64 << attempt;
    tokio::time::sleep(Duration::from_millis(backoff / 2 + rand::random_range(0..=backoff / 2))).await;
}

/// The operation a write counts, with its scope (None: the write counts nothing).
type Meter<'a> = Option<(&'a str, &'a OperationCount)>;

/// Why a transaction did not commit.
#[derive(Debug)]
enum TransactFailure {
    /// The item at `index` failed its condition; `old` is its previous state (None: it did not exist).
    Condition { index: usize, old: Option<Item> },
    /// Anything else, already mapped.
    Error(Error),
}

#[async_trait]
impl Store for DynamoStore {
    async fn create_instance(&self, instance: Instance) -> Result<Instance> {
        self.insert_instance(instance).await
    }

    async fn update_instance(&self, instance: Instance, precondition: Precondition) -> Result<Instance> {
        self.save_instance(instance, precondition).await
    }

    async fn instance_by_scope(&self, id_scope: &str) -> Result<Option<Instance>> {
        self.instance_of_scope(id_scope).await
    }

    async fn instance_by_host(&self, host_name: &str) -> Result<Option<Instance>> {
        self.instance_of_host(host_name).await
    }

    async fn list_instances(&self) -> Result<Vec<Instance>> {
        self.instance_list().await
    }

    async fn get_enrollment(&self, scope: &str, kind: EnrollmentKind, id: &str) -> Result<Option<AnyEnrollment>> {
        self.enrollment(scope, kind, id).await
    }

    async fn put_enrollment(&self, scope: &str, enrollment: AnyEnrollment, write: Write) -> Result<AnyEnrollment> {
        self.save_enrollment(scope, enrollment, write).await
    }

    async fn delete_enrollment(&self, scope: &str, kind: EnrollmentKind, id: &str, write: Write) -> Result<()> {
        self.remove_enrollment(scope, kind, id, write).await
    }

    async fn query_enrollments(
        &self,
        scope: &str,
        kind: EnrollmentKind,
        page: PageRequest,
    ) -> Result<Page<AnyEnrollment>> {
        self.enrollment_page(scope, kind, page).await
    }

    async fn device_context(&self, scope: &str, registration_id: &str) -> Result<DeviceContext> {
        self.context_of_device(scope, registration_id).await
    }

    async fn get_registration(&self, scope: &str, registration_id: &str) -> Result<Option<RegistrationRecord>> {
        self.registration(scope, registration_id).await
    }

    async fn put_registration(
        &self,
        scope: &str,
        record: RegistrationRecord,
        write: Write,
    ) -> Result<RegistrationRecord> {
        self.save_registration(scope, record, write).await
    }

    async fn delete_registration(&self, scope: &str, registration_id: &str, write: Write) -> Result<()> {
        self.remove_registration(scope, registration_id, write).await
    }

    async fn query_registrations(
        &self,
        scope: &str,
        group_id: &str,
        page: PageRequest,
    ) -> Result<Page<RegistrationRecord>> {
        self.registration_page(scope, group_id, page).await
    }

    async fn add_operations(&self, scope: &str, date: &str, kind: OperationKind, count: u64) -> Result<()> {
        self.save_operations(scope, date, kind, count).await
    }

    async fn operations(&self, scope: &str, from: &str, to: &str) -> Result<Vec<OperationCount>> {
        self.operation_counts(scope, from, to).await
    }

    async fn get_tpm_challenge(&self, scope: &str, registration_id: &str) -> Result<Option<TpmChallenge>> {
        self.tpm_challenge(scope, registration_id).await
    }

    async fn put_tpm_challenge(
        &self,
        scope: &str,
        challenge: TpmChallenge,
        precondition: Precondition,
    ) -> Result<TpmChallenge> {
        self.save_tpm_challenge(scope, challenge, precondition).await
    }
}
