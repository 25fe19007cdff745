//! `dps serve`: first-run setup, TLS listeners serving the `dps-api` routers, graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::response::{IntoResponse, Response};
use dps_core::Settings;
use dps_core::model::Instance;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::cli::{Global, ServeArgs};
use crate::store;
use crate::tls::{self, TlsFiles};

/// How long a client may take to complete the TLS handshake, and to send request headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Per-connection limits shared by all listeners.
struct Limits {
    request_timeout: Duration,
    connections: Arc<Semaphore>,
}

/// One bound listener and what it serves.
struct Listener {
    what: &'static str,
    socket: TcpListener,
    router: Router,
}

pub async fn run(global: &Global, args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings { serving_region: args.region.clone(), cache_ttl: Duration::from_secs(args.cache_ttl) };
    let dps = store::open(&global.data_dir, settings, args.allow_private_webhook_targets)?;
    let instances = store::ensure_default_instance(&dps, &global.service_host_name).await?;

    let files = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => TlsFiles { ca: None, cert: cert.clone(), key: key.clone() },
        _ => {
            let mut names: Vec<String> = instances.iter().map(|i| i.service_host_name.clone()).collect();
            names.extend(args.tls_san.iter().cloned());
            tls::ensure_local_pki(&global.data_dir.join("tls"), &names)?
        }
    };
    let acceptor = TlsAcceptor::from(tls::server_config(&files)?);

    let mut listeners = Vec::new();
    match args.service_listen {
        None => listeners.push(bind("device+service", args.listen, dps_api::app(dps.clone())).await?),
        Some(service_addr) => {
            listeners.push(bind("device", args.listen, dps_api::device_router(dps.clone())).await?);
            listeners.push(bind("service", service_addr, dps_api::service_router(dps.clone())).await?);
        }
    }
    // Signal handlers go in before anyone learns we are up, so an early SIGTERM is still a graceful one.
    let signals = Signals::install();
    announce(&args, &files, &instances, &listeners)?;
    for l in &listeners {
        tracing::info!(listener = l.what, addr = %l.socket.local_addr()?, "listening");
    }

    let limits = Arc::new(Limits {
        request_timeout: Duration::from_secs(args.request_timeout.max(1)),
        connections: Arc::new(Semaphore::new(args.max_connections.max(1))),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let grace = Duration::from_secs(args.shutdown_grace);
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        tasks.spawn(serve_listener(listener, acceptor.clone(), limits.clone(), stop_rx.clone(), grace));
    }

    let signal = signals.recv().await;
    tracing::info!(signal, "shutting down: no new connections, letting in-flight requests finish");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    drop(dps);
    tracing::info!("stopped");
    Ok(())
}

async fn bind(what: &'static str, addr: SocketAddr, router: Router) -> anyhow::Result<Listener> {
    let socket = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    Ok(Listener { what, socket, router })
}

/// Accept TLS connections until told to stop, then wait (at most `grace`) for open connections to finish.
async fn serve_listener(
    listener: Listener,
    acceptor: TlsAcceptor,
    limits: Arc<Limits>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let Listener { what, socket, router } = listener;
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HANDSHAKE_TIMEOUT);
    builder.http2().timer(TokioTimer::new());

    loop {
        let permit = tokio::select! {
            permit = limits.connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = stopped(&mut stop) => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let (router, timeout) = (router.clone(), limits.request_timeout);
        let service = hyper::service::service_fn(move |request| handle(router.clone(), timeout, request));
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(err) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(socket);
    tracing::info!(listener = what, open = graceful.count(), "stopped accepting");
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(listener = what, "connections still open after the grace period; closing them");
    }
}

/// The router as a hyper service, with a per-request deadline answered by 503 in the Azure error shape.
async fn handle(
    router: Router,
    timeout: Duration,
    request: http::Request<hyper::body::Incoming>,
) -> Result<Response, Infallible> {
    match tokio::time::timeout(timeout, router.oneshot(request)).await {
        Ok(result) => result,
        Err(_) => Ok(timed_out()),
    }
}

