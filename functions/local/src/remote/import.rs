//! `dps import FILE`: enrollments or groups from CSV or JSONL through the bulk API (at most 10 items a call,
//! `--concurrency` calls at once, 429 answers waited out as `Retry-After` says, within a bound). A batch the
//! server refuses as a whole is retried item by item, so one bad row fails alone. Failed rows are written, in
//! the input's own format, to a file that can be imported again; their reasons to a JSONL file beside it.
//! Formats: docs/cli.md.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use dps_client::api::{BulkMode, EnrollmentKind};
use dps_client::{Client, ErrorKind};
use futures::StreamExt;
use serde_json::{Map, Value, json};

use super::{Connect, PartialFailure, output, target};
use crate::cli::Global;

#[derive(Debug, Args)]
pub struct Import {
    /// The file: `.csv` (a header row names the columns), else JSON lines (one entity per line, as export writes).
    file: PathBuf,
    /// What the rows are.
    #[arg(long, value_enum, default_value_t = What::Enrollments)]
    kind: What,
    /// Override the format the file name suggests.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// `create` fails rows that exist; `update` creates or replaces.
    #[arg(long, value_enum, default_value_t = Mode::Create)]
    mode: Mode,
    /// Bulk calls in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    concurrency: u32,
    /// Items per bulk call (the API takes at most 10).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10))]
    batch_size: u32,
    /// Where failed rows go (default: FILE with `.failed` before its extension).
    #[arg(long)]
    failed: Option<PathBuf>,
    /// Longest `Retry-After` honoured, in seconds (a longer one is cut to this).
    #[arg(long, default_value_t = 30)]
    max_retry_wait: u64,
    /// Most attempts of one bulk call while it is throttled.
    #[arg(long, default_value_t = 10)]
    max_attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum What {
    /// Individual enrollments.
    Enrollments,
    /// Enrollment groups.
    Groups,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Create,
    Update,
}

/// One input row: where it was, its text as read (for the failed file), and the entity or why it is not one.
struct Row {
    line: usize,
    raw: Raw,
    id: String,
    item: Result<Value, String>,
}

enum Raw {
    Line(String),
    Record(csv::StringRecord),
}

/// A row that failed, and why.
struct Failure {
    row: Row,
    code: Option<u64>,
    reason: String,
}

pub async fn run(connect: &Connect, global: &Global, args: Import) -> anyhow::Result<()> {
    let kind = match args.kind {
        What::Enrollments => EnrollmentKind::Individual,
        What::Groups => EnrollmentKind::Group,
    };
    let format = args.format.unwrap_or_else(|| {
        if args.file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) { Format::Csv } else { Format::Jsonl }
    });
    let (header, rows) = match format {
        Format::Csv => read_csv(&args.file, kind)?,
        Format::Jsonl => (None, read_jsonl(&args.file, kind)?),
    };
    let retry = dps_client::Retries {
        max_attempts: args.max_attempts.max(1),
        max_wait: std::time::Duration::from_secs(args.max_retry_wait),
    };
    let client = target::client_with(connect, global, retry).await?;
    let failed_path = args.failed.clone().unwrap_or_else(|| failed_name(&args.file));
    let mode = match args.mode {
        Mode::Create => BulkMode::Create,
        Mode::Update => BulkMode::Update,
    };

