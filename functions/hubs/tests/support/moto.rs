//! One moto server (iot + iot-data) per test binary, started on first use on a free port of 127.0.0.1 and
//! stopped when the test binary exits (its stdin pipe closes, and the wrapper shell kills the server). The same
//! way as dps-store-dynamodb's tests (see there for why one request at a time).
//!
//! moto computes certificate IDs as AWS does (SHA-256 of the DER) only with its `iot.use_valid_cert` option;
//! the server is started with it, so that the tests check the connector's certificate IDs against moto's.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// moto's own `main`, serving one request at a time, with AWS's certificate IDs.
const MOTO: &str = r#"
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

static SERVER: OnceLock<Moto> = OnceLock::new();

/// `http://127.0.0.1:PORT` of this binary's moto server (started on first call; panics if moto is missing).
pub fn moto_endpoint() -> String {
    SERVER.get_or_init(start).endpoint.clone()
}

fn moto_server_path() -> PathBuf {
    if let Some(path) = std::env::var_os("DPS_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server")
}

fn interpreter(script: &PathBuf) -> Option<PathBuf> {
    let mut head = [0u8; 512];
    let n = std::fs::File::open(script).ok()?.read(&mut head).ok()?;
    let first = std::str::from_utf8(&head[..n]).ok()?.lines().next()?;
    Some(PathBuf::from(first.strip_prefix("#!")?.split_whitespace().next()?))
}

fn start() -> Moto {
    let script = moto_server_path();
    let python = interpreter(&script).unwrap_or_else(|| {
        panic!(
            "moto is not installed: {} is missing or is not a Python entry point.\n\
             Run scripts/setup/moto.sh (installs moto[server] into .venv), or set DPS_MOTO_SERVER to a moto_server \
             script. The AWS IoT Core tests need a real IoT API server and are never skipped.",
            script.display()
        )
    });
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let log = std::env::temp_dir().join(format!("dps-moto-iot-{}-{port}.log", std::process::id()));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(WRAPPER)
        .arg(&python)
        .arg(MOTO)
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
