//! `dps serve`: first-run setup, TLS listeners serving the `dps-api` routers, connection limits, graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::response::Response;
use dps_api::ApiError;
use dps_core::Settings;
use dps_core::model::Instance;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::cli::{Global, ServeArgs};
use crate::conn::{Activity, AddressCap, AddressSlot, ReadTimeout, Watched};
use crate::tls::{self, TlsFiles};
use crate::{mqtt, store};

/// How long an idle connection told to close may take to go before it is dropped.
const IDLE_CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Limits shared by all listeners: on connections (how many, how many per client address, how long each phase
/// may take) and on requests.
struct Limits {
    connections: Arc<Semaphore>,
    per_address: Arc<AddressCap>,
    tls_handshake_timeout: Duration,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    http2_keepalive_interval: Duration,
    http2_keepalive_timeout: Duration,
    body_read_timeout: Duration,
}

impl Limits {
    fn from_args(args: &ServeArgs) -> Self {
        let secs = Duration::from_secs;
        Self {
            connections: Arc::new(Semaphore::new(args.max_connections.max(1))),
            per_address: AddressCap::new(args.max_connections_per_address as usize),
            tls_handshake_timeout: secs(args.tls_handshake_timeout),
            first_byte_timeout: secs(args.first_byte_timeout),
            idle_timeout: secs(args.idle_timeout),
            http2_keepalive_interval: secs(args.http2_keepalive_interval),
            http2_keepalive_timeout: secs(args.http2_keepalive_timeout),
            body_read_timeout: secs(args.body_read_timeout),
        }
    }

    /// The HTTP/1.1 + HTTP/2 connection builder with hyper's own timeouts. An HTTP/1.1 request head must be
    /// complete within the idle timeout (hyper counts from the moment it waits for one, keep-alive included).
    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).keep_alive(true).header_read_timeout(self.idle_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.http2_keepalive_interval)
            .keep_alive_timeout(self.http2_keepalive_timeout);
        builder
    }
}

/// One bound listener and what it serves.
struct Listener {
    what: &'static str,
    socket: TcpListener,
    router: Router,
    /// Set on the MQTT listener: its connections speak MQTT to the device router instead of HTTP.
    mqtt: Option<Arc<dps_mqtt::Limits>>,
}