    let total = rows.len();
    let started = Instant::now();
    let bar = progress(total as u64);
    let mut failures: Vec<Failure> = Vec::new();
    let mut sendable = Vec::with_capacity(total);
    for row in rows {
        match &row.item {
            Ok(_) => sendable.push(row),
            Err(reason) => {
                let reason = reason.clone();
                failures.push(Failure { row, code: None, reason });
            }
        }
    }
    bar.inc(failures.len() as u64);
    let mut batches = Vec::new();
    let mut rest = sendable.into_iter().peekable();
    while rest.peek().is_some() {
        batches.push(rest.by_ref().take(args.batch_size as usize).collect::<Vec<_>>());
    }
    let mut results = futures::stream::iter(batches)
        .map(|batch| send(&client, kind, mode, batch))
        .buffer_unordered(args.concurrency as usize);
    while let Some(outcome) = results.next().await {
        let (done, failed) = outcome?;
        bar.inc((done + failed.len()) as u64);
        failures.extend(failed);
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();

    failures.sort_by_key(|f| f.row.line);
    let errors_path = errors_name(&failed_path);
    if failures.is_empty() {
        let _ = std::fs::remove_file(&failed_path);
        let _ = std::fs::remove_file(&errors_path);
    } else {
        write_failures(&failed_path, &errors_path, header.as_ref(), &failures)?;
    }
    let stats = client.stats();
    let throttled = stats.throttled.load(std::sync::atomic::Ordering::Relaxed);
    let waited = stats.waited_ms.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0;
    let succeeded = total - failures.len();
    let rate = if elapsed > 0.0 { succeeded as f64 / elapsed } else { 0.0 };
    if connect.json {
        output::json(&json!({
            "total": total, "succeeded": succeeded, "failed": failures.len(), "seconds": elapsed,
            "perSecond": rate, "throttled": throttled, "waitedSeconds": waited,
            "failedFile": (!failures.is_empty()).then(|| failed_path.display().to_string()),
            "errorsFile": (!failures.is_empty()).then(|| errors_path.display().to_string()),
        }));
    } else {
        eprintln!(
            "imported {succeeded} of {total} {}(s) in {elapsed:.1} s ({rate:.0}/s); throttled {throttled} time(s), \
             waited {waited:.1} s",
            kind.noun()
        );
        for f in failures.iter().take(5) {
            eprintln!("  line {}: {}: {}", f.row.line, f.row.id, f.reason);
        }
        if failures.len() > 5 {
            eprintln!("  ... and {} more", failures.len() - 5);
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(PartialFailure(format!(
        "{} row(s) failed: written to {} (reasons in {}); fix them and import that file again",
        failures.len(),
        failed_path.display(),
        errors_path.display()
    ))
    .into())
}

/// One bulk call; on a refusal of the whole batch, each item alone. Returns the items done and the failures.
/// Errors only when no call could succeed (the key is refused).
async fn send(
    client: &Client,
    kind: EnrollmentKind,
    mode: BulkMode,
    batch: Vec<Row>,
) -> anyhow::Result<(usize, Vec<Failure>)> {
    let items: Vec<Value> = batch.iter().filter_map(|r| r.item.as_ref().ok().cloned()).collect();
    match client.bulk(kind, mode, &items).await {
        Ok(errors) => {
            let mut failed = Vec::new();
            let mut done = 0;
            for row in batch {
                match errors.iter().find(|e| e.id.eq_ignore_ascii_case(&row.id)) {
                    Some(e) => failed.push(Failure { row, code: Some(e.error_code), reason: e.message.clone() }),
                    None => done += 1,
                }
            }
            Ok((done, failed))
        }
        Err(e) if e.kind == ErrorKind::Auth => Err(e.into()),
        Err(e) if e.kind == ErrorKind::Usage && batch.len() > 1 => {
            let mut done = 0;
            let mut failed = Vec::new();
            for row in batch {
                let (d, f) = Box::pin(send(client, kind, mode, vec![row])).await?;
                done += d;
                failed.extend(f);
            }
            Ok((done, failed))
        }
        Err(e) => {
            let code = e.error_code;
            let reason = e.to_string();
            Ok((0, batch.into_iter().map(|row| Failure { row, code, reason: reason.clone() }).collect()))
        }
    }
}

/// A progress bar on a terminal (stderr), nothing when piped.
fn progress(total: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows ({percent}%)  {elapsed} elapsed, eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

fn failed_name(input: &Path) -> PathBuf {
    let stem = input.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "import".into());
    let name = match input.extension() {
        Some(ext) => format!("{stem}.failed.{}", ext.to_string_lossy()),
        None => format!("{stem}.failed"),
    };
    input.with_file_name(name)
}

fn errors_name(failed: &Path) -> PathBuf {
    let stem = failed.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    failed.with_file_name(format!("{stem}.errors.jsonl"))
}

fn write_failures(
    failed: &Path,
    errors: &Path,
    header: Option<&csv::StringRecord>,
    failures: &[Failure],
) -> anyhow::Result<()> {
    let open = |p: &Path| std::fs::File::create(p).with_context(|| format!("writing {}", p.display()));
    let mut reasons = std::io::BufWriter::new(open(errors)?);
    for f in failures {
        let line = json!({ "line": f.row.line, "id": f.row.id, "errorCode": f.code, "reason": f.reason });
        writeln!(reasons, "{line}")?;
    }
    reasons.flush()?;
    match header {
        Some(header) => {
            let mut out = csv::Writer::from_writer(open(failed)?);
            out.write_record(header)?;
            for f in failures {
                match &f.row.raw {
                    Raw::Record(r) => out.write_record(r)?,
                    Raw::Line(l) => out.write_record([l])?,
                }
            }
            out.flush()?;
        }
        None => {
            let mut out = std::io::BufWriter::new(open(failed)?);
            for f in failures {
                match &f.row.raw {
                    Raw::Line(l) => writeln!(out, "{l}")?,
                    Raw::Record(r) => writeln!(out, "{}", r.iter().collect::<Vec<_>>().join(","))?,
                }
            }
            out.flush()?;
        }
    }
    Ok(())
}

/// Fields the service sets; dropped from imported lines so that an export imports cleanly.
const SERVER_FIELDS: [&str; 4] = ["etag", "createdDateTimeUtc", "lastUpdatedDateTimeUtc", "registrationState"];

fn read_jsonl(path: &Path, kind: EnrollmentKind) -> anyhow::Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Value>(line).map_err(|e| format!("not JSON: {e}"));
        let (id, item) = match parsed {
            Ok(Value::Object(mut o)) => {
                for f in SERVER_FIELDS {
                    o.remove(f);
                }
                match o.get(kind.id_field()).and_then(Value::as_str).map(str::to_string) {
                    Some(id) => (id, Ok(Value::Object(o))),
                    None => (String::new(), Err(format!("no '{}'", kind.id_field()))),
                }
            }
            Ok(_) => (String::new(), Err("not a JSON object".to_string())),
            Err(e) => (String::new(), Err(e)),
        };
        rows.push(Row { line: i + 1, raw: Raw::Line(line.to_string()), id, item });
    }
    Ok(rows)
}

/// CSV columns (docs/cli.md); any other column is refused before anything is sent.
const CSV_COMMON: [&str; 10] = [
    "primaryKey",
    "secondaryKey",
    "certificate",
    "iotHubs",
    "allocationPolicy",
    "provisioningStatus",
    "iotEdge",
    "tags",
    "desired",
    "iotHubHostName",
];
const CSV_ENROLLMENT: [&str; 3] = ["registrationId", "deviceId", "tpmEndorsementKey"];
const CSV_GROUP: [&str; 3] = ["enrollmentGroupId", "caReference", "registrationIdPrefix"];

fn read_csv(path: &Path, kind: EnrollmentKind) -> anyhow::Result<(Option<csv::StringRecord>, Vec<Row>)> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let header = reader.headers().context("reading the CSV header")?.clone();
    let own: &[&str] = match kind {
        EnrollmentKind::Individual => &CSV_ENROLLMENT,
        EnrollmentKind::Group => &CSV_GROUP,
    };
    for column in &header {
        if !CSV_COMMON.contains(&column) && !own.contains(&column) {
            bail!(
                "{}: unknown column '{column}' for {}s (known: {}, {})",
                path.display(),
                kind.noun(),
                own.join(", "),
                CSV_COMMON.join(", ")
            );
        }
    }
    if !header.iter().any(|c| c == kind.id_field()) {
        bail!("{}: the header needs a '{}' column", path.display(), kind.id_field());
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let item = Err(format!("unreadable CSV row: {e}"));
                rows.push(Row { line, raw: Raw::Line(String::new()), id: String::new(), item });
                continue;
            }
        };
        let fields: Map<String, Value> = header
            .iter()
            .zip(record.iter())
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let id = fields.get(kind.id_field()).and_then(Value::as_str).unwrap_or_default().to_string();
        let item = csv_entity(kind, &fields);
        rows.push(Row { line, raw: Raw::Record(record), id, item });
    }
    Ok((Some(header), rows))
}

