//! What a run needs, made through the service API: a linked hub (optional), then an enrollment group or one
//! individual enrollment per device (symmetric key or X.509); and each device's credentials (its SAS token, or its
//! certificate and key), made before the clock starts.

use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::sign::CertifiedKey;
use serde_json::{Value, json};

use crate::certs::{Ca, Keys, self_signed};
use crate::client::{Answer, Connection, Endpoint};

const SERVICE_API: &str = "api-version=2021-10-01";
/// Items per bulk enrollment request (the service's limit).
const BULK: usize = 10;
/// Device tokens outlive any run.
const TOKEN_TTL_SECS: i64 = 6 * 3600;

/// The service API, signed with an instance's connection string.
#[derive(Clone)]
pub struct Service {
    endpoint: Endpoint,
    host: String,
    authorization: String,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Service {
    /// `connection_string` as `dps instance show` prints it; its `HostName` is the `Host` the calls carry.
    pub fn new(endpoint: Endpoint, connection_string: &str) -> anyhow::Result<Self> {
        let field = |name: &str| {
            connection_string
                .split(';')
                .find_map(|p| p.trim().strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .map(str::to_string)
                .with_context(|| format!("the connection string lacks {name}"))
        };
        let host = field("HostName")?;
        let authorization = dps_core::sas::token(
            &host,
            &field("SharedAccessKey")?,
            now() + 3600,
            Some(&field("SharedAccessKeyName")?),
        )?;
        Ok(Self { endpoint, host, authorization })
    }

    /// A connection to the service API.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        self.endpoint.connect().await
    }

    /// One call without extra headers; fails unless the status is `expect`. Returns the body.
    pub async fn call(
        &self,
        conn: &mut Connection,
        method: &str,
        path: &str,
        body: Option<&Value>,
        expect: u16,
    ) -> anyhow::Result<Value> {
        Ok(self.answer(conn, method, path, &[], body, expect).await?.body)
    }

    /// One call with `extra` headers; fails unless the status is `expect`. Returns the whole answer.
    pub async fn answer(
        &self,
        conn: &mut Connection,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<&Value>,
        expect: u16,
    ) -> anyhow::Result<Answer> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let path = format!("{path}{sep}{SERVICE_API}");
        let mut headers = vec![("authorization", self.authorization.as_str())];
        headers.extend_from_slice(extra);
        let answer = conn.call(method, &self.host, &path, &headers, body).await?;
        if answer.status != expect {
            bail!("{method} {path}: HTTP {} {}", answer.status, answer.body);
        }
        Ok(answer)
    }
}

/// A device and what it proves itself with: a SAS token, or a certificate.
#[derive(Debug, Clone)]
pub struct Device {
    /// Registration ID.
    pub id: String,
    /// SAS token over `{scope}/registrations/{id}`, sent as `Authorization`; empty for a certificate device.
    pub authorization: String,
    /// The certificate (subject CN = the registration ID) and key it presents in the TLS handshake, if any.
    pub certificate: Option<Arc<CertifiedKey>>,
}

impl Device {
    fn sas(id: String, authorization: String) -> Self {
        Self { id, authorization, certificate: None }
    }

    fn x509(id: String, certificate: Arc<CertifiedKey>) -> Self {
        Self { id, authorization: String::new(), certificate: Some(certificate) }
    }
}

/// How the devices attest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Attestation {
    /// One symmetric-key enrollment group; each device signs with its key derived from the group key.
    Group,
    /// One individual enrollment with its own symmetric key per device (created in bulk requests of 10).
    Individual,
    /// One X.509 enrollment group whose signing certificate is the run's CA; each device presents a leaf the CA
    /// signed.
    X509Group,
    /// One X.509 individual enrollment per device holding its self-signed certificate (bulk requests of 10).
    X509Individual,
}

impl Attestation {
    /// Whether devices present certificates (and so need a TLS connection each).
    pub fn is_x509(self) -> bool {
        matches!(self, Self::X509Group | Self::X509Individual)
    }
}

/// Link `hub` (the `/config/linkedHubs` extension) so that registrations have somewhere to go.
pub async fn link_hub(service: &Service, hub: &str) -> anyhow::Result<()> {
    let mut conn = service.connect().await?;
    let path = format!("/config/linkedHubs/{hub}");
    service.call(&mut conn, "PUT", &path, Some(&json!({"allocationWeight": 1})), 200).await?;
    Ok(())
}

/// Create `extra` other symmetric-key groups, `0-<run>-N`, which sort before the run's own group: a device names
/// no group, so its first registration tries them first (the worst case of the group search).
pub async fn extra_groups(service: &Service, run: &str, extra: usize) -> anyhow::Result<()> {
    let mut conn = service.connect().await?;
    for i in 0..extra {
        let id = format!("0-{run}-{i:05}");
        let group = json!({"enrollmentGroupId": id, "attestation": {"type": "symmetricKey"}});
        service.call(&mut conn, "PUT", &format!("/enrollmentGroups/{id}"), Some(&group), 200).await?;
    }
    Ok(())
}

