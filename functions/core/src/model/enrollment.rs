//! One abstraction for "an individual enrollment or an enrollment group": the store keeps them alike, the service
//! API serves them alike, and each kind's names (collection, ID field, messages) are listed here once.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{AttestationType, EnrollmentGroup, EnrollmentSpec, IndividualEnrollment};
use crate::error::{Error, Result};
use crate::ids::validate_id;

/// Which of the two kinds of enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EnrollmentKind {
    /// One device's enrollment, keyed by registration ID.
    Individual,
    /// A group of devices sharing an attestation root, keyed by group ID.
    Group,
}

impl EnrollmentKind {
    /// Both kinds.
    pub const ALL: [EnrollmentKind; 2] = [EnrollmentKind::Individual, EnrollmentKind::Group];

    /// The Azure collection name: the service API's path segment, the query language's `FROM`, the bulk
    /// request's array field (`enrollments`, `enrollmentGroups`; paths match it case-insensitively).
    pub const fn collection(self) -> &'static str {
        match self {
            EnrollmentKind::Individual => "enrollments",
            EnrollmentKind::Group => "enrollmentGroups",
        }
    }

    /// The item type of query answers (`x-ms-item-type`), as the SDKs' enums spell it.
    pub const fn item_type(self) -> &'static str {
        match self {
            EnrollmentKind::Individual => "enrollment",
            EnrollmentKind::Group => "enrollmentGroup",
        }
    }

    /// The wire name of the key field (`registrationId`, `enrollmentGroupId`).
    pub const fn id_field(self) -> &'static str {
        match self {
            EnrollmentKind::Individual => "registrationId",
            EnrollmentKind::Group => "enrollmentGroupId",
        }
    }

    /// The key's name in messages (`registration ID`, `enrollment group ID`).
    pub const fn id_name(self) -> &'static str {
        match self {
            EnrollmentKind::Individual => "registration ID",
            EnrollmentKind::Group => "enrollment group ID",
        }
    }

    /// The kind's name at the start of messages (`Enrollment`, `Enrollment group`).
    pub const fn what(self) -> &'static str {
        match self {
            EnrollmentKind::Individual => "Enrollment",
            EnrollmentKind::Group => "Enrollment group",
        }
    }

    /// The kind's name with its article, at the start of messages (`An individual enrollment`).
    pub const fn with_article(self) -> &'static str {
        match self {
            EnrollmentKind::Individual => "An individual enrollment",
            EnrollmentKind::Group => "An enrollment group",
        }
    }

    /// The kind's short name inside messages of the operator tool (`enrollment`, `group`).
    pub const fn noun(self) -> &'static str {
        match self {
            EnrollmentKind::Individual => "enrollment",
            EnrollmentKind::Group => "group",
        }
    }
}

/// What the service does with either kind of enrollment: its key, its shared settings, the rules of its kind.
pub trait Enrollment: Clone + std::fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Which kind this is.
    const KIND: EnrollmentKind;
    /// The key (registration ID or group ID), case as given.
    fn id(&self) -> &str;
    /// Settings both kinds share.
    fn spec(&self) -> &EnrollmentSpec;
    /// Settings both kinds share, to change.
    fn spec_mut(&mut self) -> &mut EnrollmentSpec;
    /// The rules only this kind has (beyond [`EnrollmentSpec`]'s).
    fn check_kind_rules(&self) -> Result<()>;
    /// Into the kind-erased form the store port takes.
    fn into_any(self) -> AnyEnrollment;
    /// Back from the kind-erased form; `None` if it is the other kind.
    fn from_any(any: AnyEnrollment) -> Option<Self>;

    /// The version tag, set by the store on every write.
    fn etag(&self) -> Option<&str> {
        self.spec().etag.as_deref()
    }

    /// A copy fit to show outside the attestationmechanism call: symmetric keys removed.
    fn without_secrets(mut self) -> Self {
        let spec = self.spec_mut();
        spec.attestation = spec.attestation.without_secrets();
        self
    }
}

