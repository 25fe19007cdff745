//! S3 module storage against moto's S3 server (feature `s3`). Started once per binary on a free port; moto
//! missing fails the tests with the setup hint (never skipped).

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use dps_core::allocator::CustomAllocator;
use dps_core::policy::PolicyRegistry;
use dps_policy::codes::POLICY_NOT_FOUND;
use dps_policy::s3::S3Storage;
use dps_policy::{ModuleStorage, PolicyAllocator, PolicySettings};

use crate::support::*;

/// Kills the server when our end of its stdin closes (the test binary exited, however it exited).
const WRAPPER: &str =
    r#""$0" -H 127.0.0.1 -p "$1" >"$2" 2>&1 </dev/null & pid=$!; cat >/dev/null; kill $pid 2>/dev/null; wait $pid"#;

struct Moto {
    endpoint: String,
    _child: Mutex<(Child, ChildStdin)>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

fn moto_server() -> PathBuf {
    std::env::var_os("DPS_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server"))
}

fn endpoint() -> String {
    MOTO.get_or_init(|| {
        let script = moto_server();
        let mut head = [0u8; 2];
        let ok = std::fs::File::open(&script).and_then(|mut f| f.read(&mut head)).is_ok();
        assert!(ok, "moto is not installed ({} missing): run scripts/setup/moto.sh", script.display());
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).unwrap().port();
        let log = std::env::temp_dir().join(format!("dps-policy-moto-{}-{port}.log", std::process::id()));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg(&script)
            .arg(port.to_string())
            .arg(&log)
            .stdin(Stdio::piped())
            .spawn()
            .expect("start moto_server");
        let stdin = child.stdin.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { endpoint: format!("http://127.0.0.1:{port}"), _child: Mutex::new((child, stdin)) }
    })
    .endpoint
    .clone()
}

async fn storage(bucket: &str) -> Arc<S3Storage> {
    let storage = S3Storage::for_emulator(&endpoint(), bucket);
    storage.create_bucket().await.unwrap();
    Arc::new(storage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_storage_round_trips_modules_and_metadata() {
    let storage = storage("policies-a").await;
    assert!(storage.get_module("00").await.unwrap().is_none());
    assert!(storage.get_policy("0ne00000001", "x").await.unwrap().is_none());
    assert!(storage.list_policies("0ne00000001").await.unwrap().is_empty());

    let allocator = PolicyAllocator::new(storage.clone(), PolicySettings::default()).unwrap();
    let info = allocator.upload(&instance(false), "Tenants", example("tenant_prefix")).await.unwrap();
    assert_eq!(storage.get_module(&info.sha256).await.unwrap().unwrap(), example("tenant_prefix"));
    assert_eq!(allocator.list(&instance(false)).await.unwrap(), vec![info.clone()]);

    // A cold allocator over the same bucket loads and compiles the module from S3.
    let cold = PolicyAllocator::new(storage.clone(), PolicySettings::default()).unwrap();
    let r =
        cold.allocate(&instance(false), &policy("tenants"), &typed(&request("globex-1", None, &HUBS))).await.unwrap();
    assert_eq!(r.iot_hub_host_name, "globex-hub.example.net");

    assert!(allocator.delete(&instance(false), "TENANTS").await.unwrap());
    assert!(!allocator.delete(&instance(false), "tenants").await.unwrap());
    let gone =
        allocator.allocate(&instance(false), &policy("tenants"), &typed(&request("globex-1", None, &HUBS))).await;
    assert_eq!(gone.unwrap_err().code, POLICY_NOT_FOUND);
    assert!(storage.get_module(&info.sha256).await.unwrap().is_some(), "modules outlive names");
}
