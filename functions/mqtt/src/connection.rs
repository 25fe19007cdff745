//! One MQTT connection: CONNECT within the connect timeout, then SUBSCRIBE / PUBLISH / PINGREQ until the client
//! leaves, goes quiet for longer than its keep-alive allows, stays idle, or the server stops. Answers are
//! published on this connection only: there is no broker, no shared subscription table, nothing retained.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt};
use http::Extensions;
use rumqttc::mqttbytes::v4::{
    Codec, ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::codec::Framed;

use crate::Limits;
use crate::device::{Device, Refusal};
use crate::exchange::{self, Answer};
use crate::topic::{self, Topic};

/// Largest packet this server sends (an answer is at most the router's answer plus its topic).
const MAX_OUTGOING_BYTES: usize = 2 << 20;

/// Why a connection ended (for the log, and for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The client sent DISCONNECT or closed the connection.
    ByClient,
    /// No CONNECT within the connect timeout, or something else first.
    NoConnect,
    /// The CONNECT was refused (CONNACK with a return code).
    Refused(Refusal),
    /// Nothing from the client within one and a half keep-alive periods.
    KeepAlive,
    /// No request for the idle timeout.
    Idle,
    /// The server is stopping; requests in flight were answered first.
    Shutdown,
    /// The client did not take a packet from the server within the idle timeout (it stopped reading).
    NotReading,
    /// A packet the protocol does not allow here, one larger than the limit, or an I/O error.
    ProtocolError(String),
}

/// Serve one MQTT 3.1.1 connection over `io` (a TLS stream, already handshaken). Every request of the connection
/// carries `extensions` (the client address, and with X.509 the TLS client certificate), and is answered by
/// `router` (the device API). When `stop` resolves, no further packet is read, requests in flight are
/// answered, and the connection is closed.
pub async fn serve<IO, S>(io: IO, router: Router, extensions: Extensions, limits: &Limits, stop: S) -> Ended
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Future<Output = ()>,
{
    let codec = Codec { max_incoming_size: limits.max_packet_bytes, max_outgoing_size: MAX_OUTGOING_BYTES };
    let mut framed = Framed::new(io, codec);
    tokio::pin!(stop);

    let connect = tokio::select! {
        first = tokio::time::timeout(limits.connect_timeout, framed.next()) => first,
        _ = &mut stop => return Ended::Shutdown,
    };
    let device = match connect {
        Ok(Some(Ok(Packet::Connect(connect)))) => match Device::from_connect(&connect) {
            Ok(device) => device,
            Err(refusal) => {
                tracing::info!(client_id = %dps_core::ids::printable(&connect.client_id), reason = refusal.reason(), "mqtt CONNECT refused");
                let _ = send(&mut framed, Packet::ConnAck(ConnAck::new(refusal.code(), false)), limits.connect_timeout)
                    .await;
                return Ended::Refused(refusal);
            }
        },
        // MQTT 3.1 ("MQIsdp") and 5: return code 1, as §3.1.2.2 asks.
        Ok(Some(Err(CodecError::InvalidProtocol | CodecError::InvalidProtocolLevel(_)))) => {
            let refused = ConnAck::new(ConnectReturnCode::RefusedProtocolVersion, false);
            let _ = send(&mut framed, Packet::ConnAck(refused), limits.connect_timeout).await;
            return Ended::Refused(Refusal::ProtocolVersion);
        }
        Ok(Some(Err(e))) => return Ended::ProtocolError(e.to_string()),
        Err(_) | Ok(None) | Ok(Some(Ok(_))) => return Ended::NoConnect,
    };
    // No session state is kept between connections (an answer belongs to the connection that asked), so a
    // persistent session is accepted but never present: clients subscribe again, as they do anyway.
    let accepted = ConnAck::new(ConnectReturnCode::Success, false);
    if let Err(ended) = send(&mut framed, Packet::ConnAck(accepted), limits.connect_timeout).await {
        return ended;
    }
    tracing::debug!(scope = %device.id_scope, registration_id = %device.registration_id, "mqtt device connected");

    let mut session = Session::new(device, router, extensions, limits);
    let ended = session.run(&mut framed, &mut stop).await;
    tracing::debug!(ended = ?ended, "mqtt connection ended");
    ended
}

