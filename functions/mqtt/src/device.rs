//! The device a connection speaks for, from its CONNECT packet: ID scope, registration ID and api-version from the
//! user name, the SAS token from the password. Only the shape is checked here (a CONNACK refusal otherwise);
//! everything the HTTPS API checks (api-version, token, enrollment) is left to it, so the answers are its own.

use http::HeaderValue;
use percent_encoding::percent_decode_str;
use rumqttc::mqttbytes::Protocol;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode};

/// What every request of a connection carries.
#[derive(Clone, PartialEq, Eq)]
pub struct Device {
    /// ID scope, from the user name.
    pub id_scope: String,
    /// Registration ID, from the user name (the client ID names the same device).
    pub registration_id: String,
    /// The `api-version` of the user name, if any (a request without one gets the HTTPS API's 400).
    pub api_version: Option<String>,
    /// The password: the SAS token, sent as the `Authorization` header. Absent for X.509 devices (TLS client
    /// certificate).
    pub authorization: Option<HeaderValue>,
    /// Keep-alive the client asked for, in seconds (0: none).
    pub keep_alive: u16,
}

/// Never prints the token.
impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("id_scope", &self.id_scope)
            .field("registration_id", &self.registration_id)
            .field("api_version", &self.api_version)
            .field("authorization", &self.authorization.as_ref().map(|_| "<redacted>"))
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

/// Why a CONNECT is refused, as its CONNACK return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not MQTT 3.1.1.
    ProtocolVersion,
    /// The client ID is empty or is not the user name's registration ID.
    ClientId,
    /// No user name, one not of the form `{idScope}/registrations/{registrationId}/...`, or a password that cannot
    /// be an `Authorization` value.
    UserNameOrPassword,
}

impl Refusal {
    /// The CONNACK return code of this refusal.
    pub fn code(self) -> ConnectReturnCode {
        match self {
            Refusal::ProtocolVersion => ConnectReturnCode::RefusedProtocolVersion,
            Refusal::ClientId => ConnectReturnCode::BadClientId,
            Refusal::UserNameOrPassword => ConnectReturnCode::BadUserNamePassword,
        }
    }

    /// Why, for the log (never quotes the password).
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::ProtocolVersion => "not MQTT 3.1.1",
            Refusal::ClientId => "the client ID is not the user name's registration ID",
            Refusal::UserNameOrPassword => {
                "the user name is not {idScope}/registrations/{registrationId}/api-version=..., or the password is not a token"
            }
        }
    }
}

impl Device {
    /// The device of a CONNECT packet, or why it is refused.
    pub fn from_connect(connect: &Connect) -> Result<Device, Refusal> {
        if connect.protocol != Protocol::V4 {
            return Err(Refusal::ProtocolVersion);
        }
        let login = connect.login.as_ref().ok_or(Refusal::UserNameOrPassword)?;
        let (id_scope, registration_id, api_version) =
            parse_user_name(&login.username).ok_or(Refusal::UserNameOrPassword)?;
        if connect.client_id.is_empty() || !connect.client_id.eq_ignore_ascii_case(&registration_id) {
            return Err(Refusal::ClientId);
        }
        let authorization = match login.password.as_str() {
            "" => None,
            password => Some(HeaderValue::from_str(password).map_err(|_| Refusal::UserNameOrPassword)?),
        };
        Ok(Device { id_scope, registration_id, api_version, authorization, keep_alive: connect.keep_alive })
    }
}

/// `{idScope}/registrations/{registrationId}/api-version=V&ClientVersion=...`: scope, registration ID (both
/// percent-decoded, as path segments are) and the api-version (any other parameter is ignored).
fn parse_user_name(user_name: &str) -> Option<(String, String, Option<String>)> {
    let mut parts = user_name.splitn(4, '/');
    let scope = parts.next()?;
    if !parts.next()?.eq_ignore_ascii_case("registrations") {
        return None;
    }
    let registration_id = parts.next()?;
    let query = parts.next().unwrap_or_default();
    let decode = |s: &str| percent_decode_str(s).decode_utf8().ok().map(|s| s.into_owned());
    let (scope, registration_id) = (decode(scope)?, decode(registration_id)?);
    if scope.is_empty() || registration_id.is_empty() {
        return None;
    }
    let api_version = query_value(query, "api-version").and_then(decode);
    Some((scope, registration_id, api_version))
}

