//! Test tool for the software-TPM oracle (tests/tpm): wraps a given HMAC key for a TPM as the server does.
//!
//! `tpm-challenge <EK TPM2B_PUBLIC, base64> <SRK TPM2B_PUBLIC, base64>` reads the key (64 hex digits) from stdin
//! and prints the base64 `authenticationKey` blob. Errors go to stderr with exit status 2.

use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use dps_attestation::tpm::{RsaStorageKey, wrap_key};

fn main() {
    if let Err(message) = run() {
        eprintln!("tpm-challenge: {message}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ek, srk] = args.as_slice() else {
        return Err("usage: tpm-challenge <EK base64> <SRK base64> < key-hex".into());
    };
    let decode = |what: &str, v: &str| B64.decode(v).map_err(|e| format!("{what}: {e}"));
    let ek = RsaStorageKey::parse_endorsement_key(&decode("EK", ek)?).map_err(|e| format!("EK: {e}"))?;
    let srk = RsaStorageKey::parse_storage_root_key(&decode("SRK", srk)?).map_err(|e| format!("SRK: {e}"))?;
    let mut hex = String::new();
    std::io::stdin().read_to_string(&mut hex).map_err(|e| e.to_string())?;
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return Err("the key must be 64 hex digits".into());
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    let blob = wrap_key(&mut rand_core::OsRng, &ek, &srk, &key).map_err(|e| e.to_string())?;
    println!("{}", B64.encode(blob));
    Ok(())
}
