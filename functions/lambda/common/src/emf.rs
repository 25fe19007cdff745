//! The core's measurements as CloudWatch Embedded Metric Format: one JSON object per line on stdout (where the
//! logs go too), each carrying its `_aws.CloudWatchMetrics` directives; CloudWatch Logs extracts the metrics.
//! Dimensions are closed sets (outcome, attestation type, allocation policy, mechanism, front door, status
//! class): never a registration ID, a scope or a hub, so the number of series does not grow with the fleet.
//! docs/metrics.md lists every metric.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dps_core::metrics::{
    CustomAllocationRun, FrontDoor, Metrics, Outcome, Written, allocation_policy_label, attestation_label,
    status_class, status_label,
};
use serde_json::{Map, Value, json};

/// Writes EMF lines to `out` (stdout in the functions, a buffer in tests).
pub struct Emf<W> {
    namespace: String,
    out: Mutex<W>,
}

/// One metric of a directive: its name, unit and value.
type Sample = (&'static str, &'static str, f64);

impl<W: Write + Send + 'static> Emf<W> {
    /// A writer of metrics in `namespace` to `out`.
    pub fn new(namespace: impl Into<String>, out: W) -> Self {
        Self { namespace: namespace.into(), out: Mutex::new(out) }
    }

    /// The sink's output so far (tests).
    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    /// One line: the dimension values, then directives of (dimension sets, metrics), each metric's value a root
    /// member as EMF requires; `properties` ride along without becoming metrics or dimensions.
    fn emit(&self, dimensions: &[(&str, &str)], directives: &[(&[&[&str]], &[Sample])], properties: &[(&str, Value)]) {
        let mut root = Map::new();
        let mut list = Vec::new();
        for (sets, samples) in directives {
            let metrics: Vec<Value> =
                samples.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect();
            list.push(json!({"Namespace": self.namespace, "Dimensions": sets, "Metrics": metrics}));
            for (name, _, value) in *samples {
                root.insert((*name).to_string(), json!(value));
            }
        }
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        root.insert("_aws".into(), json!({"Timestamp": millis, "CloudWatchMetrics": list}));
        for (name, value) in dimensions {
            root.insert((*name).to_string(), json!(value));
        }
        for (name, value) in properties {
            root.insert((*name).to_string(), value.clone());
        }
        let mut line = Value::Object(root).to_string();
        line.push('\n');
        // One write per line: the log lines written to the same stdout never land inside it.
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(err) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            tracing::warn!(error = %err, "could not write a metrics line");
        }
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

const NONE: &[&str] = &[];

