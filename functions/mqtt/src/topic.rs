//! The DPS topics: the two request topics a device publishes to, the response topic it subscribes to, and the
//! subscriptions this server grants (only the response topic space: it is not a broker).

use percent_encoding::percent_decode_str;
use rumqttc::mqttbytes::{matches, valid_filter};

use crate::device::query_value;

/// Prefix of every response topic; the only topic space a device may subscribe to.
pub const RESPONSE_PREFIX: &str = "$dps/registrations/res/";

/// A request topic, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// The request ID (`$rid`) as the client wrote it, echoed in the answer's topic. Empty when absent.
    pub rid: String,
    /// What is asked.
    pub request: Request,
}

/// What a publish asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `$dps/registrations/PUT/iotdps-register/?$rid={rid}`: the register PUT.
    Register,
    /// `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}`: the operation status GET.
    OperationStatus { operation_id: String },
    /// The operation status topic without an `operationId`.
    MissingOperationId,
    /// No `$rid` in the topic.
    MissingRid,
    /// Any other topic.
    Unknown,
}

impl Topic {
    /// Parse a publish's topic name. Method and action are matched in any case, as HTTPS paths are.
    pub fn parse(topic: &str) -> Topic {
        let (path, query) = topic.split_once("/?").unwrap_or((topic, ""));
        let path = path.strip_suffix('/').unwrap_or(path);
        let rid = query_value(query, "$rid").unwrap_or_default().to_string();
        let mut segments = path.split('/');
        let mut next = || segments.next().unwrap_or_default().to_ascii_lowercase();
        let route = (next(), next(), next(), next(), segments.next());
        let request = match route {
            (d, r, m, a, None) if d == "$dps" && r == "registrations" => match (m.as_str(), a.as_str()) {
                ("put", "iotdps-register") => Request::Register,
                ("get", "iotdps-get-operationstatus") => {
                    match query_value(query, "operationId").map(|v| percent_decode_str(v).decode_utf8_lossy()) {
                        Some(id) if !id.is_empty() => Request::OperationStatus { operation_id: id.into_owned() },
                        _ => Request::MissingOperationId,
                    }
                }
                _ => Request::Unknown,
            },
            _ => Request::Unknown,
        };
        let request = if rid.is_empty() && request != Request::Unknown { Request::MissingRid } else { request };
        Topic { rid, request }
    }
}

/// `$dps/registrations/res/{status}/?$rid={rid}`, with `&retry-after={secs}` when the answer says when to retry.
pub fn response_topic(status: u16, rid: &str, retry_after: Option<&str>) -> String {
    let mut topic = format!("{RESPONSE_PREFIX}{status}/?$rid={rid}");
    if let Some(secs) = retry_after {
        topic.push_str("&retry-after=");
        topic.push_str(secs);
    }
    topic
}

/// Whether a device may subscribe to `filter`: a valid filter inside the response topic space.
pub fn grantable(filter: &str) -> bool {
    filter.starts_with(RESPONSE_PREFIX) && valid_filter(filter)
}

/// Whether a granted filter matches a response topic. (The codec crate's matcher, written for a broker, keeps
/// `$` topics away from wildcard filters; both sides here start with `$dps/`, so it is asked without the `$`.)
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    match (filter.strip_prefix('$'), topic.strip_prefix('$')) {
        (Some(filter), Some(topic)) => matches(topic, filter),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_topics_of_the_clients() {
        let uuid = "$dps/registrations/PUT/iotdps-register/?$rid=7d2c0f6e-2f7a-4a43-9d1c-43bb2c7f1f0e";
        assert_eq!(Topic::parse(uuid).request, Request::Register);
        assert_eq!(Topic::parse(uuid).rid, "7d2c0f6e-2f7a-4a43-9d1c-43bb2c7f1f0e");
        let poll = Topic::parse("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=42&operationId=4.abc.d-e");
        assert_eq!(poll.rid, "42");
        assert_eq!(poll.request, Request::OperationStatus { operation_id: "4.abc.d-e".into() });
        let encoded = Topic::parse("$dps/registrations/GET/iotdps-get-operationstatus/?operationId=a%2Fb&$rid=1");
        assert_eq!(encoded.request, Request::OperationStatus { operation_id: "a/b".into() });
    }

    #[test]
    fn bad_request_topics() {
        let cases = [
            ("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1", Request::MissingOperationId),
            ("$dps/registrations/PUT/iotdps-register/", Request::MissingRid),
            ("$dps/registrations/PUT/iotdps-register", Request::MissingRid),
            ("$dps/registrations/POST/iotdps-register/?$rid=1", Request::Unknown),
            ("$dps/registrations/PUT/iotdps-register/extra/?$rid=1", Request::Unknown),
            ("devices/x/messages/events/", Request::Unknown),
            ("", Request::Unknown),
        ];
        for (topic, want) in cases {
            assert_eq!(Topic::parse(topic).request, want, "{topic}");
        }
        assert_eq!(Topic::parse("$dps/registrations/DELETE/x/?$rid=9").rid, "9", "unknown topics keep their rid");
    }

    #[test]
    fn response_topics_and_subscriptions() {
        assert_eq!(response_topic(202, "1", Some("2")), "$dps/registrations/res/202/?$rid=1&retry-after=2");
        assert_eq!(response_topic(401, "abc", None), "$dps/registrations/res/401/?$rid=abc");
        let topic = response_topic(200, "1", None);
        assert!(grantable("$dps/registrations/res/#"));
        assert!(filter_matches("$dps/registrations/res/#", &topic));
        assert!(filter_matches("$dps/registrations/res/+/#", &topic));
        assert!(!filter_matches("$dps/registrations/res/429/#", &topic));
        for refused in ["#", "+/registrations/res/#", "$dps/registrations/#", "$dps/registrations/res/#/x", "a/b"] {
            assert!(!grantable(refused), "{refused}");
        }
    }
}
