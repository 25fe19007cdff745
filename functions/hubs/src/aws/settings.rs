//! A linked AWS IoT Core hub's settings (the connection's `settings` map), read and checked without a hub call.

use serde_json::{Map, Value};

/// `region`: the hub's region; default: the region in the hub's host name, else the deployment's.
pub const REGION: &str = "region";
/// `endpointUrl`: the IoT control-plane endpoint override (moto, VPC endpoints).
pub const ENDPOINT_URL: &str = "endpointUrl";
/// `dataEndpointUrl`: the IoT data-plane (shadow) endpoint; default `https://{hostName}`.
pub const DATA_ENDPOINT_URL: &str = "dataEndpointUrl";
/// `stsEndpointUrl`: the STS endpoint `roleArn` is assumed through (moto, VPC endpoints); default: AWS's.
pub const STS_ENDPOINT_URL: &str = "stsEndpointUrl";
/// `roleArn`: an IAM role to assume (another account, or narrower rights) for this hub's calls.
pub const ROLE_ARN: &str = "roleArn";
/// `externalId`: the external ID the role's trust policy asks for (with `roleArn` only).
pub const EXTERNAL_ID: &str = "externalId";
/// `thingType`: the thing type of every thing made for this hub (it must exist).
pub const THING_TYPE: &str = "thingType";
/// `thingGroup`: a static thing group every thing is added to (it must exist).
pub const THING_GROUP: &str = "thingGroup";
/// `policyName`: the IoT policy attached to device certificates (registered or issued).
pub const POLICY_NAME: &str = "policyName";

const KNOWN: [&str; 9] = [
    REGION,
    ENDPOINT_URL,
    DATA_ENDPOINT_URL,
    STS_ENDPOINT_URL,
    ROLE_ARN,
    EXTERNAL_ID,
    THING_TYPE,
    THING_GROUP,
    POLICY_NAME,
];

/// The settings of one AWS IoT Core hub.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// Region override.
    pub region: Option<String>,
    /// Control-plane endpoint override.
    pub endpoint_url: Option<String>,
    /// Data-plane endpoint override.
    pub data_endpoint_url: Option<String>,
    /// STS endpoint override (with `roleArn`).
    pub sts_endpoint_url: Option<String>,
    /// Role to assume.
    pub role_arn: Option<String>,
    /// External ID for the role.
    pub external_id: Option<String>,
    /// Thing type name.
    pub thing_type: Option<String>,
    /// Thing group name.
    pub thing_group: Option<String>,
    /// IoT policy name.
    pub policy_name: Option<String>,
}

impl AwsSettings {
    /// Read and check `settings`; the message names the setting and what is wrong with it.
    pub fn parse(settings: &Map<String, Value>) -> Result<Self, String> {
        if let Some(unknown) = settings.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(format!("Unknown AWS IoT Core setting '{unknown}' (known: {})", KNOWN.join(", ")));
        }
        let text = |key: &str| -> Result<Option<String>, String> {
            match settings.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Err(format!("Setting '{key}' is empty")),
                Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
                Some(_) => Err(format!("Setting '{key}' must be a string")),
            }
        };
        let parsed = Self {
            region: text(REGION)?,
            endpoint_url: text(ENDPOINT_URL)?,
            data_endpoint_url: text(DATA_ENDPOINT_URL)?,
            sts_endpoint_url: text(STS_ENDPOINT_URL)?,
            role_arn: text(ROLE_ARN)?,
            external_id: text(EXTERNAL_ID)?,
            thing_type: text(THING_TYPE)?,
            thing_group: text(THING_GROUP)?,
            policy_name: text(POLICY_NAME)?,
        };
        let (url, arn) = ("is not an http(s) URL", "is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)");
        // Thing type and group names share the pattern and length of thing names.
        let thing = "must be 1 to 128 of letters, digits, ':', '_' and '-'";
        let region = "is not an AWS region name (like eu-west-1)";
        check_form(REGION, &parsed.region, valid_region, region, Repeat::Value)?;
        check_form(ENDPOINT_URL, &parsed.endpoint_url, valid_url, url, Repeat::Value)?;
        check_form(DATA_ENDPOINT_URL, &parsed.data_endpoint_url, valid_url, url, Repeat::Value)?;
        check_form(STS_ENDPOINT_URL, &parsed.sts_endpoint_url, valid_url, url, Repeat::Value)?;
        check_form(ROLE_ARN, &parsed.role_arn, valid_role_arn, arn, Repeat::Not)?;
        for (key, given) in [(STS_ENDPOINT_URL, &parsed.sts_endpoint_url), (EXTERNAL_ID, &parsed.external_id)] {
            if given.is_some() && parsed.role_arn.is_none() {
                return Err(format!("Setting '{key}' needs '{ROLE_ARN}'"));
            }
        }
        let external_id = |id: &str| (2..=1224).contains(&id.len());
        check_form(EXTERNAL_ID, &parsed.external_id, external_id, "must have 2 to 1224 characters", Repeat::Not)?;
        check_form(THING_TYPE, &parsed.thing_type, valid_thing_name, thing, Repeat::Not)?;
        check_form(THING_GROUP, &parsed.thing_group, valid_thing_name, thing, Repeat::Not)?;
        let policy = "must be 1 to 128 of letters, digits and '+=,.@-_'";
        check_form(POLICY_NAME, &parsed.policy_name, valid_policy_name, policy, Repeat::Not)?;
        Ok(parsed)
    }

    /// The region calls go to: the setting, else the one in an IoT endpoint host name
    /// (`xxxx-ats.iot.REGION.amazonaws.com`), else `None` (the deployment's region).
    pub fn region_for(&self, host_name: &str) -> Option<String> {
        self.region.clone().or_else(|| {
            let mut labels = host_name.split('.').skip(1);
            match (labels.next(), labels.next(), labels.next()) {
                (Some("iot"), Some(region), Some("amazonaws")) if valid_region(region) => Some(region.to_string()),
                _ => None,
            }
        })
    }

    /// Whether things carry a thing type (which raises the attribute limit from 3 to 50).
    pub fn max_attributes(&self) -> usize {
        if self.thing_type.is_some() { 50 } else { 3 }
    }
}

