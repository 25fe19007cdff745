//! What X.509 attestation costs per registration: reading the presented chain (parse, thumbprints) and
//! validating it to the group's certificate, for RSA-2048 and ECDSA P-256 chains of length 1 to 3, as a
//! registration does it (`parse+verify`; the group's certificate is parsed once per process and cached, so its
//! parse, `parse-anchor`, is not part of a registration), and the validation alone (`verify`: rustls-webpki's
//! signature and rule checks). Length 1 is a leaf the root signed; 2 a leaf and its intermediate; 3 the root too.
//!
//! `cargo bench --workspace --bench x509` (the `testing` feature is on in workspace builds).

use criterion::{Criterion, criterion_group, criterion_main};
use dps_attestation::testing::{self, KeyKind};
use dps_attestation::x509::{Certificate, Chain};
use time::OffsetDateTime;

fn chains(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    for (name, kind) in [("p256", KeyKind::EcdsaP256), ("rsa2048", KeyKind::Rsa2048(0))] {
        let root = testing::root("root", kind);
        let inter = root.intermediate("inter", kind);
        let anchor = Certificate::from_der(&root.der).unwrap();
        let one = root.device("dev", kind);
        let two = inter.device("dev", kind);
        let cases: [(&str, Vec<Vec<u8>>); 3] = [
            ("len1", vec![one.der.clone()]),
            ("len2", vec![two.der.clone(), inter.der.clone()]),
            ("len3", vec![two.der.clone(), inter.der.clone(), root.der.clone()]),
        ];
        for (len, ders) in cases {
            c.bench_function(&format!("x509/{name}/{len}/parse+verify"), |b| {
                b.iter(|| {
                    let chain = Chain::from_der(&ders).unwrap();
                    chain.verify_to(&anchor, now).unwrap();
                })
            });
            let chain = Chain::from_der(&ders).unwrap();
            c.bench_function(&format!("x509/{name}/{len}/verify"), |b| {
                b.iter(|| chain.verify_to(&anchor, now).unwrap())
            });
        }
        c.bench_function(&format!("x509/{name}/parse-anchor"), |b| {
            b.iter(|| Certificate::from_der(&root.der).unwrap())
        });
    }
}

criterion_group!(benches, chains);
criterion_main!(benches);