/// One CSV row as the service's JSON.
fn csv_entity(kind: EnrollmentKind, f: &Map<String, Value>) -> Result<Value, String> {
    let get = |k: &str| f.get(k).and_then(Value::as_str);
    let id = get(kind.id_field()).ok_or_else(|| format!("no {}", kind.id_field()))?;
    let mut body = json!({ kind.id_field(): id });
    let attestation = if let Some(ca) = get("caReference") {
        json!({ "type": "x509", "x509": { "caReferences": { "primary": ca } } })
    } else if let Some(cert) = get("certificate") {
        let pem = if cert.starts_with("-----BEGIN") {
            cert.to_string()
        } else {
            std::fs::read_to_string(cert).map_err(|e| format!("reading certificate file '{cert}': {e}"))?
        };
        let field = if kind == EnrollmentKind::Group { "signingCertificates" } else { "clientCertificates" };
        json!({ "type": "x509", "x509": { field: { "primary": { "certificate": pem } } } })
    } else if let Some(ek) = get("tpmEndorsementKey") {
        json!({ "type": "tpm", "tpm": { "endorsementKey": ek } })
    } else {
        let mut keys = Map::new();
        for k in ["primaryKey", "secondaryKey"] {
            if let Some(v) = get(k) {
                keys.insert(k.into(), json!(v));
            }
        }
        json!({ "type": "symmetricKey", "symmetricKey": keys })
    };
    body["attestation"] = attestation;
    for k in ["deviceId", "allocationPolicy", "provisioningStatus", "registrationIdPrefix", "iotHubHostName"] {
        if let Some(v) = get(k) {
            body[k] = json!(v);
        }
    }
    if let Some(hubs) = get("iotHubs") {
        let list: Vec<&str> = hubs.split([';', ' ']).filter(|h| !h.is_empty()).collect();
        body["iotHubs"] = json!(list);
    }
    if let Some(e) = get("iotEdge") {
        let edge = e.parse::<bool>().map_err(|_| format!("iotEdge must be true or false, not '{e}'"))?;
        body["capabilities"] = json!({ "iotEdge": edge });
    }
    for (column, path) in [("tags", "/initialTwin/tags"), ("desired", "/initialTwin/properties/desired")] {
        if let Some(text) = get(column) {
            let value: Value = serde_json::from_str(text).map_err(|e| format!("{column} is not JSON: {e}"))?;
            if !value.is_object() {
                return Err(format!("{column} must be a JSON object"));
            }
            match path {
                "/initialTwin/tags" => body["initialTwin"]["tags"] = value,
                _ => body["initialTwin"]["properties"]["desired"] = value,
            }
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_rows_go_beside_the_input_in_its_format() {
        assert_eq!(failed_name(Path::new("/x/devices.csv")), PathBuf::from("/x/devices.failed.csv"));
        assert_eq!(failed_name(Path::new("d.jsonl")), PathBuf::from("d.failed.jsonl"));
        assert_eq!(errors_name(Path::new("/x/devices.failed.csv")), PathBuf::from("/x/devices.failed.errors.jsonl"));
    }

    #[test]
    fn csv_rows_become_service_entities() {
        let mut f = Map::new();
        f.insert("registrationId".into(), json!("dev-1"));
        f.insert("primaryKey".into(), json!("a2V5"));
        f.insert("iotHubs".into(), json!("h1.example;h2.example"));
        f.insert("tags".into(), json!("{\"site\":\"p2\"}"));
        f.insert("iotEdge".into(), json!("true"));
        let e = csv_entity(EnrollmentKind::Individual, &f).unwrap();
        assert_eq!(e["attestation"]["symmetricKey"]["primaryKey"], "a2V5");
        assert_eq!(e["iotHubs"], json!(["h1.example", "h2.example"]));
        assert_eq!(e["initialTwin"]["tags"]["site"], "p2");
        assert_eq!(e["capabilities"]["iotEdge"], true);
        f.insert("iotEdge".into(), json!("yes"));
        assert!(csv_entity(EnrollmentKind::Individual, &f).is_err());
    }
}
