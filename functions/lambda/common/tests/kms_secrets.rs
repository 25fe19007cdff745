//! KmsSecretBox against moto's KMS (dps-test-support's moto server, one per test binary):
//! credentials sealed by one function open in another, the ciphertext reveals nothing, tampering and another
//! key are refused, and a warm function keeps what it opened.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_kms::Client;
use aws_sdk_kms::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_kms::config::{ConfigBag, Credentials, Intercept, Region};
use aws_sdk_kms::error::BoxError;
use dps_core::hubs::SecretBox;
use dps_lambda::secrets::KmsSecretBox;
use dps_test_support::moto_endpoint;

fn client() -> Client {
    let config = aws_sdk_kms::config::Builder::new()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .endpoint_url(moto_endpoint())
        .http_client(dps_store_dynamodb::http_client())
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
