//! What the workspace's tests share (a dev-dependency of the crates whose tests use it).
//!
//! [`moto_endpoint`]: one moto server per test binary (DynamoDB, S3, KMS, IoT and IoT data in one), the
//! `moto_server` that `scripts/setup/moto.sh` installs into the repository's `.venv` (or `DPS_MOTO_SERVER`),
//! started on first use on a free port of 127.0.0.1 and stopped when the test binary exits (its stdin pipe
//! closes, and the wrapper shell kills the server). Tests that need it are never skipped: a missing moto fails
//! them with the setup hint.
//!
//! How it runs moto:
//! - one request at a time (`threaded=False`): moto answers requests on threads without locking its tables, and
//!   a cancelled DynamoDB transaction restores a snapshot of the tables it touched, which can undo writes made
//!   meanwhile by other requests; DynamoDB serialises writes to an item, and so does the server run this way;
//! - with `iot.use_valid_cert`, so that IoT certificate IDs are computed as AWS computes them (SHA-256 of the
//!   DER) and the connector's certificate IDs are checked against moto's.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Runs moto's own `main` with its werkzeug server forced to serve one request at a time, and AWS's IoT
/// certificate IDs.
const SERIAL_MOTO: &str = r#"
import sys
import moto.server as server
from moto.core.config import default_user_config
default_user_config["iot"] = {"use_valid_cert": True}
run_simple = server.run_simple
def serial(*args, **kwargs):
    kwargs["threaded"] = False
    return run_simple(*args, **kwargs)
server.run_simple = serial
server.main(sys.argv[1:])
"#;

/// Kills the server when our end of its stdin closes (the test binary exited, however it exited).
const WRAPPER: &str = r#""$0" -c "$1" -H 127.0.0.1 -p "$2" >"$3" 2>&1 </dev/null & pid=$!; cat >/dev/null; kill $pid 2>/dev/null; wait $pid"#;

struct Moto {
    endpoint: String,
    _child: Mutex<(Child, ChildStdin)>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// `http://127.0.0.1:PORT` of this binary's moto server (started on first call; panics if moto is missing).
pub fn moto_endpoint() -> String {
    MOTO.get_or_init(start).endpoint.clone()
}

fn moto_server_path() -> PathBuf {
    if let Some(path) = std::env::var_os("DPS_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server")
}

/// The Python interpreter of a `moto_server` entry point (its shebang).
fn interpreter(script: &PathBuf) -> Option<PathBuf> {
    let mut head = [0u8; 512];
    let n = std::fs::File::open(script).ok()?.read(&mut head).ok()?;
    let first = std::str::from_utf8(&head[..n]).ok()?.lines().next()?;
    let python = first.strip_prefix("#!")?.split_whitespace().next()?;
    Some(PathBuf::from(python))
}

fn start() -> Moto {
    let script = moto_server_path();
    let python = interpreter(&script).unwrap_or_else(|| {
        panic!(
            "moto is not installed: {} is missing or is not a Python entry point.\n\
             Run scripts/setup/moto.sh (installs moto[server] into .venv), or set DPS_MOTO_SERVER to a moto_server \
             script. The tests that use moto need a real AWS API server and are never skipped.",
            script.display()
        )
    });
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let log = std::env::temp_dir().join(format!("dps-moto-{}-{port}.log", std::process::id()));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(WRAPPER)
        .arg(&python)
        .arg(SERIAL_MOTO)
        .arg(port.to_string())
        .arg(&log)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start sh for moto_server");
    let stdin = child.stdin.take().expect("moto wrapper stdin");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("moto_server did not listen on 127.0.0.1:{port} within 60 s; its output:\n{output}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto { endpoint: format!("http://127.0.0.1:{port}"), _child: Mutex::new((child, stdin)) }
}

/// Fail unless every one of `documents` (JSON texts) is valid against the JSON Schema (draft 2020-12, formats
/// checked) at `schema`, as judged by the `jsonschema` package in the same Python as moto (scripts/setup/moto.sh
/// installs both). Documentation schemas are checked against what the code emits this way.
pub fn assert_valid_json(schema: &std::path::Path, documents: &[String]) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    const CHECK: &str = r#"
import json, sys
from jsonschema import Draft202012Validator as V
v = V(json.load(open(sys.argv[1])), format_checker=V.FORMAT_CHECKER)
bad = 0
for n, line in enumerate(sys.stdin, 1):
    for e in v.iter_errors(json.loads(line)):
        bad += 1
        print(f"document {n}: {e.json_path}: {e.message}")
sys.exit(1 if bad else 0)
"#;
    let script = moto_server_path();
    let python = interpreter(&script).unwrap_or_else(|| {
        panic!("no Python with jsonschema: run scripts/setup/moto.sh ({} missing)", script.display())
    });
    let mut child = Command::new(&python)
        .args(["-c", CHECK])
        .arg(schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    let mut stdin = child.stdin.take().expect("stdin");
    for doc in documents {
        writeln!(stdin, "{}", doc.replace('\n', " ")).expect("write to the schema check");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("schema check");
    assert!(
        out.status.success(),
        "documents do not match {}:\n{}",
        schema.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}