impl Enrollment for IndividualEnrollment {
    const KIND: EnrollmentKind = EnrollmentKind::Individual;
    fn id(&self) -> &str {
        &self.registration_id
    }
    fn spec(&self) -> &EnrollmentSpec {
        &self.spec
    }
    fn spec_mut(&mut self) -> &mut EnrollmentSpec {
        &mut self.spec
    }
    fn check_kind_rules(&self) -> Result<()> {
        if let Some(device_id) = &self.device_id {
            validate_id("device ID", device_id)?;
        }
        Ok(())
    }
    fn into_any(self) -> AnyEnrollment {
        AnyEnrollment::Individual(self)
    }
    fn from_any(any: AnyEnrollment) -> Option<Self> {
        match any {
            AnyEnrollment::Individual(e) => Some(e),
            AnyEnrollment::Group(_) => None,
        }
    }
}

impl Enrollment for EnrollmentGroup {
    const KIND: EnrollmentKind = EnrollmentKind::Group;
    fn id(&self) -> &str {
        &self.enrollment_group_id
    }
    fn spec(&self) -> &EnrollmentSpec {
        &self.spec
    }
    fn spec_mut(&mut self) -> &mut EnrollmentSpec {
        &mut self.spec
    }
    fn check_kind_rules(&self) -> Result<()> {
        if self.spec.attestation.kind == AttestationType::Tpm {
            return Err(Error::invalid("TPM attestation is for individual enrollments only"));
        }
        if let Some(prefix) = &self.registration_id_prefix {
            let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':');
            if prefix.is_empty() || prefix.len() > 128 || !prefix.chars().all(allowed) {
                return Err(Error::invalid(
                    "registrationIdPrefix must be 1 to 128 of the characters a registration ID may have",
                ));
            }
        }
        Ok(())
    }
    fn into_any(self) -> AnyEnrollment {
        AnyEnrollment::Group(self)
    }
    fn from_any(any: AnyEnrollment) -> Option<Self> {
        match any {
            AnyEnrollment::Group(g) => Some(g),
            AnyEnrollment::Individual(_) => None,
        }
    }
}

/// Either kind of enrollment, for the object-safe store port. Serialised as the entity itself (wire form).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AnyEnrollment {
    /// An individual enrollment.
    Individual(IndividualEnrollment),
    /// An enrollment group.
    Group(EnrollmentGroup),
}

impl AnyEnrollment {
    /// Which kind it is.
    pub fn kind(&self) -> EnrollmentKind {
        match self {
            AnyEnrollment::Individual(_) => EnrollmentKind::Individual,
            AnyEnrollment::Group(_) => EnrollmentKind::Group,
        }
    }

    /// The key (registration ID or group ID).
    pub fn id(&self) -> &str {
        match self {
            AnyEnrollment::Individual(e) => e.id(),
            AnyEnrollment::Group(g) => g.id(),
        }
    }

    /// The shared settings.
    pub fn spec(&self) -> &EnrollmentSpec {
        match self {
            AnyEnrollment::Individual(e) => &e.spec,
            AnyEnrollment::Group(g) => &g.spec,
        }
    }

    /// The version tag.
    pub fn etag(&self) -> Option<&str> {
        self.spec().etag.as_deref()
    }

    /// Set the version tag (stores do, on every write).
    pub fn set_etag(&mut self, etag: String) {
        match self {
            AnyEnrollment::Individual(e) => e.spec.etag = Some(etag),
            AnyEnrollment::Group(g) => g.spec.etag = Some(etag),
        }
    }

    /// Parse the stored wire form of an entity of `kind`.
    pub fn from_json(kind: EnrollmentKind, json: &[u8]) -> serde_json::Result<Self> {
        Ok(match kind {
            EnrollmentKind::Individual => AnyEnrollment::Individual(serde_json::from_slice(json)?),
            EnrollmentKind::Group => AnyEnrollment::Group(serde_json::from_slice(json)?),
        })
    }

    /// The typed entity; an `Internal` error if it is the other kind (a store bug).
    pub fn into_typed<E: Enrollment>(self) -> Result<E> {
        let kind = self.kind();
        E::from_any(self).ok_or_else(|| Error::internal(format!("store returned a {kind:?} for a {:?}", E::KIND)))
    }
}
