//! KmsSecretBox against moto's KMS (a moto server started for this test binary, as the store's tests start it):
//! credentials sealed by one function open in another, the ciphertext reveals nothing, tampering and another
//! key are refused, and a warm function keeps what it opened.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_kms::Client;
use aws_sdk_kms::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_kms::config::{ConfigBag, Credentials, Intercept, Region};
use aws_sdk_kms::error::BoxError;
use dps_core::hubs::SecretBox;
use dps_lambda::secrets::KmsSecretBox;

/// Kills the server when our end of its stdin closes (the test binary exited, however it exited).
const WRAPPER: &str =
    r#""$0" -H 127.0.0.1 -p "$1" >"$2" 2>&1 </dev/null & pid=$!; cat >/dev/null; kill $pid 2>/dev/null; wait $pid"#;

static MOTO: OnceLock<(String, Mutex<(Child, ChildStdin)>)> = OnceLock::new();

fn moto_endpoint() -> String {
    let (endpoint, _) = MOTO.get_or_init(|| {
        let script = std::env::var_os("DPS_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../.venv/bin/moto_server"));
        let mut head = [0u8; 2];
        let ok = std::fs::File::open(&script).and_then(|mut f| f.read(&mut head)).is_ok();
        assert!(ok, "moto is not installed ({} missing): run scripts/setup/moto.sh", script.display());
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).unwrap().port();
        let log = std::env::temp_dir().join(format!("dps-lambda-moto-{}-{port}.log", std::process::id()));
        let mut child = Command::new("sh")
            .args(["-c", WRAPPER])
            .arg(&script)
            .arg(port.to_string())
            .arg(&log)
            .stdin(Stdio::piped())
            .spawn()
            .expect("start moto_server");
        let stdin = child.stdin.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let output = || std::fs::read_to_string(&log).unwrap_or_default();
            assert!(Instant::now() < deadline, "moto_server did not start: {}", output());
            std::thread::sleep(Duration::from_millis(100));
        }
        (format!("http://127.0.0.1:{port}"), Mutex::new((child, stdin)))
    });
    endpoint.clone()
}

fn client() -> Client {
    let config = aws_sdk_kms::config::Builder::new()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .endpoint_url(moto_endpoint())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(config)
}

async fn new_key() -> String {
    let key = client().create_key().description("hub secrets test").send().await.unwrap();
    key.key_metadata().unwrap().arn().unwrap().to_owned()
}

const CONNECTION_STRING: &str = "HostName=h.azure-devices.net;SharedAccessKeyName=r;SharedAccessKey=c2VjcmV0LWtleQ==";

#[tokio::test]
async fn seals_with_kms_and_opens_in_another_function() {
    let key = new_key().await;
    let service = KmsSecretBox::new(client(), &key);
    let sealed = service.seal(CONNECTION_STRING).await.unwrap();
    assert!(sealed.starts_with("kms:"), "{sealed}");
    assert!(!sealed.contains("SharedAccessKey") && !sealed.contains("c2VjcmV0LWtleQ"), "{sealed}");
    assert_ne!(sealed, service.seal(CONNECTION_STRING).await.unwrap(), "KMS ciphertexts are randomised");

    let device = KmsSecretBox::new(client(), &key);
    assert_eq!(device.open(&sealed).await.unwrap(), CONNECTION_STRING);

    let other = KmsSecretBox::new(client(), new_key().await);
    let err = other.open(&sealed).await.unwrap_err().to_string();
    assert!(!err.contains("c2VjcmV0LWtleQ"), "{err}");
    for garbage in ["aes256gcm:AAAA", "kms:not base64!", "kms:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        assert!(device.open(garbage).await.is_err(), "{garbage}");
    }
}

/// Counts the KMS calls a client makes.
#[derive(Debug, Clone, Default)]
struct CountCalls(Arc<AtomicUsize>);

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "CountCalls"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_warm_function_keeps_what_it_opened() {
    let key = new_key().await;
    let sealed = KmsSecretBox::new(client(), &key).seal(CONNECTION_STRING).await.unwrap();
    let calls = CountCalls::default();
    let counted = Client::from_conf(client().config().to_builder().interceptor(calls.clone()).build());
    let warm = KmsSecretBox::new(counted, &key);
    for _ in 0..3 {
        assert_eq!(warm.open(&sealed).await.unwrap(), CONNECTION_STRING);
    }
    assert_eq!(calls.0.load(Ordering::SeqCst), 1, "one Decrypt per warm instance and sealed value");
}