/// The deadline answer, in the same shape as the router's errors: a tracking ID in the body, the
/// `x-ms-request-id` header and the log line, and the error table's code for `Unavailable`.
fn timed_out() -> Response {
    let tracking_id = uuid::Uuid::new_v4().to_string();
    tracing::warn!(tracking_id = %tracking_id, status = 503, "request timed out");
    let now =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let body = json!({
        "errorCode": 503001,
        "trackingId": tracking_id,
        "message": "The request took too long; retry later",
        "timestampUtc": now,
    });
    let headers = [
        (http::header::RETRY_AFTER, "1".to_string()),
        (http::HeaderName::from_static(dps_api::REQUEST_ID_HEADER), tracking_id.clone()),
        (http::HeaderName::from_static("x-ms-error-code"), "503001".to_string()),
    ];
    (http::StatusCode::SERVICE_UNAVAILABLE, headers, axum::Json(body)).into_response()
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A closed channel also means stop: the server is going away.
    let _ = stop.wait_for(|stop| *stop).await.map(drop);
}

/// SIGINT and SIGTERM, watched from the moment of installation.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let watch = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch {name}");
                None
            }
        };
        Self { term: watch(SignalKind::terminate(), "SIGTERM"), int: watch(SignalKind::interrupt(), "SIGINT") }
    }

    async fn recv(mut self) -> &'static str {
        async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(s) => drop(s.recv().await),
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.term) => "SIGTERM",
            _ = next(&mut self.int) => "SIGINT",
        }
    }
}

/// Tell the operator how to reach the service: a banner, or one JSON line with `--print-json`. Stdout, not logs:
/// it carries a connection string (a secret), which the logs never do.
fn announce(args: &ServeArgs, files: &TlsFiles, instances: &[Instance], listeners: &[Listener]) -> anyhow::Result<()> {
    let addr = |i: usize| listeners.get(i).and_then(|l| l.socket.local_addr().ok());
    let listen = addr(0).context("no listener")?;
    let service_listen = if args.service_listen.is_some() { addr(1) } else { None };
    let service_port = service_listen.unwrap_or(listen).port();
    let ca = files.ca.as_deref().map(absolute);
    let first = instances
        .iter()
        .find(|i| i.name == store::DEFAULT_INSTANCE)
        .or_else(|| instances.first())
        .context("no instance")?;
    let described: Vec<_> = instances
        .iter()
        .map(|i| {
            Ok(json!({
                "name": i.name,
                "idScope": i.id_scope,
                "serviceHostName": i.service_host_name,
                "serviceUrl": format!("https://{}:{service_port}", i.service_host_name),
                "connectionString": store::connection_string(i)?,
            }))
        })
        .collect::<anyhow::Result<_>>()?;

    if args.print_json {
        let line = json!({
            "listen": listen.to_string(),
            "deviceUrl": format!("https://{listen}"),
            "serviceListen": service_listen.map(|a| a.to_string()),
            "caCertificate": ca,
            "idScope": first.id_scope,
            "serviceHostName": first.service_host_name,
            "connectionString": store::connection_string(first)?,
            "instances": described,
        });
        println!("{line}");
        return Ok(());
    }
    let apis = if service_listen.is_some() { "device API" } else { "device API and service API" };
    println!("dps is serving the {apis} on https://{listen}");
    if let Some(addr) = service_listen {
        println!("  service API on https://{addr}");
    }
    for i in instances {
        println!();
        println!("instance '{}'", i.name);
        println!("  ID scope:           {}", i.id_scope);
        println!(
            "  service host name:  {} (service API: https://{}:{service_port})",
            i.service_host_name, i.service_host_name
        );
        println!("  connection string:  {}", store::connection_string(i)?);
        let hubs: Vec<&str> = i.linked_hubs.iter().map(|h| h.host_name.as_str()).collect();
        println!(
            "  linked hubs:        {}",
            if hubs.is_empty() {
                "(none: `dps hub link` or PUT /config/linkedHubs/{host})".to_string()
            } else {
                hubs.join(", ")
            }
        );
    }
    println!();
    match &ca {
        Some(ca) => println!("CA certificate: {ca}  (curl --cacert {ca}, NODE_EXTRA_CA_CERTS={ca})"),
        None => println!("TLS certificate: {}", files.cert.display()),
    }
    Ok(())
}

fn absolute(path: &Path) -> String {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string()
}
