//! HTTP/1.1 over TLS to one endpoint: a connection carries one request at a time, as a device's does.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use serde_json::Value;
use tokio_rustls::TlsConnector;

/// Where requests go: an `https://host[:port]` base URL, resolved once, with the TLS settings to reach it.
#[derive(Clone)]
pub struct Endpoint {
    addr: SocketAddr,
    host: String,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
}

impl Endpoint {
    /// `url` is `https://host[:port]` (no path); `ca` a PEM file of the CAs to trust, else the public web roots.
    pub async fn new(url: &str, ca: Option<&Path>) -> anyhow::Result<Self> {
        let uri: http::Uri = url.parse().with_context(|| format!("not a URL: {url}"))?;
        if uri.scheme_str() != Some("https") {
            bail!("the URL must be https://host[:port]: {url}");
        }
        let host = uri.host().context("the URL has no host")?.trim_matches(['[', ']']).to_string();
        let port = uri.port_u16().unwrap_or(443);
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            Some(ca) => {
                let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    roots.add(cert?)?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // A device that registers for the first time has no session to resume; neither do ours.
        config.resumption = rustls::client::Resumption::disabled();
        let server_name = ServerName::try_from(host.clone())?;
        let host = match uri.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        Ok(Self { addr, host, server_name, tls: Arc::new(config) })
    }

    /// The `Host` the endpoint is called by.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A new TCP connection and TLS handshake.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        self.connect_as(None).await
    }

    /// A new TCP connection and TLS handshake, presenting `certificate` (chain and key) when given: an X.509
    /// device's connection.
    pub async fn connect_as(&self, certificate: Option<&Arc<CertifiedKey>>) -> anyhow::Result<Connection> {
        let tls = match certificate {
            None => self.tls.clone(),
            Some(cert) => {
                let mut config = rustls::ClientConfig::clone(&self.tls);
                config.client_auth_cert_resolver = Arc::new(SingleCertAndKey::from(cert.clone()));
                Arc::new(config)
            }
        };
        let tcp =
            tokio::net::TcpStream::connect(self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let stream = TlsConnector::from(tls).connect(self.server_name.clone(), tcp).await.context("TLS handshake")?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Connection { sender })
    }
}

/// An answer: status, headers, `Retry-After` (seconds) and the JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// `Retry-After`, if given.
    pub retry_after: Option<u64>,
    /// The body.
    pub body: Value,
}

/// One open connection.
pub struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Send one request and read the whole answer. `host` is the `Host` header (the service API routes by it).
    pub async fn call(
        &mut self,
        method: &str,
        host: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        self.sender.ready().await?;
        let mut request = http::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("host", host)
            .header("accept", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let bytes = match body {
            Some(body) => {
                request = request.header("content-type", "application/json; charset=utf-8");
                Bytes::from(serde_json::to_vec(body)?)
            }
            None => Bytes::new(),
        };
        let response = self.sender.send_request(request.body(Full::new(bytes))?).await?;
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await?.to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer { status, headers: parts.headers, retry_after, body })
    }
}
