//! Moving a table written by layout 1 to today's layout: layout 1 kept each device's registration record and
//! TPM challenge in the device partition (`{scope}#dev#{id}`) with its individual enrollment; now they have a
//! partition of their own (`{scope}#rec#{id}`, [`layout::record_pk`]), so that the device function's role can
//! be allowed to write records without being able to replace enrollments. docs/dynamodb.md, "Upgrading".

use dps_core::store::Precondition;
use dps_core::{Error, Result};

use crate::item::{self, Item, delete_condition, put_condition};
use crate::layout::{self, ItemKey};
use crate::{DynamoStore, TransactFailure, errors};

/// What [`DynamoStore::migrate_records`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Migration {
    /// Items moved to their new partition.
    pub moved: u64,
    /// Old items dropped because the new partition already held a newer one (written after the upgrade).
    pub superseded: u64,
    /// Items that changed while being moved (a layout-1 writer still running): left in place; run again.
    pub changed: u64,
}

impl DynamoStore {
    /// Move every layout-1 record and TPM challenge to its own partition. Each item moves in one transaction
    /// (Put the new item if absent, Delete the old one if unchanged), so an interrupted run loses nothing and
    /// running it again finishes the job; a record already in the new place is newer and wins. Reads the whole
    /// table once (a Scan): run it once per upgrade, with the service's credentials, not the device function's.
    pub async fn migrate_records(&self) -> Result<Migration> {
        let mut report = Migration::default();
        let mut pages = self
            .client
            .scan()
            .table_name(&*self.table)
            .filter_expression("(#sk = :record OR #sk = :challenge) AND contains(#pk, :device)")
            .expression_attribute_names("#pk", layout::PK)
            .expression_attribute_names("#sk", layout::SK)
            .expression_attribute_values(":record", item::s(layout::REGISTRATION_SK))
            .expression_attribute_values(":challenge", item::s(layout::TPM_CHALLENGE_SK))
            .expression_attribute_values(":device", item::s("#dev#"))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| errors::sdk("Scan", e))?;
            for old in page.items() {
                self.move_item(old, &mut report).await?;
            }
        }
        Ok(report)
    }

    async fn move_item(&self, old: &Item, report: &mut Migration) -> Result<()> {
        let (Some(pk), Some(sk)) = (item::get_s(old, layout::PK), item::get_s(old, layout::SK)) else {
            return Ok(());
        };
        let Some(new_pk) = layout::record_pk_of_legacy(pk) else { return Ok(()) };
        let old_key = ItemKey { pk: pk.to_string(), sk: sk.to_string() };
        let unchanged = match item::get_s(old, layout::ETAG) {
            Some(etag) => Precondition::Matches(etag.to_string()),
            None => Precondition::Matches("*".into()),
        };
        let mut new = old.clone();
        new.insert(layout::PK.into(), item::s(new_pk));
        let put = self.transact_put(new, put_condition(&Precondition::NotExists))?;
        let delete = self.transact_delete(&old_key, delete_condition(&unchanged))?;
        match self.transact(vec![put, delete]).await {
            Ok(()) => report.moved += 1,
            Err(TransactFailure::Condition { index: 0, .. }) => {
                match self.delete_item(&old_key, &unchanged, "A layout-1 record", None).await {
                    Ok(()) => report.superseded += 1,
                    Err(Error::PreconditionFailed(_) | Error::NotFound(_)) => report.changed += 1,
                    Err(e) => return Err(e),
                }
            }
            Err(TransactFailure::Condition { .. }) => report.changed += 1,
            Err(TransactFailure::Error(e)) => return Err(e),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_partitions_map_to_record_partitions() {
        assert_eq!(layout::record_pk_of_legacy("0ne00ab#dev#dev-1").as_deref(), Some("0ne00ab#rec#dev-1"));
        assert_eq!(layout::record_pk_of_legacy("0ne00ab#grp#g"), None);
        assert_eq!(layout::record_pk_of_legacy("0ne00ab#dev#dev-1"), Some(layout::record_pk("0NE00AB", "Dev-1")));
    }
}
