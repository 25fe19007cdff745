//! One device: the device context read and registration records, counted in the same transaction.

use aws_sdk_dynamodb::types::KeysAndAttributes;
use dps_core::model::RegistrationRecord;
use dps_core::store::{DeviceContext, Page, PageRequest, Write, new_etag};
use dps_core::{Error, Result};

use crate::item::{self, Item};
use crate::{DynamoStore, errors, layout, listing};

/// Rounds of a BatchGetItem whose keys DynamoDB left unprocessed (it does so under throttling).
const BATCH_GET_ROUNDS: u32 = 4;

fn place(context: &mut DeviceContext, found: &Item) -> Result<()> {
    match item::get_s(found, layout::SK) {
        Some(layout::ENROLLMENT_SK) => context.enrollment = Some(item::decode(found)?),
        Some(layout::REGISTRATION_SK) => context.record = Some(item::decode(found)?),
        _ => {}
    }
    Ok(())
}

impl DynamoStore {
    /// The enrollment and the record of one device: their two keys (the enrollment in the device partition, the
    /// record in its own) in one strongly consistent BatchGetItem.
    pub(crate) async fn context_of_device(&self, scope: &str, registration_id: &str) -> Result<DeviceContext> {
        let keys = [layout::enrollment(scope, registration_id), layout::registration(scope, registration_id)];
        let mut pending = KeysAndAttributes::builder()
            .set_keys(Some(keys.iter().map(item::key_of).collect()))
            .consistent_read(true)
            .build()
            .map_err(|e| Error::internal(format!("building the device read: {e}")))?;
        let mut context = DeviceContext::default();
        for round in 1..=BATCH_GET_ROUNDS {
            let mut out = self
                .client
                .batch_get_item()
                .request_items(&*self.table, pending)
                .send()
                .await
                .map_err(|e| errors::sdk("BatchGetItem", e))?;
            for found in out.responses.as_mut().and_then(|r| r.remove(&*self.table)).unwrap_or_default() {
                place(&mut context, &found)?;
            }
            match out.unprocessed_keys.and_then(|mut u| u.remove(&*self.table)).filter(|k| !k.keys.is_empty()) {
                None => return Ok(context),
                Some(left) => pending = left,
            }
            crate::back_off(round).await;
        }
        Err(errors::throttled())
    }

    pub(crate) async fn registration(&self, scope: &str, registration_id: &str) -> Result<Option<RegistrationRecord>> {
        self.get_item(&layout::registration(scope, registration_id)).await?.map(|i| item::decode(&i)).transpose()
    }

    /// Write a record: one PutItem, or with `meter` one TransactWriteItems of the record and a counter shard, so
    /// the operation is counted if and only if the record is written.
    pub(crate) async fn save_registration(
        &self,
        scope: &str,
        mut record: RegistrationRecord,
        write: Write,
    ) -> Result<RegistrationRecord> {
        let id = record.registration_id.clone();
        let what = format!("Registration '{id}'");
        let etag = new_etag();
        record.etag = Some(etag.clone());
        let key = layout::registration(scope, &id);
        let index = record.enrollment_group_id.as_deref().map(|group| layout::registration_index(scope, group, &id));
        let record_item = item::entity_item(&key, "registration", index.as_ref(), &etag, &record)?;
        self.put_item(record_item, &write.precondition, &what, write.meter.as_ref().map(|m| (scope, m))).await?;
        Ok(record)
    }

    pub(crate) async fn remove_registration(&self, scope: &str, registration_id: &str, write: Write) -> Result<()> {
        let key = layout::registration(scope, registration_id);
        let meter = write.meter.as_ref().map(|m| (scope, m));
        self.delete_item(&key, &write.precondition, &format!("Registration '{registration_id}'"), meter).await
    }

    /// One page of the records of the devices of group `group_id`.
    pub(crate) async fn registration_page(
        &self,
        scope: &str,
        group_id: &str,
        page: PageRequest,
    ) -> Result<Page<RegistrationRecord>> {
        let at = |id: &str| layout::registration(scope, id);
        listing::query(self, layout::registration_index_pks(scope, group_id), page, at, item::decode).await
    }
}