/// Whether a refusal repeats the value it refuses.
#[derive(Clone, Copy, PartialEq)]
enum Repeat {
    Value,
    Not,
}

/// `Err` unless the setting `key`, when given, passes `valid`; the message says what it must be (`rule`), with
/// the value when `repeat` says so.
fn check_form(
    key: &str,
    value: &Option<String>,
    valid: impl Fn(&str) -> bool,
    rule: &str,
    repeat: Repeat,
) -> Result<(), String> {
    match value {
        Some(v) if !valid(v) && repeat == Repeat::Value => Err(format!("Setting '{key}' {rule}: '{v}'")),
        Some(v) if !valid(v) => Err(format!("Setting '{key}' {rule}")),
        _ => Ok(()),
    }
}

/// AWS thing names (and device IDs used as thing names): 1 to 128 of `[a-zA-Z0-9:_-]`.
pub fn valid_thing_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

fn valid_policy_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'=' | b',' | b'.' | b'@' | b'-' | b'_'))
}

/// Whether `host` is an AWS IoT Core data endpoint (`{prefix}[-ats].iot.{region}.amazonaws.com`, or `.com.cn`):
/// without an endpoint override, the data plane is called at the hub's host name, so it must be AWS's.
pub fn is_iot_data_endpoint(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let Some(rest) = host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn")) else {
        return false;
    };
    let labels: Vec<&str> = rest.split('.').collect();
    let [prefix, "iot", region] = labels.as_slice() else { return false };
    let prefix = prefix.strip_suffix("-ats").unwrap_or(prefix);
    !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_alphanumeric()) && valid_region(region)
}

fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && region.len() <= 32
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

fn valid_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace))
}

fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if partition.starts_with("aws")
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && resource.strip_prefix("role/").is_some_and(|name| !name.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<AwsSettings, String> {
        AwsSettings::parse(v.as_object().unwrap())
    }

    #[test]
    fn reads_every_setting() {
        let s = parse(json!({
            "region": "eu-west-1", "endpointUrl": "http://127.0.0.1:5000", "dataEndpointUrl": "https://d.example",
            "roleArn": "arn:aws:iam::123456789012:role/dps-hub", "externalId": "tenant-7",
            "thingType": "sensor", "thingGroup": "fleet-a", "policyName": "device-policy"
        }))
        .unwrap();
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.role_arn.as_deref(), Some("arn:aws:iam::123456789012:role/dps-hub"));
        assert_eq!((s.thing_type.as_deref(), s.max_attributes()), (Some("sensor"), 50));
        assert_eq!(parse(json!({})).unwrap(), AwsSettings::default());
        assert_eq!(AwsSettings::default().max_attributes(), 3);
    }

    #[test]
    fn refuses_bad_settings_naming_them() {
        for (settings, needle) in [
            (json!({"regoin": "eu-west-1"}), "Unknown AWS IoT Core setting 'regoin'"),
            (json!({"region": "Europe"}), "'region' is not an AWS region"),
            (json!({"endpointUrl": "localhost:5000"}), "'endpointUrl' is not an http(s) URL"),
            (json!({"roleArn": "arn:aws:iam::12:role/x"}), "'roleArn' is not an IAM role ARN"),
            (json!({"externalId": "abc"}), "'externalId' needs 'roleArn'"),
            (json!({"thingType": "has space"}), "'thingType' must be"),
            (json!({"thingGroup": 7}), "'thingGroup' must be a string"),
            (json!({"policyName": ""}), "'policyName' is empty"),
        ] {
            let err = parse(settings.clone()).expect_err(&settings.to_string());
            assert!(err.contains(needle), "{settings}: {err}");
        }
        let short = json!({"roleArn": "arn:aws:iam::123456789012:role/dps-hub", "externalId": "s"});
        let err = parse(short).unwrap_err();
        assert_eq!(err, "Setting 'externalId' must have 2 to 1224 characters", "the external ID is not repeated");
    }

    #[test]
    fn region_comes_from_the_setting_or_the_host_name() {
        let none = AwsSettings::default();
        assert_eq!(none.region_for("abc123-ats.iot.us-east-1.amazonaws.com").as_deref(), Some("us-east-1"));
        assert_eq!(none.region_for("127.0.0.1"), None);
        let set = AwsSettings { region: Some("eu-west-1".into()), ..Default::default() };
        assert_eq!(set.region_for("abc123-ats.iot.us-east-1.amazonaws.com").as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn iot_data_endpoints() {
        assert!(is_iot_data_endpoint("a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com"));
        assert!(is_iot_data_endpoint("A1B2C3.iot.cn-north-1.amazonaws.com.cn"));
        for bad in [
            "evil.example.net",
            "127.0.0.1",
            "x.iot.eu-west-1.amazonaws.com.evil.net",
            "a.b.iot.eu-west-1.amazonaws.com",
            "-ats.iot.eu-west-1.amazonaws.com",
            "a.s3.eu-west-1.amazonaws.com",
        ] {
            assert!(!is_iot_data_endpoint(bad), "{bad}");
        }
    }
}
