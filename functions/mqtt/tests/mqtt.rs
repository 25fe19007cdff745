//! The MQTT front door against the real device router on an embedded store: a test client speaks MQTT 3.1.1 over
//! an in-memory stream (the codec's client side), and what it gets is compared with what HTTPS answers.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use dps_core::testing::{self, in_an_hour};
use dps_core::{Dps, Settings};
use dps_mqtt::{Ended, Limits};
use dps_store_embedded::EmbeddedStore;
use futures::{SinkExt, StreamExt};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Codec, Connect, ConnectReturnCode, Login, Packet, Publish, Subscribe};
use serde_json::{Value, json};
use tokio::io::DuplexStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;
use tower::ServiceExt;

const V: &str = "2019-03-31";
const REGISTER: &str = "$dps/registrations/PUT/iotdps-register/?$rid=";

struct World {
    router: Router,
    service: Router,
    scope: String,
    host: String,
    owner_key: String,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dps = Dps::new(Arc::new(EmbeddedStore::open(dir.path()).unwrap()), Settings::default());
        let host = "mqtt.dps.test".to_string();
        let instance = testing::instance(&dps, "m", &host, vec![testing::hub("hub.example.net")]).await;
        Self {
            router: dps_api::device_router(dps.clone()),
            service: dps_api::service_router(dps),
            owner_key: testing::owner_key(&instance),
            scope: instance.id_scope,
            host,
            _dir: dir,
        }
    }

    /// A service API call as the instance's owner; returns status and JSON body.
    async fn service(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let token = testing::service_token(&self.host, &self.owner_key, testing::OWNER);
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{path}?api-version=2021-10-01"))
            .header("host", &self.host)
            .header("authorization", token);
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let res = self.service.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() })
    }

    /// An individual symmetric-key enrollment; returns its primary key.
    async fn enroll(&self, id: &str) -> String {
        let body = json!({ "registrationId": id, "attestation": { "type": "symmetricKey" } });
        assert_eq!(self.service("PUT", &format!("/enrollments/{id}"), Some(body)).await.0, 200);
        let (_, mech) = self.service("POST", &format!("/enrollments/{id}/attestationmechanism"), None).await;
        mech["symmetricKey"]["primaryKey"].as_str().unwrap().to_string()
    }

    fn token(&self, id: &str, key: &str) -> String {
        testing::device_token(&self.scope, id, key, in_an_hour())
    }

    fn user(&self, id: &str) -> String {
        format!("{}/registrations/{id}/api-version={V}&ClientVersion=test%2F1", self.scope)
    }

    /// The same request over HTTPS (through the router): status and body.
    async fn https(&self, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("/{}/registrations/{path}?api-version={V}", self.scope))
            .header("authorization", token)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// Start serving one connection; the client end, the stop switch and how the connection ended.
    fn connect_raw(&self, limits: Limits) -> (Client, oneshot::Sender<()>, JoinHandle<Ended>) {
        self.connect_buffered(limits, 1 << 20)
    }

    /// As `connect_raw`, with `buffer` bytes of room in each direction of the stream.
    fn connect_buffered(&self, limits: Limits, buffer: usize) -> (Client, oneshot::Sender<()>, JoinHandle<Ended>) {
        let (client, server) = tokio::io::duplex(buffer);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let router = self.router.clone();
        let mut extensions = http::Extensions::new();
        extensions.insert(dps_api::ClientAddress("127.0.0.1".parse().unwrap()));
        let served = tokio::spawn(async move {
            dps_mqtt::serve(server, router, extensions, &limits, async {
                let _ = stop_rx.await;
            })
            .await
        });
        let codec = Codec { max_incoming_size: 1 << 20, max_outgoing_size: 1 << 20 };
        (Client(Framed::new(client, codec)), stop_tx, served)
    }

    /// A client under `limits` whose CONNECT for `id` with `password` was accepted.
    async fn connected(
        &self,
        id: &str,
        password: &str,
        limits: Limits,
    ) -> (Client, oneshot::Sender<()>, JoinHandle<Ended>) {
        let (mut client, stop, served) = self.connect_raw(limits);
        assert_eq!(client.connect(id, &self.user(id), password).await, ConnectReturnCode::Success);
        (client, stop, served)
    }

    /// `id` enrolled, and a client under `limits` connected as it with a token of its key; the token too.
    async fn enrolled(&self, id: &str, limits: Limits) -> (Client, oneshot::Sender<()>, JoinHandle<Ended>, String) {
        let token = self.token(id, &self.enroll(id).await);
        let (client, stop, served) = self.connected(id, &token, limits).await;
        (client, stop, served, token)
    }

    /// A connected, subscribed client for `id` with `password`.
    async fn device(&self, id: &str, password: &str) -> (Client, oneshot::Sender<()>, JoinHandle<Ended>) {
        let (mut client, stop, served) = self.connected(id, password, Limits::default()).await;
        client.subscribe("$dps/registrations/res/#", QoS::AtLeastOnce).await;
        (client, stop, served)
    }
}

