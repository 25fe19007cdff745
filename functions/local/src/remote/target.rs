//! Which deployment a client command talks to: `--connection-string` (or `DPS_CONNECTION_STRING`), else
//! `--profile` (or `DPS_PROFILE`) from the profiles file, else the `dps serve` running on `--data-dir`, found
//! through the `serve.json` it writes there. `--endpoint` and `--ca-file` override what a profile or the local
//! server say.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use dps_client::{Client, ClientOptions, ConnectionString};
use dps_core::model::Instance;
use serde::{Deserialize, Serialize};

use super::Connect;
use crate::cli::Global;

/// The file in the data dir through which a running `dps serve` tells local client commands where it is.
const SERVE_FILE: &str = "serve.json";

/// What a running `dps serve` writes to `<data-dir>/serve.json` (mode 0600: it holds the owner keys) and
/// removes when it stops.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServeFile {
    /// The service API's listener (`https://127.0.0.1:8443`).
    pub service_url: String,
    /// The generated CA that signed the server certificate, when the server uses one.
    pub ca_certificate: Option<PathBuf>,
    /// Each instance's name and owner connection string.
    pub instances: Vec<ServedInstance>,
}

/// Removes `serve.json` when the server stops.
#[derive(Debug)]
pub struct ServeFileGuard(PathBuf);

/// One instance in [`ServeFile`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServedInstance {
    /// Instance name.
    pub name: String,
    /// Owner connection string.
    pub connection_string: String,
}

impl ServeFile {
    /// Write the file for a server listening for the service API on `service_addr`; removed when the guard is
    /// dropped.
    pub fn write(
        data_dir: &Path,
        service_addr: std::net::SocketAddr,
        ca: Option<&Path>,
        instances: &[Instance],
    ) -> anyhow::Result<ServeFileGuard> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let host = match service_addr.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let file = Self {
            service_url: format!("https://{host}:{}", service_addr.port()),
            ca_certificate: ca.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())),
            instances: instances
                .iter()
                .map(|i| {
                    Ok(ServedInstance { name: i.name.clone(), connection_string: crate::store::connection_string(i)? })
                })
                .collect::<anyhow::Result<_>>()?,
        };
        let path = data_dir.join(SERVE_FILE);
        let tmp = data_dir.join(format!("{SERVE_FILE}.tmp"));
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        out.write_all(&serde_json::to_vec_pretty(&file)?)?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(ServeFileGuard(path))
    }
}

impl Drop for ServeFileGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A profile in the profiles file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Profile {
    connection_string: String,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    #[serde(default)]
    profiles: std::collections::BTreeMap<String, Profile>,
}

/// `$DPS_PROFILES`, else `$XDG_CONFIG_HOME/dps/profiles.toml`, else `~/.config/dps/profiles.toml`.
pub fn profiles_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DPS_PROFILES") {
        return Some(PathBuf::from(p));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("dps").join("profiles.toml"))
}

/// Whether a `dps serve` announced itself on `--data-dir` (its `serve.json` is there).
pub fn local_server_running(global: &Global) -> bool {
    global.data_dir.join(SERVE_FILE).is_file()
}

/// Whether the command names its deployment itself (else it means the local server).
pub fn explicit(connect: &Connect) -> bool {
    connect.connection_string.is_some() || connect.profile.is_some()
}

/// The client for the deployment `connect` names.
pub async fn client(connect: &Connect, global: &Global) -> anyhow::Result<Client> {
    client_with(connect, global, dps_client::Retries::default()).await
}

/// [`client`] with its own retry policy.
pub async fn client_with(connect: &Connect, global: &Global, retry: dps_client::Retries) -> anyhow::Result<Client> {
    let (connection, mut endpoint, mut ca_file) = if let Some(text) = &connect.connection_string {
        (ConnectionString::parse(text)?, None, None)
    } else if let Some(name) = &connect.profile {
        let profile = profile(name)?;
        (ConnectionString::parse(&profile.connection_string)?, profile.endpoint, profile.ca_file)
    } else {
        local(global, &connect.instance)?
    };
    if connect.endpoint.is_some() {
        endpoint = connect.endpoint.clone();
    }
    if connect.ca_file.is_some() {
        ca_file = connect.ca_file.clone();
    }
    let mut options = ClientOptions::new(connection);
    options.endpoint = endpoint;
    options.retry = retry;
    if let Some(path) = ca_file {
        options.ca_pem =
            Some(std::fs::read(&path).with_context(|| format!("reading the CA certificate {}", path.display()))?);
    }
    Ok(Client::new(options).await?)
}

fn profile(name: &str) -> anyhow::Result<Profile> {
    let path = profiles_path().context("no profiles file: set HOME, XDG_CONFIG_HOME or DPS_PROFILES")?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the profiles file {} (for --profile {name})", path.display()))?;
    let mut file: ProfilesFile =
        toml::from_str(&text).with_context(|| format!("parsing the profiles file {}", path.display()))?;
    let known: Vec<String> = file.profiles.keys().cloned().collect();
    file.profiles
        .remove(name)
        .with_context(|| format!("no profile '{name}' in {} (it has: {})", path.display(), known.join(", ")))
}

/// The running local server's instance `instance`, its service URL and CA.
fn local(global: &Global, instance: &str) -> anyhow::Result<(ConnectionString, Option<String>, Option<PathBuf>)> {
    let path = global.data_dir.join(SERVE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no deployment given, and no `dps serve` runs on the data dir {}: start it, or give \
             --connection-string (DPS_CONNECTION_STRING) or --profile",
            global.data_dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let file: ServeFile = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let Some(found) = file.instances.iter().find(|i| i.name.eq_ignore_ascii_case(instance)) else {
        let names: Vec<&str> = file.instances.iter().map(|i| i.name.as_str()).collect();
        bail!("the local server has no instance '{instance}' (it has: {})", names.join(", "));
    };
    Ok((ConnectionString::parse(&found.connection_string)?, Some(file.service_url), file.ca_certificate))
}
