//! Operation counters: one row per (scope, day, kind), added to in the transaction of the write it counts.

use dps_core::error::Result;
use dps_core::model::{OperationCount, OperationKind};
use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use crate::tables::{OPERATIONS, internal};

fn kind_from_str(name: &str) -> Option<OperationKind> {
    OperationKind::ALL.into_iter().find(|k| k.as_str() == name)
}

/// Add `count` to a counter inside the caller's transaction.
pub(crate) fn add_count(
    txn: &WriteTransaction,
    scope: &str,
    date: &str,
    kind: OperationKind,
    count: u64,
) -> Result<()> {
    let mut table = txn.open_table(OPERATIONS).map_err(internal)?;
    let at = (scope, date, kind.as_str());
    let current = table.get(at).map_err(internal)?.map(|v| v.value()).unwrap_or(0);
    table.insert(at, current.saturating_add(count)).map_err(internal)?;
    Ok(())
}

/// Count `meter` (if any) inside the transaction of the write it counts.
pub(crate) fn count(txn: &WriteTransaction, scope: &str, meter: Option<&OperationCount>) -> Result<()> {
    match meter {
        Some(m) => add_count(txn, scope, &m.date, m.kind, m.count),
        None => Ok(()),
    }
}

/// One scope's counters from day `from` to day `to` (inclusive), by day then kind.
pub(crate) fn read(txn: &ReadTransaction, scope: &str, from: &str, to: &str) -> Result<Vec<OperationCount>> {
    let table = txn.open_table(OPERATIONS).map_err(internal)?;
    let mut out = Vec::new();
    let range = table.range::<(&str, &str, &str)>((scope, from, "")..).map_err(internal)?;
    for entry in range {
        let (k, v) = entry.map_err(internal)?;
        let (entry_scope, date, kind) = k.value();
        if entry_scope != scope || date > to {
            break;
        }
        if let Some(kind) = kind_from_str(kind) {
            out.push(OperationCount { date: date.to_string(), kind, count: v.value() });
        }
    }
    out.sort_by(|a, b| (&a.date, a.kind).cmp(&(&b.date, b.kind)));
    Ok(out)
}
