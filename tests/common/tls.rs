//! A certificate authority made per test with rcgen, writing PEM files (test-only: nothing
//! here is committed).

use std::path::{Path, PathBuf};

/// A certificate authority for one test, writing PEM files into a directory.
pub struct TestCa {
    dir: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        let issuer = rcgen::Issuer::new(params, key);
        TestCa { dir: dir.to_owned(), issuer }
    }

    /// Writes `<file>.pem` (certificate, then the key when `key_inside`) and `<file>.key`.
    pub fn issue(
        &self,
        file: &str,
        subject: &[(rcgen::DnType, &str)],
        key_inside: bool,
    ) -> PathBuf {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        // rcgen starts with a CN ("rcgen self signed cert"): pushing a CN later would keep
        // that first position, so the subject is built from scratch in the order given.
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let pem = self.dir.join(format!("{file}.pem"));
        let text =
            if key_inside { format!("{}{}", key.serialize_pem(), cert.pem()) } else { cert.pem() };
        std::fs::write(&pem, text).unwrap();
        std::fs::write(self.dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
        pem
    }
}

/// `serve` flags for brokers whose inter-broker listener `BROKER` is mTLS, with the
/// certificates of `ca`'s `broker.pem` (see [`TestCa::issue`]) in `dir`.
pub fn inter_broker_tls_args(dir: &Path) -> Vec<String> {
    let keystore = dir.join("broker.pem").display().to_string();
    let truststore = dir.join("ca.pem").display().to_string();
    [
        "--listeners",
        "PLAINTEXT://{addr},BROKER://127.0.0.1:{free0}",
        "--listener-security-protocol-map",
        "PLAINTEXT:PLAINTEXT,BROKER:SSL",
        "--inter-broker-listener-name",
        "BROKER",
        "--ssl-client-auth",
        "required",
        "--ssl-keystore-location",
        &keystore,
        "--ssl-truststore-location",
        &truststore,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
