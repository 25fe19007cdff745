//! Where modules and policy metadata live: modules by content hash (shared, immutable), metadata per instance
//! and policy name. A data directory locally; S3 on AWS (feature `s3`).
//!
//! Layout (the same keys in both): `modules/{sha256}.wasm` and `instances/{idScope}/policies/{name}.json`,
//! the name lowercased (policy names are case-insensitive).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use dps_core::policy::PolicyInfo;
use dps_core::{Error, Result};

/// Storage of modules and policy metadata.
#[async_trait]
pub trait ModuleStorage: Send + Sync + 'static {
    /// Store a module under its hash (idempotent).
    async fn put_module(&self, sha256: &str, bytes: &[u8]) -> Result<()>;
    /// A module by hash.
    async fn get_module(&self, sha256: &str) -> Result<Option<Vec<u8>>>;
    /// Create or replace a policy's metadata.
    async fn put_policy(&self, scope: &str, info: &PolicyInfo) -> Result<()>;
    /// A policy's metadata.
    async fn get_policy(&self, scope: &str, name: &str) -> Result<Option<PolicyInfo>>;
    /// Every policy of an instance.
    async fn list_policies(&self, scope: &str) -> Result<Vec<PolicyInfo>>;
    /// Delete a policy's metadata (its module stays: other names may share it); false if absent.
    async fn delete_policy(&self, scope: &str, name: &str) -> Result<bool>;
}

/// Key of a module.
pub fn module_key(sha256: &str) -> String {
    format!("modules/{sha256}.wasm")
}

/// Key prefix of an instance's policies.
pub fn policies_prefix(scope: &str) -> String {
    format!("instances/{scope}/policies/")
}

/// Key of a policy's metadata.
pub fn policy_key(scope: &str, name: &str) -> String {
    format!("{}{}.json", policies_prefix(scope), name.to_ascii_lowercase())
}

pub(crate) fn decode_info(bytes: &[u8]) -> Result<PolicyInfo> {
    serde_json::from_slice(bytes).map_err(|e| Error::internal(format!("corrupt policy metadata: {e}")))
}

pub(crate) fn encode_info(info: &PolicyInfo) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(info).map_err(|e| Error::internal(format!("cannot encode policy metadata: {e}")))
}

/// Modules and metadata as files under a directory (the local server's data directory).
pub struct DirStorage {
    root: PathBuf,
}

impl DirStorage {
    /// Storage under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match tokio::fs::read(self.path(key)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(key, e)),
        }
    }

    /// Write through a temporary file and a rename, so readers never see half a file.
    async fn write(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir).await.map_err(|e| io_error(key, e))?;
        let temp = dir.join(format!(".{}.tmp", uuid_like()));
        tokio::fs::write(&temp, bytes).await.map_err(|e| io_error(key, e))?;
        tokio::fs::rename(&temp, &path).await.map_err(|e| io_error(key, e))
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn io_error(key: &str, e: std::io::Error) -> Error {
    Error::Unavailable(format!("policy storage ({key}): {e}"))
}

#[async_trait]
impl ModuleStorage for DirStorage {
    async fn put_module(&self, sha256: &str, bytes: &[u8]) -> Result<()> {
        let key = module_key(sha256);
        if tokio::fs::try_exists(self.path(&key)).await.unwrap_or(false) {
            return Ok(());
        }
        self.write(&key, bytes).await
    }

    async fn get_module(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        self.read(&module_key(sha256)).await
    }

    async fn put_policy(&self, scope: &str, info: &PolicyInfo) -> Result<()> {
        self.write(&policy_key(scope, &info.name), &encode_info(info)?).await
    }

    async fn get_policy(&self, scope: &str, name: &str) -> Result<Option<PolicyInfo>> {
        self.read(&policy_key(scope, name)).await?.map(|b| decode_info(&b)).transpose()
    }

    async fn list_policies(&self, scope: &str) -> Result<Vec<PolicyInfo>> {
        let prefix = policies_prefix(scope);
        let mut entries = match tokio::fs::read_dir(self.path(&prefix)).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&prefix, e)),
        };
        let mut all = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(|e| io_error(&prefix, e))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") && !name.starts_with('.') {
                let bytes = tokio::fs::read(entry.path()).await.map_err(|e| io_error(&prefix, e))?;
                all.push(decode_info(&bytes)?);
            }
        }
        all.sort_by_key(|a| a.name.to_ascii_lowercase());
        Ok(all)
    }

    async fn delete_policy(&self, scope: &str, name: &str) -> Result<bool> {
        let key = policy_key(scope, name);
        match tokio::fs::remove_file(self.path(&key)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(&key, e)),
        }
    }
}
