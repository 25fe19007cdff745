//! How client commands print: aligned tables and `key: value` lines for people, JSON with `--json` for scripts.
//! Keys (symmetric keys, connection strings) are printed only where a command was asked for them.

use std::io::Write as _;

use serde_json::Value;

/// One line on stdout; a closed pipe (`| head`) is not an error worth a panic.
pub fn line(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Print `value` as pretty JSON.
pub fn json(value: &Value) {
    line(&serde_json::to_string_pretty(value).unwrap_or_default());
}

/// One entity: JSON (`as_json`), or its `key: value` lines.
pub fn entity(as_json: bool, value: &Value) {
    if as_json { json(value) } else { fields(value) }
}

/// A deletion done: `{ID_FIELD: ID, "deleted": true}` (`as_json`), or `message`.
pub fn deleted(as_json: bool, id_field: &str, id: &str, message: &str) {
    if as_json { json(&serde_json::json!({ id_field: id, "deleted": true })) } else { line(message) }
}

/// A field of a JSON entity as text for a table cell (`-` when absent).
pub fn cell(value: &Value, pointer: &str) -> String {
    match value.pointer(pointer) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) if s.is_empty() => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.is_empty() => "-".into(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string()))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// Print `items` as a JSON array (`as_json`) or as a table of `columns`: (header, JSON pointer of the cell).
pub fn list(as_json: bool, items: &[Value], columns: &[(&str, &str)]) {
    if as_json {
        json(&Value::Array(items.to_vec()));
        return;
    }
    let header: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    let rows: Vec<Vec<String>> =
        items.iter().map(|item| columns.iter().map(|(_, p)| cell(item, p)).collect()).collect();
    table(&header, &rows);
}

/// Print rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let row = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == last { c.to_string() } else { format!("{c:<w$}", w = widths[i]) })
            .collect();
        line(text.join("  ").trim_end());
    };
    row(header.to_vec());
    for r in rows {
        row(r.iter().map(String::as_str).collect());
    }
}

/// Print an entity as `key: value` lines, nested objects indented, for people.
pub fn fields(value: &Value) {
    fn walk(value: &Value, indent: usize, out: &mut Vec<String>) {
        let Value::Object(map) = value else {
            out.push(format!("{:indent$}{}", "", value));
            return;
        };
        let width = map.keys().map(|k| k.len()).max().unwrap_or(0) + 1;
        for (k, v) in map {
            match v {
                Value::Object(o) if !o.is_empty() => {
                    out.push(format!("{:indent$}{k}:", ""));
                    walk(v, indent + 2, out);
                }
                Value::String(s) if s.contains('\n') => {
                    out.push(format!("{:indent$}{k}:", ""));
                    for l in s.lines() {
                        out.push(format!("{:indent$}  {l}", ""));
                    }
                }
                _ => out.push(format!("{:indent$}{:<width$} {}", "", format!("{k}:"), cell(v, ""))),
            }
        }
    }
    let mut out = Vec::new();
    walk(value, 0, &mut out);
    for l in out {
        line(&l);
    }
}

/// An attestation mechanism's type and the parts a person checks, never keys.
pub fn attestation_summary(entity: &Value) -> String {
    let kind = entity.pointer("/attestation/type").and_then(Value::as_str).unwrap_or("-");
    let x509 = entity.pointer("/attestation/x509");
    match (kind, x509) {
        ("x509", Some(x)) if x.get("caReferences").is_some() => {
            format!("x509 (CA {})", cell(x, "/caReferences/primary"))
        }
        ("x509", Some(x)) if x.get("signingCertificates").is_some() => "x509 (signing certificate)".into(),
        ("x509", Some(_)) => "x509 (client certificate)".into(),
        (k, _) => k.to_string(),
    }
}