impl<W: Write + Send + 'static> Metrics for Emf<W> {
    fn registration_written(&self, w: &Written) {
        let dims = [
            ("Outcome", status_label(w.status)),
            ("AttestationType", attestation_label(w.attestation)),
            ("AllocationPolicy", allocation_policy_label(w.allocation_policy)),
        ];
        let by: &[&[&str]] = &[NONE, &["Outcome"], &["Outcome", "AttestationType", "AllocationPolicy"]];
        let counts: &[Sample] = &[("Registrations", "Count", 1.0)];
        let hub: &[Sample] = &[("HubFailures", "Count", flag(w.hub_failed()))];
        let properties: Vec<(&str, Value)> = w.error_code.map(|c| ("ErrorCode", json!(c))).into_iter().collect();
        self.emit(&dims, &[(by, counts), (&[NONE], hub)], &properties);
    }

    fn registration_ended(&self, outcome: Outcome, latency: Duration) {
        let samples: &[Sample] = &[("RegistrationLatency", "Milliseconds", millis(latency))];
        self.emit(&[("Outcome", outcome.as_str())], &[(&[NONE, &["Outcome"]], samples)], &[]);
    }

    fn custom_allocation(&self, run: &CustomAllocationRun) {
        let mut samples: Vec<Sample> = vec![
            ("CustomAllocationDuration", "Milliseconds", millis(run.duration)),
            ("CustomAllocationFailures", "Count", flag(run.error_code.is_some())),
        ];
        if let Some(fuel) = run.fuel_consumed {
            samples.push(("CustomAllocationFuel", "Count", fuel as f64));
        }
        let properties: Vec<(&str, Value)> = run.error_code.map(|c| ("ErrorCode", json!(c))).into_iter().collect();
        self.emit(&[("Mechanism", run.mechanism.as_str())], &[(&[NONE, &["Mechanism"]], &samples)], &properties);
    }

    fn request(&self, front_door: FrontDoor, status: u16, latency: Duration) {
        let dims = [("FrontDoor", front_door.as_str()), ("StatusClass", status_class(status))];
        let traffic: &[Sample] = &[("Requests", "Count", 1.0), ("RequestLatency", "Milliseconds", millis(latency))];
        let alarms: &[Sample] =
            &[("ServerErrors", "Count", flag(status >= 500)), ("Throttles", "Count", flag(status == 429))];
        self.emit(&dims, &[(&[&["FrontDoor", "StatusClass"]], traffic), (&[&["FrontDoor"]], alarms)], &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_core::metrics::CustomMechanism;
    use dps_core::model::{AllocationPolicy, AttestationType, RegistrationStatus};

    /// The members the EMF specification requires, checked on one parsed line: `_aws` with a millisecond
    /// `Timestamp` and `CloudWatchMetrics` directives (`Namespace`, `Dimensions` as arrays of at most 30 names,
    /// `Metrics` of at most 100 with a `Name`), every dimension a string member of the root and every metric
    /// a number member.
    fn check_emf(line: &Value) {
        let aws = &line["_aws"];
        assert!(aws["Timestamp"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "{line}");
        let directives = aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics");
        assert!(!directives.is_empty());
        for directive in directives {
            let namespace = directive["Namespace"].as_str().expect("Namespace");
            assert!(!namespace.is_empty() && namespace.len() <= 255);
            for set in directive["Dimensions"].as_array().expect("Dimensions") {
                let set = set.as_array().expect("a dimension set is an array");
                assert!(set.len() <= 30);
                for name in set {
                    let name = name.as_str().expect("dimension names are strings");
                    assert!(line[name].is_string(), "dimension {name} is a string member: {line}");
                }
            }
            let metrics = directive["Metrics"].as_array().expect("Metrics");
            assert!(!metrics.is_empty() && metrics.len() <= 100);
            for metric in metrics {
                let name = metric["Name"].as_str().expect("Name");
                assert!(line[name].is_number(), "metric {name} is a number member: {line}");
            }
        }
    }

    fn lines(emf: Emf<Vec<u8>>) -> Vec<Value> {
        let text = String::from_utf8(emf.into_inner()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).expect("each line is one JSON object")).collect()
    }

    #[test]
    fn every_measurement_is_one_valid_emf_line() {
        let emf = Emf::new("DPS/test", Vec::new());
        emf.registration_written(&Written {
            attestation: AttestationType::X509,
            allocation_policy: AllocationPolicy::GeoLatency,
            status: RegistrationStatus::Failed,
            error_code: Some(dps_core::hubs::codes::HUB_UNREACHABLE),
        });
        emf.registration_ended(Outcome::Throttled, Duration::from_micros(1500));
        emf.custom_allocation(&CustomAllocationRun {
            mechanism: CustomMechanism::Policy,
            duration: Duration::from_millis(3),
            fuel_consumed: Some(12_345),
            error_code: None,
        });
        emf.request(FrontDoor::Device, 503, Duration::from_millis(2));
        let lines = lines(emf);
        assert_eq!(lines.len(), 4);
        for line in &lines {
            check_emf(line);
            assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "DPS/test");
        }
        let [written, ended, custom, request] = &lines[..] else { unreachable!() };
        assert_eq!((&written["Outcome"], &written["AttestationType"]), (&json!("failed"), &json!("x509")));
        assert_eq!((&written["AllocationPolicy"], &written["HubFailures"]), (&json!("geoLatency"), &json!(1.0)));
        assert_eq!(written["ErrorCode"], 503_301);
        assert_eq!((&ended["Outcome"], &ended["RegistrationLatency"]), (&json!("throttled"), &json!(1.5)));
        assert_eq!((&custom["CustomAllocationFuel"], &custom["Mechanism"]), (&json!(12_345.0), &json!("policy")));
        assert_eq!(custom["CustomAllocationFailures"], 0.0);
        assert_eq!((&request["StatusClass"], &request["ServerErrors"]), (&json!("5xx"), &json!(1.0)));
        assert_eq!(request["Throttles"], 0.0);
        // No line names a device: dimensions are closed sets.
        for line in &lines {
            assert!(!line.to_string().contains("registrationId"), "{line}");
        }
    }
}
