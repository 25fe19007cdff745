//! Fault injection at the HTTP layer: chosen attempts never reach the server and get a DynamoDB error
//! response instead, exactly as if DynamoDB had answered it (the SDK's retry classifiers see a real response).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use dps_core::store::EnrollmentStore;

/// A DynamoDB error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 400 ProvisionedThroughputExceededException (throttling, retried by the SDK).
    Throttle,
    /// 500 InternalServerError (transient, retried by the SDK).
    ServerError,
    /// The request reaches the server and is applied, but its response is lost: the client sees a 500
    /// InternalServerError (an ambiguous failure, retried by the SDK).
    LoseResponse,
    /// 400 TransactionCanceledException whose reasons say the second item was throttled (not retried by the
    /// SDK; the store retries such cancellations itself).
    TransactionThrottled,
}

impl Fault {
    fn response(self) -> HttpResponse {
        let (status, code, extra) = match self {
            Fault::Throttle => (400, "ProvisionedThroughputExceededException", ""),
            Fault::ServerError | Fault::LoseResponse => (500, "InternalServerError", ""),
            Fault::TransactionThrottled => (
                400,
                "TransactionCanceledException",
                r#","CancellationReasons":[{"Code":"None"},{"Code":"ThrottlingError","Message":"injected"}]"#,
            ),
        };
        let body =
            format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"injected fault"{extra}}}"#);
        let mut response = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body));
        response.headers_mut().insert("content-type", "application/x-amz-json-1.0");
        response.headers_mut().insert("x-amzn-requestid", "injected");
        response
    }
}

/// Which HTTP attempts fail: attempts are numbered from 1 in the order they are made.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    attempts: Arc<AtomicUsize>,
    faults: Arc<Mutex<Vec<(usize, Fault)>>>,
}

impl FaultPlan {
    /// Fail `count` consecutive attempts starting with the `first`-th attempt from now.
    pub fn fail(&self, first: usize, count: usize, fault: Fault) {
        let base = self.attempts.load(Ordering::SeqCst);
        let mut faults = self.faults.lock().unwrap();
        faults.extend((0..count).map(|i| (base + first + i, fault)));
    }

    /// Fail every attempt from now on until [`FaultPlan::heal`].
    pub fn fail_all(&self, fault: Fault) {
        self.fail(1, 1_000_000, fault);
    }

    /// Stop injecting.
    pub fn heal(&self) {
        self.faults.lock().unwrap().clear();
    }

    /// Attempts made so far (faulted ones included).
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    /// `inner`, with this plan applied to every attempt.
    pub fn client(&self, inner: SharedHttpClient) -> SharedHttpClient {
        SharedHttpClient::new(FaultyClient { inner, plan: self.clone() })
    }

    fn next(&self) -> Option<Fault> {
        let n = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        self.faults.lock().unwrap().iter().find(|(at, _)| *at == n).map(|(_, f)| *f)
    }
}

#[derive(Debug)]
struct FaultyClient {
    inner: SharedHttpClient,
    plan: FaultPlan,
}

impl HttpClient for FaultyClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        let inner = self.inner.http_connector(settings, components);
        SharedHttpConnector::new(FaultyConnector { inner, plan: self.plan.clone() })
    }
}

#[derive(Debug)]
struct FaultyConnector {
    inner: SharedHttpConnector,
    plan: FaultPlan,
}

impl HttpConnector for FaultyConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        match self.plan.next() {
            Some(Fault::LoseResponse) => {
                let sent = self.inner.call(request);
                HttpConnectorFuture::new(async move {
                    let _lost = sent.await;
                    Ok(Fault::LoseResponse.response())
                })
            }
            Some(fault) => HttpConnectorFuture::ready(Ok(fault.response())),
            None => self.inner.call(request),
        }
    }
}
