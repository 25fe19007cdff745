//! Individual enrollments (in their device's partition) and enrollment groups (one partition each), written
//! and read alike; only their keys differ (see [`layout::enrollment_of`]).

use dps_core::Result;
use dps_core::model::{AnyEnrollment, EnrollmentKind};
use dps_core::store::{Page, PageRequest, Write, new_etag};

use crate::{DynamoStore, item, layout, listing};

impl DynamoStore {
    pub(crate) async fn enrollment(
        &self,
        scope: &str,
        kind: EnrollmentKind,
        id: &str,
    ) -> Result<Option<AnyEnrollment>> {
        let (key, _) = layout::enrollment_of(kind, scope, id);
        self.get_item(&key).await?.map(|i| item::decode_enrollment(kind, &i)).transpose()
    }

    pub(crate) async fn save_enrollment(
        &self,
        scope: &str,
        mut enrollment: AnyEnrollment,
        write: Write,
    ) -> Result<AnyEnrollment> {
        let (kind, id) = (enrollment.kind(), enrollment.id().to_string());
        let etag = new_etag();
        enrollment.set_etag(etag.clone());
        let (key, type_name) = layout::enrollment_of(kind, scope, &id);
        let index = layout::enrollment_index_of(kind, scope, &id);
        let item = item::entity_item(&key, type_name, Some(&index), &etag, &enrollment)?;
        let meter = write.meter.as_ref().map(|m| (scope, m));
        self.put_item(item, &write.precondition, &format!("{} '{id}'", kind.what()), meter).await?;
        Ok(enrollment)
    }

    pub(crate) async fn remove_enrollment(
        &self,
        scope: &str,
        kind: EnrollmentKind,
        id: &str,
        write: Write,
    ) -> Result<()> {
        let (key, _) = layout::enrollment_of(kind, scope, id);
        let meter = write.meter.as_ref().map(|m| (scope, m));
        self.delete_item(&key, &write.precondition, &format!("{} '{id}'", kind.what()), meter).await
    }

    pub(crate) async fn enrollment_page(
        &self,
        scope: &str,
        kind: EnrollmentKind,
        page: PageRequest,
    ) -> Result<Page<AnyEnrollment>> {
        let pks = layout::enrollment_index_pks_of(kind, scope);
        let at = |id: &str| layout::enrollment_of(kind, scope, id).0;
        listing::query(self, pks, page, at, |i| item::decode_enrollment(kind, i)).await
    }
}
