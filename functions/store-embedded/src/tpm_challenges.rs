//! TPM challenges: one row per device in their own table, `tpm_challenges` ((scope, registration ID) → JSON).
//! An expired row reads as absent and counts as absent for a write's precondition; the next challenge of the
//! device overwrites it. (Rows of devices that never come back stay until then: a few hundred bytes each.)

use dps_core::error::Result;
use dps_core::model::TpmChallenge;
use dps_core::store::{Precondition, key, new_etag, unix_now};
use redb::{ReadTransaction, ReadableTable, TableDefinition, TableError};

use crate::EmbeddedStore;
use crate::tables::{ScopedTable, from_json, internal, to_json};

const TPM_CHALLENGES: ScopedTable = TableDefinition::new("tpm_challenges");

/// The live challenge at (scope, id) in a read snapshot. The table appears with the first challenge written.
fn live(txn: &ReadTransaction, scope: &str, id: &str) -> Result<Option<TpmChallenge>> {
    let table = match txn.open_table(TPM_CHALLENGES) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(internal(e)),
    };
    let found = table.get((scope, id)).map_err(internal)?;
    let challenge: Option<TpmChallenge> = found.map(|v| from_json(v.value())).transpose()?;
    Ok(challenge.filter(|c| !c.expired(unix_now())))
}

impl EmbeddedStore {
    pub(crate) async fn tpm_challenge(&self, scope: &str, registration_id: &str) -> Result<Option<TpmChallenge>> {
        let (scope, id) = (key(scope), key(registration_id));
        self.read(move |txn| live(txn, &scope, &id)).await
    }

    pub(crate) async fn save_tpm_challenge(
        &self,
        scope: &str,
        mut challenge: TpmChallenge,
        precondition: Precondition,
    ) -> Result<TpmChallenge> {
        let (scope, id) = (key(scope), key(&challenge.registration_id));
        self.write(move |txn| {
            let mut table = txn.open_table(TPM_CHALLENGES).map_err(internal)?;
            let current: Option<TpmChallenge> = table
                .get((scope.as_str(), id.as_str()))
                .map_err(internal)?
                .map(|v| from_json(v.value()))
                .transpose()?;
            let current = current.filter(|c| !c.expired(unix_now()));
            precondition.check("TPM challenge", current.as_ref().map(|c| c.etag.as_deref().unwrap_or_default()))?;
            challenge.etag = Some(new_etag());
            table.insert((scope.as_str(), id.as_str()), to_json(&challenge)?.as_slice()).map_err(internal)?;
            Ok(challenge)
        })
        .await
    }
}