/// Create `count` devices' enrollments under the prefix `run` and return their credentials.
pub async fn enroll(
    service: &Service,
    scope: &str,
    run: &str,
    count: usize,
    attestation: Attestation,
    concurrency: usize,
) -> anyhow::Result<Vec<Device>> {
    let ids: Vec<String> = (0..count).map(|i| format!("{run}-dev-{i}")).collect();
    let sign = |id: &str, key: &str| {
        let resource = format!("{scope}/registrations/{id}");
        dps_core::sas::token(&resource, key, now() + TOKEN_TTL_SECS, Some("registration"))
    };
    match attestation {
        Attestation::Group => {
            let key = dps_core::sas::generate_key();
            let group = json!({
                "enrollmentGroupId": run,
                "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": dps_core::sas::generate_key()}},
            });
            let mut conn = service.connect().await?;
            service.call(&mut conn, "PUT", &format!("/enrollmentGroups/{run}"), Some(&group), 200).await?;
            ids.into_iter()
                .map(|id| {
                    let token = sign(&id, &dps_core::sas::derive_device_key(&key, &id)?)?;
                    Ok(Device::sas(id, token))
                })
                .collect()
        }
        Attestation::Individual => {
            let keyed: Vec<(String, String)> = ids.into_iter().map(|id| (id, dps_core::sas::generate_key())).collect();
            let enrollments = keyed
                .iter()
                .map(|(id, key)| {
                    json!({"registrationId": id, "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}}})
                })
                .collect();
            create_individual(service, enrollments, concurrency).await?;
            keyed.into_iter().map(|(id, key)| Ok(Device::sas(id.clone(), sign(&id, &key)?))).collect()
        }
        Attestation::X509Group | Attestation::X509Individual => bail!("X.509 devices are enrolled by enroll_x509"),
    }
}

/// Create `count` X.509 devices' enrollments under the prefix `run`, with certificates of `keys`: a group whose
/// signing certificate is `ca` (generated for the run when `None`), or one individual enrollment per device
/// holding its self-signed certificate. Returns the devices with their certificates and keys.
pub async fn enroll_x509(
    service: &Service,
    run: &str,
    count: usize,
    attestation: Attestation,
    keys: &Keys,
    ca: Option<Ca>,
    concurrency: usize,
) -> anyhow::Result<Vec<Device>> {
    let ids = (0..count).map(|i| format!("{run}-dev-{i}"));
    match attestation {
        Attestation::X509Group => {
            let ca = match ca {
                Some(ca) => ca,
                None => Ca::generate(run, keys.kind())?,
            };
            let group = json!({
                "enrollmentGroupId": run,
                "attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": ca.pem}}}},
            });
            let mut conn = service.connect().await?;
            service.call(&mut conn, "PUT", &format!("/enrollmentGroups/{run}"), Some(&group), 200).await?;
            ids.map(|id| Ok(Device::x509(id.clone(), ca.leaf(&id, keys)?.tls))).collect()
        }
        Attestation::X509Individual => {
            if ca.is_some() {
                bail!("an individual X.509 enrollment holds the device's own (self-signed) certificate: no CA");
            }
            let mut certified = Vec::with_capacity(count);
            for id in ids {
                let cert = self_signed(&id, keys)?;
                certified.push((id, cert));
            }
            let enrollments = certified
                .iter()
                .map(|(id, cert)| {
                    json!({"registrationId": id, "attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": cert.pem}}}}})
                })
                .collect();
            create_individual(service, enrollments, concurrency).await?;
            Ok(certified.into_iter().map(|(id, cert)| Device::x509(id, cert.tls)).collect())
        }
        Attestation::Group | Attestation::Individual => bail!("symmetric-key devices are enrolled by enroll"),
    }
}

/// Create individual enrollments in bulk requests of [`BULK`], with up to 8 requests in flight.
async fn create_individual(service: &Service, enrollments: Vec<Value>, concurrency: usize) -> anyhow::Result<()> {
    let chunks: Vec<Vec<Value>> = enrollments.chunks(BULK).map(<[_]>::to_vec).collect();
    let chunks = Arc::new(std::sync::Mutex::new(chunks));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, 8) {
        let (chunks, service) = (chunks.clone(), service.clone());
        workers.spawn(async move {
            let mut conn = service.connect().await?;
            loop {
                let Some(chunk) = chunks.lock().unwrap_or_else(|p| p.into_inner()).pop() else { break };
                let body = json!({"mode": "create", "enrollments": chunk});
                let answer = service.call(&mut conn, "POST", "/enrollments", Some(&body), 200).await?;
                if answer["isSuccessful"] != true {
                    bail!("bulk enrollment failed: {answer}");
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}