pub async fn run(global: &Global, args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings {
        serving_region: args.region.clone(),
        cache_ttl: Duration::from_secs(args.cache_ttl),
        max_token_lifetime: Duration::from_secs(args.max_token_lifetime.max(1)),
        max_groups_tried: args.max_groups_tried as usize,
        max_groups: args.max_groups as usize,
        failed_attestations_per_address: budget(args.failed_attestations_per_address, 10),
        failed_attestations_per_scope: budget(args.failed_attestations_per_scope, 5),
        tpm_challenge_ttl: Duration::from_secs(args.tpm_challenge_ttl),
    };
    let mut dps = store::open(&global.data_dir, settings, args.allow_private_webhook_targets)?
        .with_hubs(
            crate::hubs::connectors(args.aws_hubs, args.azure_hub_endpoint.as_deref(), args.allow_private_hub_targets)
                .await,
        )
        .with_secret_box(Arc::new(crate::hubs::secret_box(&global.data_dir)?));
    let events = args.events.queue().await?;
    if let Some(queue) = &events {
        dps = dps.with_events(queue.clone());
    }
    let prometheus = args.metrics_listen.map(|_| Arc::new(crate::metrics::Prometheus::new()));
    if let Some(p) = &prometheus {
        dps = dps.with_metrics(p.clone());
    }
    let instances = store::ensure_default_instance(&dps, &global.service_host_name).await?;

    let files = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => TlsFiles { ca: None, cert: cert.clone(), key: key.clone() },
        _ => {
            let mut names: Vec<String> = instances.iter().map(|i| i.service_host_name.clone()).collect();
            names.extend(args.tls_san.iter().cloned());
            tls::ensure_local_pki(&global.data_dir.join("tls"), &names)?
        }
    };
    let tls_config = tls::server_config(&files, args.tls_tickets)?;
    let acceptor = TlsAcceptor::from(tls_config.clone());
    // The deadline is the API crate's layer, the same one the Lambda functions serve through.
    let limit = Duration::from_secs(args.request_timeout.max(1));
    let measured = |door, router| match &prometheus {
        Some(p) => dps_api::with_request_metrics(router, door, p.clone()),
        None => router,
    };
    let deadline = |door, router| measured(door, dps_api::with_deadline(router, limit));
    use dps_core::metrics::FrontDoor;

    let mut listeners = Vec::new();
    match args.service_listen {
        None => listeners.push(bind("device+service", args.listen, deadline(None, dps_api::app(dps.clone()))).await?),
        Some(service_addr) => {
            let device = deadline(Some(FrontDoor::Device), dps_api::device_router(dps.clone()));
            listeners.push(bind("device", args.listen, device).await?);
            let service = deadline(Some(FrontDoor::Service), dps_api::service_router(dps.clone()));
            listeners.push(bind("service", service_addr, service).await?);
        }
    }
    if let Some(addr) = args.mqtt.mqtt_listen {
        let router = deadline(Some(FrontDoor::Mqtt), dps_api::device_router(dps.clone()));
        let mut listener = bind("mqtt", addr, router).await?;
        listener.mqtt = Some(Arc::new(args.mqtt.limits()));
        listeners.push(listener);
    }
    let mqtt_acceptor = TlsAcceptor::from(mqtt::tls_config(&tls_config));
    // Signal handlers go in before anyone learns we are up, so an early SIGTERM is still a graceful one.
    let signals = Signals::install();
    // Tells client commands on this data dir where the service API is (docs/cli.md); removed on stop. Written
    // before the announcement, so that whoever reads the banner can run client commands at once.
    let service = listeners.get(usize::from(args.service_listen.is_some())).context("no listener")?;
    let _serve_file = crate::remote::ServeFile::write(
        &global.data_dir,
        service.socket.local_addr()?,
        files.ca.as_deref(),
        &instances,
    )?;
    let metrics_socket = match args.metrics_listen {
        Some(addr) => Some(crate::metrics::bind(addr).await?),
        None => None,
    };
    let metrics_listen = metrics_socket.as_ref().and_then(|s| s.local_addr().ok());
    announce(&args, &files, &instances, &listeners, metrics_listen)?;
    if let (Some(socket), Some(p)) = (metrics_socket, prometheus) {
        tracing::info!(addr = ?metrics_listen, "serving metrics");
        crate::metrics::spawn(socket, p);
    }
    for l in &listeners {
        tracing::info!(listener = l.what, addr = %l.socket.local_addr()?, "listening");
    }

    let limits = Arc::new(Limits::from_args(&args));
    let (stop_tx, stop_rx) = watch::channel(false);
    let grace = Duration::from_secs(args.shutdown_grace);
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let acceptor = if listener.mqtt.is_some() { mqtt_acceptor.clone() } else { acceptor.clone() };
        tasks.spawn(serve_listener(listener, acceptor, limits.clone(), stop_rx.clone(), grace));
    }

    let signal = signals.recv().await;
    tracing::info!(signal, "shutting down: no new connections, letting in-flight requests finish");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    drop(dps);
    crate::events::drain(events, grace).await;
    tracing::info!("stopped");
    Ok(())
}

async fn bind(what: &'static str, addr: SocketAddr, router: Router) -> anyhow::Result<Listener> {
    let socket = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    Ok(Listener { what, socket, router, mqtt: None })
}

