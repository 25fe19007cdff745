//! TPM challenges: one row per device in their own table, `tpm_challenges` ((scope, registration ID) → JSON).
//! An expired row reads as absent and counts as absent for a write's precondition; the next challenge of the
//! device overwrites it. (Rows of devices that never come back stay until then: a few hundred bytes each.)

use dps_core::error::Result;
use dps_core::model::TpmChallenge;
use dps_core::store::{Precondition, key, new_etag, unix_now};
use redb::{ReadTransaction, TableDefinition, TableError, WriteTransaction};

use crate::tables::{ScopedTable, internal, row, to_json};

const TPM_CHALLENGES: ScopedTable = TableDefinition::new("tpm_challenges");

/// The live challenge at (scope, id) in a read snapshot. The table appears with the first challenge written.
pub(crate) fn get(txn: &ReadTransaction, scope: &str, id: &str) -> Result<Option<TpmChallenge>> {
    let table = match txn.open_table(TPM_CHALLENGES) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(internal(e)),
    };
    let challenge: Option<TpmChallenge> = row(&table, scope, id)?;
    Ok(challenge.filter(|c| !c.expired(unix_now())))
}

pub(crate) fn put(
    txn: &WriteTransaction,
    scope: &str,
    mut challenge: TpmChallenge,
    precondition: Precondition,
) -> Result<TpmChallenge> {
    let id = key(&challenge.registration_id);
    let mut table = txn.open_table(TPM_CHALLENGES).map_err(internal)?;
    let current: Option<TpmChallenge> = row(&table, scope, &id)?;
    let current = current.filter(|c| !c.expired(unix_now()));
    precondition.check("TPM challenge", current.as_ref().map(|c| c.etag.as_deref().unwrap_or_default()))?;
    challenge.etag = Some(new_etag());
    table.insert((scope, id.as_str()), to_json(&challenge)?.as_slice()).map_err(internal)?;
    Ok(challenge)
}