/// The state of one connected device.
struct Session<'a> {
    device: Device,
    router: Router,
    extensions: Extensions,
    limits: &'a Limits,
    /// Granted filters and their QoS.
    subscriptions: Vec<(String, QoS)>,
    next_packet_id: u16,
}

impl<'a> Session<'a> {
    fn new(device: Device, router: Router, extensions: Extensions, limits: &'a Limits) -> Self {
        Self { device, router, extensions, limits, subscriptions: Vec::new(), next_packet_id: 0 }
    }

    /// How long the client may stay silent: one and a half keep-alive periods (MQTT 3.1.1 §3.1.2.10); a
    /// keep-alive of 0 (none) or beyond the server's maximum counts as that maximum.
    fn silence_allowed(&self) -> Duration {
        let asked = Duration::from_secs(u64::from(self.device.keep_alive));
        let keep_alive =
            if asked.is_zero() || asked > self.limits.max_keep_alive { self.limits.max_keep_alive } else { asked };
        keep_alive + keep_alive / 2
    }

    async fn run<IO, S>(&mut self, framed: &mut Framed<IO, Codec>, stop: &mut std::pin::Pin<&mut S>) -> Ended
    where
        IO: AsyncRead + AsyncWrite + Unpin,
        S: Future<Output = ()>,
    {
        let mut in_flight = FuturesUnordered::new();
        let mut heard = Instant::now();
        let mut worked = Instant::now();
        let mut stopping = false;
        loop {
            let silence_deadline = heard + self.silence_allowed();
            // The idle clock runs only while nothing is being answered.
            let idle_deadline = if in_flight.is_empty() { Some(worked + self.limits.idle_timeout) } else { None };
            let deadline = idle_deadline.map_or(silence_deadline, |idle| idle.min(silence_deadline));
            tokio::select! {
                biased;
                _ = stop.as_mut(), if !stopping => {
                    stopping = true;
                    if in_flight.is_empty() {
                        return Ended::Shutdown;
                    }
                }
                Some(answer) = in_flight.next(), if !in_flight.is_empty() => {
                    worked = Instant::now();
                    if let Err(ended) = self.publish(framed, answer).await {
                        return ended;
                    }
                    if stopping && in_flight.is_empty() {
                        return Ended::Shutdown;
                    }
                }
                packet = framed.next(), if !stopping => {
                    heard = Instant::now();
                    let packet = match packet {
                        None => return Ended::ByClient,
                        Some(Err(e)) => return Ended::ProtocolError(e.to_string()),
                        Some(Ok(packet)) => packet,
                    };
                    match self.handle(framed, packet, in_flight.len()).await {
                        Ok(Step::Continue) => {}
                        Ok(Step::Ask(request, rid)) => {
                            in_flight.push(exchange::ask(self.router.clone(), *request, rid));
                        }
                        Ok(Step::Answer(answer)) => {
                            worked = Instant::now();
                            if let Err(ended) = self.publish(framed, answer).await {
                                return ended;
                            }
                        }
                        Ok(Step::Disconnect) => return Ended::ByClient,
                        Err(ended) => return ended,
                    }
                }
                _ = tokio::time::sleep_until(deadline), if !stopping => {
                    return if deadline == silence_deadline { Ended::KeepAlive } else { Ended::Idle };
                }
            }
        }
    }

