//! The storage port. Every adapter passes the conformance suite (`conformance` feature).
//!
//! Contract, for every entity:
//! - keys (registration IDs, group IDs, host names) are case-insensitive: adapters key on [`key`];
//! - every successful write sets a fresh, opaque `etag` (a quoted string) on the returned entity;
//! - writes are conditional through [`Precondition`] (carried, with the operation a write counts, in a
//!   [`Write`]); a failed condition is `Error::Conflict` for [`Precondition::NotExists`] and
//!   `Error::PreconditionFailed` for [`Precondition::Matches`] (or `Error::NotFound` when the entity is gone);
//! - everything is scoped by the instance's ID scope: nothing of one scope is visible through another.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{
    AnyEnrollment, Enrollment, EnrollmentKind, IndividualEnrollment, Instance, OperationCount, OperationKind,
    RegistrationRecord, TpmChallenge,
};

/// Condition a write must meet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Precondition {
    /// Unconditional (upsert).
    #[default]
    None,
    /// The entity must not exist (create).
    NotExists,
    /// The entity must exist with this etag (`*` matches any existing version).
    Matches(String),
}

impl Precondition {
    /// From an optional `If-Match` value: absent means unconditional.
    pub fn if_match(etag: Option<&str>) -> Self {
        match etag {
            None => Precondition::None,
            Some(tag) => Precondition::Matches(tag.to_string()),
        }
    }

    /// A write under this condition that counts `meter` with it.
    pub fn counting(self, meter: Option<OperationCount>) -> Write {
        Write { precondition: self, meter }
    }

    /// Whether a stored entity with `current` etag (None = absent) satisfies this condition.
    /// Returns the error the write must fail with, if any.
    pub fn check(&self, what: &str, current: Option<&str>) -> Result<()> {
        use crate::error::Error;
        match (self, current) {
            (Precondition::None, _) => Ok(()),
            (Precondition::NotExists, None) => Ok(()),
            (Precondition::NotExists, Some(_)) => Err(Error::Conflict(format!("{what} already exists"))),
            (Precondition::Matches(_), None) => Err(Error::NotFound(format!("{what} not found"))),
            (Precondition::Matches(expected), Some(actual)) => {
                if etag_matches(expected, actual) {
                    Ok(())
                } else {
                    Err(Error::PreconditionFailed(format!("{what}: etag does not match")))
                }
            }
        }
    }
}

/// What travels with every write of an enrollment or a registration record: it happens only if `precondition`
/// holds, and `meter`, when given, is counted in the same atomic write (counted if and only if the write happens).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Write {
    /// The condition the write must meet.
    pub precondition: Precondition,
    /// The operation counted with the write.
    pub meter: Option<OperationCount>,
}

impl From<Precondition> for Write {
    /// A write under `precondition` that counts nothing.
    fn from(precondition: Precondition) -> Self {
        precondition.counting(None)
    }
}

/// Compare an If-Match value with a stored etag, tolerating missing quotes and weak prefixes.
pub fn etag_matches(expected: &str, actual: &str) -> bool {
    fn bare(tag: &str) -> &str {
        let tag = tag.trim();
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag.trim_matches('"')
    }
    expected.trim() == "*" || bare(expected) == bare(actual)
}

/// A fresh etag: a quoted random UUID, as Azure shapes them.
pub fn new_etag() -> String {
    format!("\"{}\"", uuid::Uuid::new_v4())
}

/// The storage key of a case-insensitive identifier.
pub fn key(id: &str) -> String {
    id.to_ascii_lowercase()
}

/// One page of a query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageRequest {
    /// Maximum items to return (the adapter may return fewer; at least 1).
    pub max_items: usize,
    /// Opaque token from the previous page.
    pub continuation: Option<String>,
}

/// A page of results, in ascending key order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Token for the next page; `None` on the last page.
    pub continuation: Option<String>,
}

/// What a registration reads about one device in a single round trip.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceContext {
    /// The device's individual enrollment, if any.
    pub enrollment: Option<IndividualEnrollment>,
    /// The device's registration record, if any.
    pub record: Option<RegistrationRecord>,
}

