//! Individual enrollments (in their device's partition) and enrollment groups (one partition each).

use dps_core::Result;
use dps_core::model::{EnrollmentGroup, IndividualEnrollment};
use dps_core::store::{Precondition, new_etag};

use crate::layout;
use crate::{DynamoStore, item};

pub(crate) async fn get_enrollment(
    store: &DynamoStore,
    scope: &str,
    registration_id: &str,
) -> Result<Option<IndividualEnrollment>> {
    store.get_item(&layout::enrollment(scope, registration_id)).await?.map(|i| item::decode(&i)).transpose()
}

pub(crate) async fn put_enrollment(
    store: &DynamoStore,
    scope: &str,
    mut enrollment: IndividualEnrollment,
    precondition: Precondition,
) -> Result<IndividualEnrollment> {
    let id = enrollment.registration_id.clone();
    let etag = new_etag();
    enrollment.spec.etag = Some(etag.clone());
    let key = layout::enrollment(scope, &id);
    let index = layout::enrollment_index(scope, &id);
    let item = item::entity_item(&key, "enrollment", Some(&index), &etag, &enrollment)?;
    store.put_item(item, &precondition, &format!("Enrollment '{id}'")).await?;
    Ok(enrollment)
}

pub(crate) async fn delete_enrollment(
    store: &DynamoStore,
    scope: &str,
    registration_id: &str,
    precondition: Precondition,
) -> Result<()> {
    let key = layout::enrollment(scope, registration_id);
    store.delete_item(&key, &precondition, &format!("Enrollment '{registration_id}'")).await
}

pub(crate) async fn get_group(store: &DynamoStore, scope: &str, group_id: &str) -> Result<Option<EnrollmentGroup>> {
    store.get_item(&layout::group(scope, group_id)).await?.map(|i| item::decode(&i)).transpose()
}

pub(crate) async fn put_group(
    store: &DynamoStore,
    scope: &str,
    mut group: EnrollmentGroup,
    precondition: Precondition,
) -> Result<EnrollmentGroup> {
    let id = group.enrollment_group_id.clone();
    let etag = new_etag();
    group.spec.etag = Some(etag.clone());
    let key = layout::group(scope, &id);
    let index = layout::group_index(scope, &id);
    let item = item::entity_item(&key, "group", Some(&index), &etag, &group)?;
    store.put_item(item, &precondition, &format!("Enrollment group '{id}'")).await?;
    Ok(group)
}

pub(crate) async fn delete_group(
    store: &DynamoStore,
    scope: &str,
    group_id: &str,
    precondition: Precondition,
) -> Result<()> {
    let key = layout::group(scope, group_id);
    store.delete_item(&key, &precondition, &format!("Enrollment group '{group_id}'")).await
}
