//! A local HTTP server that records every request and answers through a handler the test gives.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::Response;

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

pub type Answer = Pin<Box<dyn Future<Output = Response> + Send>>;

/// A running server: its base URL and what it received.
pub struct Server {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// Serve on a free port of 127.0.0.1 until the test ends.
pub async fn serve(answer: impl Fn(Recorded) -> Answer + Send + Sync + 'static) -> Server {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(answer);
    let seen = requests.clone();
    let app = axum::Router::new().fallback(move |request: Request| {
        let (answer, seen) = (answer.clone(), seen.clone());
        async move {
            let (parts, body) = request.into_parts();
            let body = to_bytes(body, 1 << 20).await.unwrap_or_default().to_vec();
            let recorded = Recorded {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or_default().to_owned(),
                headers: parts.headers,
                body,
            };
            seen.lock().unwrap().push(recorded.clone());
            answer(recorded).await
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { url, requests }
}

/// A response with `status`, optional JSON and extra headers.
pub fn reply(status: u16, json: Option<serde_json::Value>, headers: &[(&str, &str)]) -> Response {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    match json {
        Some(json) => {
            builder.header("Content-Type", "application/json; charset=utf-8").body(Body::from(json.to_string()))
        }
        None => builder.body(Body::empty()),
    }
    .unwrap()
}
