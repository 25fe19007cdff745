//! Bulk operations on either kind of enrollment (Azure's `POST /enrollments`, `POST /enrollmentGroups`).

use std::collections::HashSet;

use super::{CallMeter, Caller, Dps};
use crate::error::{Error, Result};
use crate::ids::printable;
use crate::model::{Enrollment, Right};
use crate::store::Precondition;

/// Most items in one bulk operation (Azure's limit).
pub const MAX_BULK_ITEMS: usize = 10;

/// Bulk operation mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum BulkMode {
    /// Create; fails for items that exist.
    Create,
    /// Create or replace.
    Update,
    /// Replace only if the item's etag matches.
    #[serde(rename = "updateIfMatchETag")]
    UpdateIfMatchEtag,
    /// Delete.
    Delete,
}

/// One failed item of a bulk operation.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkItemResult {
    /// The item's registration ID or group ID.
    pub id: String,
    /// Why it failed.
    pub error: Error,
}

/// Result of a bulk operation: good items are committed, bad ones listed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BulkOutcome {
    /// The items that failed.
    pub errors: Vec<BulkItemResult>,
}

impl Dps {
    /// Apply a bulk operation to enrollments of one kind.
    pub async fn bulk_enrollments<E: Enrollment>(
        &self,
        caller: &Caller,
        mode: BulkMode,
        items: Vec<E>,
    ) -> Result<BulkOutcome> {
        caller.require(Right::EnrollmentWrite)?;
        self.metered_write(caller, |meter| async move {
            let outcome = self.bulk(caller, mode, items, &meter).await;
            self.forget_enrollments::<E>(caller);
            outcome
        })
        .await
    }

    /// One bulk call is one billable operation, counted with the first item written (or on its own if none is).
    async fn bulk<E: Enrollment>(
        &self,
        caller: &Caller,
        mode: BulkMode,
        items: Vec<E>,
        meter: &CallMeter,
    ) -> Result<BulkOutcome> {
        if items.is_empty() {
            return Err(Error::invalid("A bulk operation needs at least one item"));
        }
        if items.len() > MAX_BULK_ITEMS {
            return Err(Error::invalid(format!("A bulk operation takes at most {MAX_BULK_ITEMS} items")));
        }
        let mut seen = HashSet::new();
        for item in &items {
            if !seen.insert(item.id().to_ascii_lowercase()) {
                return Err(Error::invalid(format!(
                    "'{}' appears more than once in the bulk operation",
                    printable(item.id())
                )));
            }
        }
        let mut outcome = BulkOutcome::default();
        for item in items {
            let id = item.id().to_string();
            let put = |precondition| self.put_item(&caller.instance, &id, item.clone(), precondition, meter);
            let result = match mode {
                BulkMode::Create => put(Some(Precondition::NotExists)).await.map(drop),
                BulkMode::Update => put(None).await.map(drop),
                BulkMode::UpdateIfMatchEtag => match item.etag() {
                    Some(tag) => put(Some(Precondition::Matches(tag.to_string()))).await.map(drop),
                    None => Err(Error::invalid("updateIfMatchETag needs the item's etag")),
                },
                BulkMode::Delete => self.delete_item::<E>(caller, &id, item.etag(), meter).await,
            };
            if let Err(error) = result {
                outcome.errors.push(BulkItemResult { id, error });
            }
        }
        Ok(outcome)
    }
}