/// Storage port for everything the service keeps.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Create an instance; `Conflict` if its ID scope, name or service host name is taken.
    async fn create_instance(&self, instance: Instance) -> Result<Instance>;
    /// Replace an instance (its scope, name and host name are immutable).
    async fn update_instance(&self, instance: Instance, precondition: Precondition) -> Result<Instance>;
    /// Find an instance by ID scope.
    async fn instance_by_scope(&self, id_scope: &str) -> Result<Option<Instance>>;
    /// Find an instance by service host name.
    async fn instance_by_host(&self, host_name: &str) -> Result<Option<Instance>>;
    /// All instances, by ID scope.
    async fn list_instances(&self) -> Result<Vec<Instance>>;

    /// Read an individual enrollment or a group.
    async fn get_enrollment(&self, scope: &str, kind: EnrollmentKind, id: &str) -> Result<Option<AnyEnrollment>>;
    /// Write an individual enrollment or a group under `write`; returns it with its new etag.
    async fn put_enrollment(&self, scope: &str, enrollment: AnyEnrollment, write: Write) -> Result<AnyEnrollment>;
    /// Delete an individual enrollment or a group under `write`; `NotFound` if absent.
    async fn delete_enrollment(&self, scope: &str, kind: EnrollmentKind, id: &str, write: Write) -> Result<()>;
    /// Page through the individual enrollments or the groups of a scope.
    async fn query_enrollments(
        &self,
        scope: &str,
        kind: EnrollmentKind,
        page: PageRequest,
    ) -> Result<Page<AnyEnrollment>>;

    /// The device's individual enrollment and registration record, read together.
    async fn device_context(&self, scope: &str, registration_id: &str) -> Result<DeviceContext>;
    /// Read a registration record.
    async fn get_registration(&self, scope: &str, registration_id: &str) -> Result<Option<RegistrationRecord>>;
    /// Write a registration record under `write`; returns it with its new etag.
    async fn put_registration(
        &self,
        scope: &str,
        record: RegistrationRecord,
        write: Write,
    ) -> Result<RegistrationRecord>;
    /// Delete a registration record under `write`; `NotFound` if absent.
    async fn delete_registration(&self, scope: &str, registration_id: &str, write: Write) -> Result<()>;
    /// Page through the records of devices admitted by one group.
    async fn query_registrations(
        &self,
        scope: &str,
        group_id: &str,
        page: PageRequest,
    ) -> Result<Page<RegistrationRecord>>;

    /// Count `count` operations of `kind` for the UTC day `date` (`YYYY-MM-DD`).
    async fn add_operations(&self, scope: &str, date: &str, kind: OperationKind, count: u64) -> Result<()>;
    /// Counts for days `from..=to` (`YYYY-MM-DD`), ascending by date then kind; zero counts may be omitted.
    async fn operations(&self, scope: &str, from: &str, to: &str) -> Result<Vec<OperationCount>>;

    /// Read a device's pending TPM challenge. One whose `expires_at` has passed (by the store's clock) reads as
    /// absent, whether or not the store has removed it yet.
    async fn get_tpm_challenge(&self, scope: &str, registration_id: &str) -> Result<Option<TpmChallenge>>;
    /// Write a device's TPM challenge (one per device: a new one replaces the old); returns it with its new etag.
    async fn put_tpm_challenge(
        &self,
        scope: &str,
        challenge: TpmChallenge,
        precondition: Precondition,
    ) -> Result<TpmChallenge>;
}

/// Unix seconds now, the clock stores judge TPM challenge expiry by.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The enrollment calls of [`Store`], typed by kind: `store.load::<EnrollmentGroup>(scope, id)`. A write is a
/// [`Write`] or just its [`Precondition`] (counting nothing).
#[async_trait]
pub trait EnrollmentStore {
    /// Read one enrollment of kind `E`.
    async fn load<E: Enrollment>(&self, scope: &str, id: &str) -> Result<Option<E>>;
    /// Write one enrollment; returns it with its new etag.
    async fn save<E: Enrollment>(&self, scope: &str, enrollment: E, write: impl Into<Write> + Send) -> Result<E>;
    /// Delete one enrollment of kind `E`; `NotFound` if absent.
    async fn remove<E: Enrollment>(&self, scope: &str, id: &str, write: impl Into<Write> + Send) -> Result<()>;
    /// A page of the enrollments of kind `E`.
    async fn page<E: Enrollment>(&self, scope: &str, page: PageRequest) -> Result<Page<E>>;
}

#[async_trait]
impl<S: Store + ?Sized> EnrollmentStore for S {
    async fn load<E: Enrollment>(&self, scope: &str, id: &str) -> Result<Option<E>> {
        self.get_enrollment(scope, E::KIND, id).await?.map(AnyEnrollment::into_typed).transpose()
    }

    async fn save<E: Enrollment>(&self, scope: &str, enrollment: E, write: impl Into<Write> + Send) -> Result<E> {
        self.put_enrollment(scope, enrollment.into_any(), write.into()).await?.into_typed()
    }

    async fn remove<E: Enrollment>(&self, scope: &str, id: &str, write: impl Into<Write> + Send) -> Result<()> {
        self.delete_enrollment(scope, E::KIND, id, write.into()).await
    }

    async fn page<E: Enrollment>(&self, scope: &str, page: PageRequest) -> Result<Page<E>> {
        let got = self.query_enrollments(scope, E::KIND, page).await?;
        let items = got.items.into_iter().map(AnyEnrollment::into_typed).collect::<Result<_>>()?;
        Ok(Page { items, continuation: got.continuation })
    }
}
