//! `dps export enrollments|groups|registrations`: every entity to JSON lines through paged queries. With
//! `--output FILE`, the position is kept in `FILE.continuation` after every page (the next page's token and the
//! file's length then), so a run that stopped is continued by the same command with `--resume`, which cuts the
//! file back to that length and carries on: no line twice, none missing. To stdout, the token is printed to
//! stderr when a run stops (`--continuation TOKEN` continues). The file is removed once the export is whole.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use dps_client::Client;
use dps_client::api::{EnrollmentKind, Page};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Connect, target};
use crate::cli::Global;

#[derive(Debug, Args)]
pub struct Export {
    /// What to export.
    #[arg(value_enum)]
    what: What,
    /// Registrations: only this group's devices (default: every group's, group by group).
    #[arg(long)]
    group: Option<String>,
    /// Write here (default: stdout).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Continue the export that stopped, from OUTPUT.continuation (needs --output).
    #[arg(long, requires = "output", conflicts_with = "continuation")]
    resume: bool,
    /// Start from this continuation token (as a stopped run printed it).
    #[arg(long)]
    continuation: Option<String>,
    /// Items per query page (1..1000).
    #[arg(long, default_value_t = 1000)]
    page_size: usize,
    /// Enrollments and groups: include the symmetric keys (one more call per item).
    #[arg(long)]
    with_keys: bool,
    /// Stop after this many pages (the position is kept as when a run is interrupted).
    #[arg(long, hide = true)]
    max_pages: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum What {
    Enrollments,
    Groups,
    Registrations,
}

/// Where a stopped export is, kept in `OUTPUT.continuation`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Position {
    what: What,
    /// Registrations: the group being exported.
    group: Option<String>,
    /// The next page's token (None: the group's first page).
    continuation: Option<String>,
    /// Lines written so far.
    written: u64,
    /// The output's length after them.
    bytes: u64,
}

pub async fn run(connect: &Connect, global: &Global, args: Export) -> anyhow::Result<()> {
    let client = target::client(connect, global).await?;
    let started = Instant::now();
    let state_path = args.output.as_ref().map(|o| state_name(o));
    let mut position = Position {
        what: args.what,
        group: args.group.clone(),
        continuation: args.continuation.clone(),
        written: 0,
        bytes: 0,
    };
    if args.resume {
        let path = state_path.as_ref().expect("--resume requires --output");
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("nothing to resume: {} is absent (that export finished, or never started)", path.display())
        })?;
        position = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if position.what != args.what {
            bail!("{} belongs to an export of {:?}, not {:?}", path.display(), position.what, args.what);
        }
    }
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(!args.resume)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            if args.resume {
                // Lines written after the position was kept are written again.
                file.set_len(position.bytes)?;
            }
            let mut file = file;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
            Box::new(std::io::BufWriter::new(file))
        }
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let groups = match (args.what, &args.group) {
        (What::Registrations, None) => {
            let mut all = all_ids(&client, EnrollmentKind::Group).await?;
            if let Some(current) = &position.group {
                let at = all.iter().position(|g| g.eq_ignore_ascii_case(current)).unwrap_or(0);
                all.drain(..at);
            }
            all
        }
        (What::Registrations, Some(g)) => vec![g.clone()],
        _ => vec![String::new()],
    };

    let mut pages = 0usize;
    let outcome: anyhow::Result<bool> = async {
        for (i, group) in groups.iter().enumerate() {
            // A group other than the kept one starts at its first page.
            if args.what == What::Registrations && position.group.as_deref() != Some(group.as_str()) {
                position.continuation = None;
                position.group = Some(group.clone());
            }
            loop {
                if args.max_pages.is_some_and(|m| pages >= m) {
                    return Ok(false);
                }
                let page = fetch(&client, args.what, group, args.page_size, position.continuation.as_deref()).await?;
                let items = if args.with_keys { with_keys(&client, args.what, page.items).await? } else { page.items };
                for item in &items {
                    let line = serde_json::to_string(item)?;
                    out.write_all(line.as_bytes())?;
                    out.write_all(b"\n")?;
                    position.bytes += line.len() as u64 + 1;
                }
                out.flush()?;
                position.written += items.len() as u64;
                position.continuation = page.continuation;
                pages += 1;
                let last = position.continuation.is_none();
                if last && let Some(next) = groups.get(i + 1) {
                    // This group is whole: a resumed run starts at the next one.
                    position.group = Some(next.clone());
                }
                if let Some(path) = &state_path {
                    keep(path, &position, last && i + 1 == groups.len())?;
                }
                if last {
                    break;
                }
            }
            position.continuation = None;
        }
        Ok(true)
    }
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let rate = if elapsed > 0.0 { position.written as f64 / elapsed } else { 0.0 };
    let to = args.output.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "stdout".into());
    match outcome {
        Ok(true) => {
            eprintln!("exported {} line(s) to {to} in {elapsed:.1} s ({rate:.0}/s)", position.written);
            Ok(())
        }
        Ok(false) | Err(_) => {
            let why = match &outcome {
                Err(e) => format!("{e:#}"),
                _ => format!("stopped after {pages} page(s) as asked"),
            };
            let how = match (&state_path, &position.continuation) {
                (Some(_), _) => "run the same command with --resume to continue".to_string(),
                (None, Some(token)) => format!("continue with --continuation '{token}'"),
                (None, None) => "run it again".to_string(),
            };
            let err = anyhow::anyhow!("export incomplete after {} line(s): {why}; {how}", position.written);
            match outcome {
                Err(e) => Err(e.context(err.to_string())),
                _ => Err(err),
            }
        }
    }
}