/// Accept TLS connections until told to stop, then wait (at most `grace`) for open connections to finish.
async fn serve_listener(
    listener: Listener,
    acceptor: TlsAcceptor,
    limits: Arc<Limits>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let Listener { what, socket, router, mqtt } = listener;
    let builder = limits.builder();
    let mut open = tokio::task::JoinSet::new();

    loop {
        while open.try_join_next().is_some() {}
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
        let Some(slot) = limits.per_address.claim(peer.ip()) else {
            // Closed before the handshake costs anything; the permit goes to the next client.
            tracing::debug!(%peer, "too many connections from this address; closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            tcp,
            peer,
            acceptor: acceptor.clone(),
            builder: builder.clone(),
            router: router.clone(),
            mqtt: mqtt.clone(),
            limits: limits.clone(),
            stop: stop.clone(),
            _held: (permit, slot),
        };
        open.spawn(connection.serve());
    }
    drop(socket);
    tracing::info!(listener = what, open = open.len(), "stopped accepting");
    let drained = async { while open.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(listener = what, "connections still open after the grace period; closing them");
    }
}

/// One accepted connection and what serving it needs.
struct Connection {
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    builder: auto::Builder<TokioExecutor>,
    router: Router,
    mqtt: Option<Arc<dps_mqtt::Limits>>,
    limits: Arc<Limits>,
    stop: watch::Receiver<bool>,
    /// The connection's share of `--max-connections` and of its address's cap, released when it ends.
    _held: (OwnedSemaphorePermit, AddressSlot),
}

impl Connection {
    /// TLS, then HTTP until the client is done, the connection has been idle too long, or the server stops.
    async fn serve(mut self) {
        let (peer, limits) = (self.peer, self.limits.clone());
        let stream = match tokio::time::timeout(limits.tls_handshake_timeout, self.acceptor.accept(self.tcp)).await {
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
        if let Some(mqtt_limits) = self.mqtt {
            let mut stop = self.stop;
            return mqtt::serve(stream, peer, self.router, &mqtt_limits, stopped(&mut stop)).await;
        }
        // The device's certificate chain, if it sent one (X.509 attestation judges it per request).
        let certificates = stream.get_ref().1.peer_certificates().map(|chain| {
            dps_api::ClientCertificates::Der(Arc::new(chain.iter().map(|c| c.as_ref().to_vec()).collect()))
        });
        let activity = Activity::new();
        let service = hyper::service::service_fn({
            let (router, limits, activity) = (self.router, limits.clone(), activity.clone());
            move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(dps_api::ClientAddress(peer.ip().to_canonical()));
                if let Some(certificates) = &certificates {
                    request.extensions_mut().insert(certificates.clone());
                }
                handle(router.clone(), limits.clone(), activity.clone(), request)
            }
        });
        let io = TokioIo::new(Watched::new(stream, activity.clone()));
        let connection = self.builder.serve_connection(io, service);
        tokio::pin!(connection);
        let idle = tokio::select! {
            result = connection.as_mut() => return finished(peer, result),
            _ = activity.expired(limits.first_byte_timeout, limits.idle_timeout) => true,
            _ = stopped(&mut self.stop) => false,
        };
        // HTTP/1.1 closes after the response in flight, HTTP/2 sends GOAWAY and lets open streams finish. An idle
        // connection has none: it gets a moment for the client's answer to the GOAWAY (h2 waits for a ping's
        // acknowledgement, which a hostile client never sends); at shutdown the grace period bounds it.
        tracing::debug!(%peer, idle, "closing the connection");
        connection.as_mut().graceful_shutdown();
        if idle {
            if let Ok(result) = tokio::time::timeout(IDLE_CLOSE_LINGER, connection).await {
                finished(peer, result);
            }
        } else {
            finished(peer, connection.await);
        }
    }
}

fn finished(peer: SocketAddr, result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}

/// The router as a hyper service: the request counted in flight on its connection until it is answered (the
/// answer must then be taken within the idle timeout: a client that stops reading is closed like an idle one),
/// its body under the read timeout (408); the deadline (503) is the router's own layer.
async fn handle(
    router: Router,
    limits: Arc<Limits>,
    activity: Arc<Activity>,
    request: http::Request<hyper::body::Incoming>,
) -> Result<Response, Infallible> {
    let _in_flight = activity.request();
    let http1 = request.version() < http::Version::HTTP_2;
    let cut = Arc::new(AtomicBool::new(false));
    let request =
        request.map(|body| axum::body::Body::new(ReadTimeout::new(body, limits.body_read_timeout, cut.clone())));
    let Ok(mut response) = router.oneshot(request).await;
    if cut.load(Ordering::SeqCst) {
        response = body_too_slow(&response, http1);
    }
    Ok(response)
}

/// The answer to a request whose body stalled, with the tracking ID the router gave it (logged with its error).
fn body_too_slow(answered: &Response, http1: bool) -> Response {
    let tracking_id = answered
        .headers()
        .get(dps_api::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
    tracing::warn!(tracking_id = %tracking_id, status = 408, "request body arrived too slowly");
    let mut response = dps_api::layers::error_answer(ApiError::body_timeout(), &tracking_id);
    if http1 {
        // The rest of the body may still come; the connection cannot be reused for another request.
        response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    response
}

/// `per_second` failures a second, in bursts of `burst_factor` times that.
fn budget(per_second: u32, burst_factor: u32) -> dps_core::usecases::FailureBudget {
    let rate = f64::from(per_second);
    dps_core::usecases::FailureBudget { burst: rate * f64::from(burst_factor), per_second: rate }
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
fn announce(
    args: &ServeArgs,
    files: &TlsFiles,
    instances: &[Instance],
    listeners: &[Listener],
    metrics_listen: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let addr = |i: usize| listeners.get(i).and_then(|l| l.socket.local_addr().ok());
    let listen = addr(0).context("no listener")?;
    let service_listen = if args.service_listen.is_some() { addr(1) } else { None };
    let service_port = service_listen.unwrap_or(listen).port();
    let mqtt_listen = listeners.iter().find(|l| l.mqtt.is_some()).and_then(|l| l.socket.local_addr().ok());
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
            "mqttListen": mqtt_listen.map(|a| a.to_string()),
            "metricsListen": metrics_listen.map(|a| a.to_string()),
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
    if let Some(addr) = mqtt_listen {
        println!("  device API over MQTT (TLS) on {addr}");
    }
    if let Some(addr) = metrics_listen {
        println!("  Prometheus metrics on http://{addr}/metrics");
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