    /// Act on one packet from the client.
    async fn handle<IO>(
        &mut self,
        framed: &mut Framed<IO, Codec>,
        packet: Packet,
        in_flight: usize,
    ) -> Result<Step, Ended>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        match packet {
            Packet::Publish(publish) => {
                match publish.qos {
                    QoS::AtMostOnce => {}
                    // Received is all a PUBACK says; the answer follows on the response topic.
                    QoS::AtLeastOnce => {
                        send(framed, Packet::PubAck(PubAck::new(publish.pkid)), self.limits.idle_timeout).await?
                    }
                    // As Azure DPS: no QoS 2.
                    QoS::ExactlyOnce => return Err(Ended::ProtocolError("QoS 2 is not supported".into())),
                }
                if !rumqttc::mqttbytes::valid_topic(&publish.topic) {
                    return Err(Ended::ProtocolError("a topic name with wildcards".into()));
                }
                let topic = Topic::parse(&publish.topic);
                if in_flight >= self.limits.max_in_flight {
                    let error = dps_api::ApiError::from(dps_core::Error::Throttled {
                        message: format!(
                            "At most {} requests may be in flight on one connection",
                            self.limits.max_in_flight
                        ),
                        retry_after_secs: 1,
                    });
                    return Ok(Step::Answer(exchange::refuse(error, &topic.rid).await));
                }
                match exchange::to_http(&self.device, &topic, publish.payload, &self.extensions) {
                    Ok(request) => Ok(Step::Ask(Box::new(request), topic.rid)),
                    Err(error) => Ok(Step::Answer(exchange::refuse(error, &topic.rid).await)),
                }
            }
            Packet::Subscribe(subscribe) => {
                let codes = subscribe
                    .filters
                    .into_iter()
                    .map(|f| {
                        if topic::grantable(&f.path) {
                            let qos = if f.qos == QoS::AtMostOnce { QoS::AtMostOnce } else { QoS::AtLeastOnce };
                            self.subscriptions.retain(|(path, _)| *path != f.path);
                            self.subscriptions.push((f.path, qos));
                            SubscribeReasonCode::Success(qos)
                        } else {
                            tracing::debug!(filter = %f.path, "mqtt subscription outside the response topics refused");
                            SubscribeReasonCode::Failure
                        }
                    })
                    .collect();
                send(framed, Packet::SubAck(SubAck::new(subscribe.pkid, codes)), self.limits.idle_timeout).await?;
                Ok(Step::Continue)
            }
            Packet::Unsubscribe(unsubscribe) => {
                self.subscriptions.retain(|(path, _)| !unsubscribe.topics.contains(path));
                send(framed, Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid)), self.limits.idle_timeout).await?;
                Ok(Step::Continue)
            }
            Packet::PingReq => {
                send(framed, Packet::PingResp, self.limits.idle_timeout).await?;
                Ok(Step::Continue)
            }
            // The client's acknowledgement of an answer at QoS 1: nothing is kept to be resent.
            Packet::PubAck(_) => Ok(Step::Continue),
            Packet::Disconnect => Ok(Step::Disconnect),
            other => Err(Ended::ProtocolError(format!("unexpected {:?} packet", packet_name(&other)))),
        }
    }

    /// Publish an answer if the client subscribed to it (at the QoS it was granted); otherwise drop it.
    async fn publish<IO>(&mut self, framed: &mut Framed<IO, Codec>, answer: Answer) -> Result<(), Ended>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let granted = self
            .subscriptions
            .iter()
            .filter(|(filter, _)| topic::filter_matches(filter, &answer.topic))
            .map(|(_, q)| *q)
            .max_by_key(|q| *q as u8);
        let Some(qos) = granted else {
            tracing::debug!(topic = %answer.topic, "mqtt answer dropped: the client has not subscribed to it");
            return Ok(());
        };
        let mut publish = Publish::from_bytes(answer.topic, qos, answer.body);
        if qos != QoS::AtMostOnce {
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            publish.pkid = self.next_packet_id;
        }
        send(framed, Packet::Publish(publish), self.limits.idle_timeout).await
    }
}

/// Send one packet; a failure ends the connection, and so does a client that does not take it within `limit`
/// (one that stops reading would otherwise hold the connection, and its slot, for ever).
async fn send<IO>(framed: &mut Framed<IO, Codec>, packet: Packet, limit: Duration) -> Result<(), Ended>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(limit, framed.send(packet)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Ended::ProtocolError(e.to_string())),
        Err(_) => Err(Ended::NotReading),
    }
}

/// What a packet leads to.
enum Step {
    Continue,
    /// Ask the router; the answer is published when it comes.
    Ask(Box<http::Request<axum::body::Body>>, String),
    /// Publish this answer now.
    Answer(Answer),
    Disconnect,
}

fn packet_name(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::SubAck(_) => "SUBACK",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingResp => "PINGRESP",
        _ => "other",
    }
}
