//! Service API use cases for registration records: read, delete, list a group's.

use super::enrollments::bounded;
use super::{Caller, Dps};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::ids::validate_id;
use crate::model::{EnrollmentKind, RegistrationRecord, Right};
use crate::store::{Page, PageRequest, Precondition};

impl Dps {
    /// Read a device's registration record.
    pub async fn get_registration(&self, caller: &Caller, id: &str) -> Result<RegistrationRecord> {
        caller.require(Right::RegistrationStatusRead)?;
        self.metered(caller, async {
            validate_id(EnrollmentKind::Individual.id_name(), id)?;
            self.store
                .get_registration(caller.scope(), id)
                .await?
                .ok_or_else(|| Error::not_found(format!("Registration '{id}' not found")))
        })
        .await
    }

    /// Delete a device's registration record (the device may register again as new).
    pub async fn delete_registration(&self, caller: &Caller, id: &str, if_match: Option<&str>) -> Result<()> {
        caller.require(Right::RegistrationStatusWrite)?;
        self.metered_write(caller, |meter| async move {
            validate_id(EnrollmentKind::Individual.id_name(), id)?;
            let count = meter.take();
            let write = Precondition::if_match(if_match).counting(count.clone());
            let deleted = self.store.delete_registration(caller.scope(), id, write);
            deleted.await.inspect_err(|_| meter.unused(count))?;
            self.emit(|| Event::registration_deleted(caller.scope(), id)).await;
            Ok(())
        })
        .await
    }

    /// A page of the registration records of one group's devices.
    pub async fn query_registrations(
        &self,
        caller: &Caller,
        group_id: &str,
        page: PageRequest,
    ) -> Result<Page<RegistrationRecord>> {
        caller.require(Right::RegistrationStatusRead)?;
        self.metered(caller, async {
            validate_id(EnrollmentKind::Group.id_name(), group_id)?;
            self.store.query_registrations(caller.scope(), group_id, bounded(page)).await
        })
        .await
    }
}
