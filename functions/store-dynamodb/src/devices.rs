//! A device's partition: the device context read and registration records, counted in the same transaction.

use dps_core::Result;
use dps_core::model::{OperationCount, RegistrationRecord};
use dps_core::store::{DeviceContext, Precondition, new_etag};

use crate::item;
use crate::layout;
use crate::{DynamoStore, errors};

/// The enrollment and the record of one device: one strongly consistent Query of its partition.
pub(crate) async fn context(store: &DynamoStore, scope: &str, registration_id: &str) -> Result<DeviceContext> {
    let out = store
        .client
        .query()
        .table_name(&*store.table)
        .key_condition_expression("#pk = :pk")
        .expression_attribute_names("#pk", layout::PK)
        .expression_attribute_values(":pk", item::s(layout::device_pk(scope, registration_id)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| errors::sdk("Query", e))?;
    let mut context = DeviceContext::default();
    for found in out.items() {
        match item::get_s(found, layout::SK) {
            Some(layout::ENROLLMENT_SK) => context.enrollment = Some(item::decode(found)?),
            Some(layout::REGISTRATION_SK) => context.record = Some(item::decode(found)?),
            _ => {}
        }
    }
    Ok(context)
}

pub(crate) async fn get_registration(
    store: &DynamoStore,
    scope: &str,
    registration_id: &str,
) -> Result<Option<RegistrationRecord>> {
    store.get_item(&layout::registration(scope, registration_id)).await?.map(|i| item::decode(&i)).transpose()
}

/// Write a record: one PutItem, or with `meter` one TransactWriteItems of the record and a counter shard, so
/// the operation is counted if and only if the record is written.
pub(crate) async fn put_registration(
    store: &DynamoStore,
    scope: &str,
    mut record: RegistrationRecord,
    precondition: Precondition,
    meter: Option<OperationCount>,
) -> Result<RegistrationRecord> {
    let id = record.registration_id.clone();
    let what = format!("Registration '{id}'");
    let etag = new_etag();
    record.etag = Some(etag.clone());
    let key = layout::registration(scope, &id);
    let index = record.enrollment_group_id.as_deref().map(|group| layout::registration_index(scope, group, &id));
    let record_item = item::entity_item(&key, "registration", index.as_ref(), &etag, &record)?;
    store.put_item(record_item, &precondition, &what, meter.as_ref().map(|m| (scope, m))).await?;
    Ok(record)
}