async fn fetch(
    client: &Client,
    what: What,
    group: &str,
    page_size: usize,
    continuation: Option<&str>,
) -> anyhow::Result<Page> {
    Ok(match what {
        What::Enrollments => client.query_enrollments(EnrollmentKind::Individual, page_size, continuation).await?,
        What::Groups => client.query_enrollments(EnrollmentKind::Group, page_size, continuation).await?,
        What::Registrations => client.query_registrations(group, page_size, continuation).await?,
    })
}

async fn all_ids(client: &Client, kind: EnrollmentKind) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut continuation = None;
    loop {
        let page = client.query_enrollments(kind, 1000, continuation.as_deref()).await?;
        ids.extend(
            page.items.iter().filter_map(|g| g.get(kind.id_field()).and_then(Value::as_str)).map(str::to_string),
        );
        continuation = page.continuation;
        if continuation.is_none() {
            return Ok(ids);
        }
    }
}

/// Replace each item's attestation with the one that carries its keys (8 calls at once).
async fn with_keys(client: &Client, what: What, items: Vec<Value>) -> anyhow::Result<Vec<Value>> {
    let kind = match what {
        What::Enrollments => EnrollmentKind::Individual,
        What::Groups => EnrollmentKind::Group,
        What::Registrations => return Ok(items),
    };
    let filled: Vec<anyhow::Result<Value>> = futures::stream::iter(items)
        .map(|mut item| async move {
            let id = item.get(kind.id_field()).and_then(Value::as_str).unwrap_or_default().to_string();
            item["attestation"] = client.attestation_mechanism(kind, &id).await?;
            Ok(item)
        })
        .buffered(8)
        .collect()
        .await;
    filled.into_iter().collect()
}

fn state_name(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".continuation");
    output.with_file_name(name)
}

/// Keep the position (written atomically), or remove it when the export is whole.
fn keep(path: &Path, position: &Position, done: bool) -> anyhow::Result<()> {
    if done {
        let _ = std::fs::remove_file(path);
        return Ok(());
    }
    let tmp = path.with_extension("continuation.tmp");
    std::fs::write(&tmp, serde_json::to_vec(position)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