/// The raw value of `name` in a `k=v&k=v` query (the first one).
pub(crate) fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::v4::Login;

    fn connect(client_id: &str, user: &str, password: &str) -> Connect {
        let mut c = Connect::new(client_id);
        c.login = Some(Login::new(user, password));
        c
    }

    #[test]
    fn the_clients_user_names_parse() {
        // Python 2.14 (quote-encoded ClientVersion), Node (clientVersion), the C SDK (2021-06-01), none at all.
        let cases = [
            (
                "0ne00000001/registrations/dev-1/api-version=2019-03-31&ClientVersion=azure-iot-device%2F2.14.0",
                Some("2019-03-31"),
            ),
            (
                "0ne00000001/registrations/dev-1/api-version=2019-03-31&clientVersion=azure-iot-provisioning-device%2F1.9.1",
                Some("2019-03-31"),
            ),
            ("0ne00000001/registrations/dev-1/api-version=2021-06-01&ClientVersion=1.6.0/x", Some("2021-06-01")),
            ("0ne00000001/registrations/dev-1", None),
        ];
        for (user, version) in cases {
            let device = Device::from_connect(&connect("dev-1", user, "SharedAccessSignature sr=x")).unwrap();
            assert_eq!(device.id_scope, "0ne00000001");
            assert_eq!(device.registration_id, "dev-1");
            assert_eq!(device.api_version.as_deref(), version, "{user}");
            assert_eq!(device.authorization.unwrap(), "SharedAccessSignature sr=x");
        }
    }

    #[test]
    fn bad_connects_are_refused_with_their_code() {
        let user = "0ne00000001/registrations/dev-1/api-version=2019-03-31";
        assert_eq!(Device::from_connect(&connect("dev-2", user, "t")), Err(Refusal::ClientId));
        assert_eq!(Device::from_connect(&connect("", user, "t")), Err(Refusal::ClientId));
        assert!(Device::from_connect(&connect("DEV-1", user, "t")).is_ok(), "registration IDs ignore case");
        for bad in
            ["0ne00000001/devices/dev-1/api-version=1", "0ne00000001", "/registrations/dev-1/x", "a/registrations//x"]
        {
            assert_eq!(Device::from_connect(&connect("dev-1", bad, "t")), Err(Refusal::UserNameOrPassword), "{bad}");
        }
        assert_eq!(Device::from_connect(&connect("dev-1", user, "line\nbreak")), Err(Refusal::UserNameOrPassword));
        let mut anonymous = Connect::new("dev-1");
        anonymous.login = None;
        assert_eq!(Device::from_connect(&anonymous), Err(Refusal::UserNameOrPassword));
        let mut v5 = connect("dev-1", user, "t");
        v5.protocol = Protocol::V5;
        assert_eq!(Device::from_connect(&v5), Err(Refusal::ProtocolVersion));
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let user = "0ne00000001/registrations/dev-1/api-version=2019-03-31";
        let device = Device::from_connect(&connect("dev-1", user, "SharedAccessSignature sig=secret")).unwrap();
        assert!(!format!("{device:?}").contains("secret"));
    }

    #[test]
    fn no_password_means_no_authorization() {
        // The X.509 case: the TLS client certificate authenticates, the HTTPS path decides.
        let device =
            Device::from_connect(&connect("dev-1", "0ne00000001/registrations/dev-1/api-version=2021-06-01", ""))
                .unwrap();
        assert!(device.authorization.is_none());
    }
}