struct Client(Framed<DuplexStream, Codec>);

impl Client {
    async fn send(&mut self, packet: Packet) {
        self.0.send(packet).await.unwrap();
    }

    async fn next(&mut self) -> Option<Packet> {
        tokio::time::timeout(Duration::from_secs(10), self.0.next())
            .await
            .expect("an answer in time")
            .map(Result::unwrap)
    }

    async fn connect(&mut self, client_id: &str, user: &str, password: &str) -> ConnectReturnCode {
        let mut connect = Connect::new(client_id);
        connect.keep_alive = 60;
        connect.clean_session = false;
        connect.login = Some(Login::new(user, password));
        self.send(Packet::Connect(connect)).await;
        match self.next().await {
            Some(Packet::ConnAck(ack)) => {
                assert!(!ack.session_present);
                ack.code
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<rumqttc::mqttbytes::v4::SubscribeReasonCode> {
        let mut subscribe = Subscribe::new(filter, qos);
        subscribe.pkid = 1;
        self.send(Packet::Subscribe(subscribe)).await;
        match self.next().await {
            Some(Packet::SubAck(ack)) => ack.return_codes,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publish at `qos` and return the answer: (status, rid, retry-after, body).
    async fn ask(&mut self, topic: &str, qos: QoS, body: &[u8]) -> (u16, String, Option<String>, Value) {
        let mut publish = Publish::new(topic, qos, body.to_vec());
        if qos == QoS::AtLeastOnce {
            publish.pkid = 7;
        }
        self.send(Packet::Publish(publish)).await;
        if qos == QoS::AtLeastOnce {
            assert!(matches!(self.next().await, Some(Packet::PubAck(ack)) if ack.pkid == 7));
        }
        self.answer().await
    }

    async fn answer(&mut self) -> (u16, String, Option<String>, Value) {
        match self.next().await {
            Some(Packet::Publish(p)) => parse_answer(&p),
            other => panic!("expected an answer, got {other:?}"),
        }
    }
}

fn parse_answer(p: &Publish) -> (u16, String, Option<String>, Value) {
    let rest = p.topic.strip_prefix("$dps/registrations/res/").expect("a response topic");
    let (status, query) = rest.split_once("/?").unwrap();
    let param = |name: &str| {
        query.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('='))).map(str::to_string)
    };
    let body = serde_json::from_slice(&p.payload).expect("a JSON body");
    (status.parse().unwrap(), param("$rid").unwrap(), param("retry-after"), body)
}

/// The parts of an answer that are the same whichever door it came through.
fn stable(mut body: Value) -> Value {
    for volatile in ["trackingId", "timestampUtc", "message"] {
        body.as_object_mut().map(|o| o.remove(volatile));
    }
    body
}

#[tokio::test]
async fn a_device_registers_and_polls_and_gets_the_https_answers() {
    let w = World::new().await;
    let key = w.enroll("dev-1").await;
    let (mut c, _stop, _) = w.device("dev-1", &w.token("dev-1", &key)).await;

    let body = br#"{"registrationId":"dev-1","payload":{"model":"x1"}}"#;
    let (status, rid, _, answer) =
        c.ask(&format!("{REGISTER}3f1c2a8e-1111-4a43-9d1c-43bb2c7f1f0e"), QoS::AtLeastOnce, body).await;
    assert_eq!((status, rid.as_str()), (202, "3f1c2a8e-1111-4a43-9d1c-43bb2c7f1f0e"));
    assert_eq!(answer["status"], "assigned");
    assert_eq!(answer["registrationState"]["assignedHub"], "hub.example.net");
    assert_eq!(answer["registrationState"]["deviceId"], "dev-1");
    let operation_id = answer["operationId"].as_str().unwrap().to_string();

    // Both poll bodies the clients send (Python " ", the C SDK the registration JSON), integer and constant rids,
    // QoS 0 and 1.
    for (rid, qos, poll_body) in [("1", QoS::AtMostOnce, &b" "[..]), ("42", QoS::AtLeastOnce, &body[..])] {
        let topic = format!("$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={operation_id}");
        let (status, got_rid, _, polled) = c.ask(&topic, qos, poll_body).await;
        assert_eq!((status, got_rid.as_str()), (200, rid));
        assert_eq!(polled["registrationState"]["assignedHub"], "hub.example.net");
        let (https_status, https_body) =
            w.https("GET", &format!("dev-1/operations/{operation_id}"), &w.token("dev-1", &key), "").await;
        assert_eq!((status, polled), (https_status, https_body), "MQTT and HTTPS answer the same");
    }
}

#[tokio::test]
async fn bad_input_gets_the_https_status_and_nothing_is_stored() {
    let w = World::new().await;
    let key = w.enroll("dev-2").await;
    let wrong_key = w.token("dev-2", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    let (mut c, _stop, _) = w.device("dev-2", &wrong_key).await;
    let (status, _, _, body) = c.ask(&format!("{REGISTER}1"), QoS::AtMostOnce, br#"{"registrationId":"dev-2"}"#).await;
    let https = w.https("PUT", "dev-2/register", &wrong_key, r#"{"registrationId":"dev-2"}"#).await;
    assert_eq!((status, body["errorCode"].clone()), (401, json!(401002)));
    assert_eq!((status, stable(body)), (https.0, stable(https.1)));

    let (mut c, _stop, _) = w.device("dev-2", &w.token("dev-2", &key)).await;
    let cases: [(&str, &[u8], u16, u32); 5] = [
        (&format!("{REGISTER}2"), b"{not json", 400, 400_002),
        (&format!("{REGISTER}3"), br#"{"registrationId":5}"#, 400, 400_002),
        ("$dps/registrations/POST/iotdps-register/?$rid=4", b"{}", 404, 404_000),
        ("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=5", b" ", 400, 400_004),
        ("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=6&operationId=nope", b" ", 404, 404_001),
    ];
    for (topic, payload, want_status, want_code) in cases {
        let (status, _, _, body) = c.ask(topic, QoS::AtLeastOnce, payload).await;
        assert_eq!((status, body["errorCode"].as_u64().unwrap() as u32), (want_status, want_code), "{topic}: {body}");
        assert!(body["trackingId"].as_str().is_some_and(|t| !t.is_empty()));
    }
    let too_big = vec![b' '; 100 * 1024];
    let (status, _, _, body) = c.ask(&format!("{REGISTER}7"), QoS::AtMostOnce, &too_big).await;
    assert_eq!((status, body["errorCode"].clone()), (413, json!(413001)));

    let (status, _) = w.service("GET", "/registrations/dev-2", None).await;
    assert_eq!(status, 404, "no registration record was written");
}

#[tokio::test]
async fn an_unsupported_api_version_and_a_missing_token_are_answered_like_https() {
    let w = World::new().await;
    w.enroll("dev-3").await;
    let (mut c, _stop, _) = w.connect_raw(Limits::default());
    let user = format!("{}/registrations/dev-3/api-version=1999-01-01", w.scope);
    assert_eq!(c.connect("dev-3", &user, "").await, ConnectReturnCode::Success);
    c.subscribe("$dps/registrations/res/#", QoS::AtMostOnce).await;
    let (status, _, _, body) = c.ask(&format!("{REGISTER}1"), QoS::AtMostOnce, b"{}").await;
    assert_eq!((status, body["errorCode"].clone()), (400, json!(400001)));

    let (mut c, _stop, _) = w.connected("dev-3", "", Limits::default()).await;
    c.subscribe("$dps/registrations/res/#", QoS::AtMostOnce).await;
    let (status, _, _, body) = c.ask(&format!("{REGISTER}1"), QoS::AtMostOnce, b"{}").await;
    assert_eq!((status, body["errorCode"].clone()), (401, json!(401002)));
}

#[tokio::test]
async fn bad_connects_are_refused() {
    let w = World::new().await;
    let cases = [
        ("dev-4", format!("{}/devices/dev-4/api-version={V}", w.scope), ConnectReturnCode::BadUserNamePassword),
        ("other", w.user("dev-4"), ConnectReturnCode::BadClientId),
    ];
    for (client_id, user, code) in cases {
        let (mut c, _stop, served) = w.connect_raw(Limits::default());
        assert_eq!(c.connect(client_id, &user, "x").await, code);
        assert!(c.next().await.is_none(), "the connection is closed after the refusal");
        assert!(matches!(served.await.unwrap(), Ended::Refused(_)));
    }
    // A publish before CONNECT.
    let (mut c, _stop, served) = w.connect_raw(Limits::default());
    c.send(Packet::Publish(Publish::new(format!("{REGISTER}1"), QoS::AtMostOnce, b"{}".to_vec()))).await;
    assert!(c.next().await.is_none());
    assert_eq!(served.await.unwrap(), Ended::NoConnect);
}

#[tokio::test]
async fn subscriptions_outside_the_response_topics_are_refused_and_unsubscribed_answers_are_not_sent() {
    let w = World::new().await;
    let (mut c, _stop, _, _) = w.enrolled("dev-5", Limits::default()).await;
    use rumqttc::mqttbytes::v4::SubscribeReasonCode::{Failure, Success};
    assert_eq!(c.subscribe("#", QoS::AtLeastOnce).await, vec![Failure]);
    // Not subscribed: the answer is dropped; a ping proves the connection goes on.
    c.send(Packet::Publish(Publish::new(format!("{REGISTER}1"), QoS::AtMostOnce, b"{}".to_vec()))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.send(Packet::PingReq).await;
    assert_eq!(c.next().await, Some(Packet::PingResp));
    assert_eq!(c.subscribe("$dps/registrations/res/#", QoS::ExactlyOnce).await, vec![Success(QoS::AtLeastOnce)]);
}

#[tokio::test]
async fn many_devices_at_once_each_hear_only_their_own_answers() {
    let w = Arc::new(World::new().await);
    let mut devices = Vec::new();
    for i in 0..40 {
        let id = format!("crowd-{i:02}");
        let key = w.enroll(&id).await;
        devices.push((id, key));
    }
    let mut tasks = Vec::new();
    for (id, key) in devices {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let (mut c, _stop, _) = w.device(&id, &w.token(&id, &key)).await;
            // Every device uses the same constant rid, as the embedded C SDK does.
            let (status, rid, _, body) = c
                .ask(&format!("{REGISTER}1"), QoS::AtLeastOnce, format!(r#"{{"registrationId":"{id}"}}"#).as_bytes())
                .await;
            assert_eq!((status, rid.as_str()), (202, "1"));
            assert_eq!(body["registrationState"]["registrationId"], id.as_str(), "an answer for another device");
            // Nothing else arrives on this connection.
            c.send(Packet::PingReq).await;
            assert_eq!(c.next().await, Some(Packet::PingResp));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn silent_clients_are_closed() {
    let w = World::new().await;
    let fast = Limits {
        connect_timeout: Duration::from_millis(200),
        max_keep_alive: Duration::from_secs(1),
        idle_timeout: Duration::from_millis(400),
        ..Limits::default()
    };
    // No CONNECT.
    let (_c, _stop, served) = w.connect_raw(fast.clone());
    assert_eq!(served.await.unwrap(), Ended::NoConnect);
    // Keep-alive 1 s: silent for 1.5 s.
    let (mut c, _stop, served) = w.connect_raw(Limits { idle_timeout: Duration::from_secs(30), ..fast.clone() });
    let mut connect = Connect::new("dev-6");
    connect.keep_alive = 1;
    connect.login = Some(Login::new(w.user("dev-6"), "x"));
    c.send(Packet::Connect(connect)).await;
    assert!(matches!(c.next().await, Some(Packet::ConnAck(_))));
    let started = std::time::Instant::now();
    assert_eq!(served.await.unwrap(), Ended::KeepAlive);
    assert!(started.elapsed() >= Duration::from_millis(1400));
    // Pinging but asking nothing: idle.
    let (mut c, _stop, served) = w.connected("dev-6", "x", fast).await;
    let pings = tokio::spawn(async move {
        for _ in 0..20 {
            if c.0.send(Packet::PingReq).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(served.await.unwrap(), Ended::Idle);
    pings.abort();
}

#[tokio::test]
async fn oversized_packets_and_qos_2_close_the_connection() {
    let w = World::new().await;
    let (mut c, _stop, served, token) =
        w.enrolled("dev-7", Limits { max_packet_bytes: 1024, ..Limits::default() }).await;
    c.send(Packet::Publish(Publish::new(format!("{REGISTER}1"), QoS::AtMostOnce, vec![b' '; 2048]))).await;
    assert!(c.next().await.is_none());
    assert!(matches!(served.await.unwrap(), Ended::ProtocolError(_)));

    let (mut c, _stop, served) = w.device("dev-7", &token).await;
    let mut publish = Publish::new(format!("{REGISTER}1"), QoS::ExactlyOnce, b"{}".to_vec());
    publish.pkid = 3;
    c.send(Packet::Publish(publish)).await;
    assert!(c.next().await.is_none());
    assert!(matches!(served.await.unwrap(), Ended::ProtocolError(_)));
}

#[tokio::test]
async fn requests_past_the_in_flight_limit_get_429_and_every_request_one_answer() {
    let w = World::new().await;
    let (mut c, _stop, _, _) = w.enrolled("dev-8", Limits { max_in_flight: 1, ..Limits::default() }).await;
    c.subscribe("$dps/registrations/res/#", QoS::AtMostOnce).await;
    for rid in 0..10 {
        let publish =
            Publish::new(format!("{REGISTER}{rid}"), QoS::AtMostOnce, br#"{"registrationId":"dev-8"}"#.to_vec());
        c.0.feed(Packet::Publish(publish)).await.unwrap();
    }
    c.0.flush().await.unwrap();
    let mut rids = Vec::new();
    for _ in 0..10 {
        let (status, rid, retry_after, body) = c.answer().await;
        match status {
            202 => assert_eq!(body["status"], "assigned"),
            429 => {
                assert_eq!(body["errorCode"], 429_001);
                assert_eq!(retry_after.as_deref(), Some("1"));
            }
            other => panic!("unexpected {other}: {body}"),
        }
        rids.push(rid.parse::<u32>().unwrap());
    }
    rids.sort();
    assert_eq!(rids, (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_stopping_server_answers_what_is_in_flight_then_closes() {
    let w = World::new().await;
    let key = w.enroll("dev-9").await;
    let (mut c, stop, served) = w.device("dev-9", &w.token("dev-9", &key)).await;
    c.send(Packet::Publish(Publish::new(format!("{REGISTER}1"), QoS::AtMostOnce, b"{}".to_vec()))).await;
    // Give the publish time to be read before the stop, as a request already in flight at SIGTERM.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(()).unwrap();
    let (status, ..) = c.answer().await;
    assert_eq!(status, 202);
    assert!(c.next().await.is_none());
    assert_eq!(served.await.unwrap(), Ended::Shutdown);
    let (status, _) = w.service("GET", "/registrations/dev-9", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed() {
    let w = World::new().await;
    let limits = Limits { idle_timeout: Duration::from_millis(300), ..Limits::default() };
    let (mut c, _stop, served) = w.connect_buffered(limits, 256);
    assert_eq!(c.connect("dev-10", &w.user("dev-10"), "x").await, ConnectReturnCode::Success);
    // Pings whose answers are never read: the server's writes stall once the stream's buffer is full.
    let flood = tokio::spawn(async move {
        for _ in 0..10_000 {
            if c.0.send(Packet::PingReq).await.is_err() {
                break;
            }
        }
        c
    });
    let ended = tokio::time::timeout(Duration::from_secs(10), served).await.expect("closed in time").unwrap();
    assert_eq!(ended, Ended::NotReading);
    flood.abort();
}
