//! TLS material for tests: a throwaway CA, leaf certificates it signs, and the
//! Secret and Ingress `tls` entry that carry them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway CA in `dir`; returns its certificate path.
pub fn make_ca(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("ca dir");
    let (key, crt) = (dir.join("ca.key"), dir.join("ca.crt"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        crt.to_str().unwrap(),
        "-subj",
        "/CN=Portico e2e CA",
    ]);
    crt
}

/// (cert PEM, key PEM) for `host`, signed by the CA in `dir`.
pub fn leaf(dir: &Path, host: &str, n: u32) -> (Vec<u8>, Vec<u8>) {
    let p = |ext: &str| dir.join(format!("leaf{n}.{ext}"));
    std::fs::write(p("ext"), format!("subjectAltName=DNS:{host}\n")).expect("ext");
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        p("key").to_str().unwrap(),
        "-out",
        p("csr").to_str().unwrap(),
        "-subj",
        &format!("/CN={host}"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        p("csr").to_str().unwrap(),
        "-CA",
        dir.join("ca.crt").to_str().unwrap(),
        "-CAkey",
        dir.join("ca.key").to_str().unwrap(),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        p("ext").to_str().unwrap(),
        "-out",
        p("crt").to_str().unwrap(),
    ]);
    (
        std::fs::read(p("crt")).expect("crt"),
        std::fs::read(p("key")).expect("key"),
    )
}

/// A `kubernetes.io/tls` Secret holding `(crt, key)`.
pub fn tls_secret(name: &str, (crt, key): (Vec<u8>, Vec<u8>)) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(crt)),
            ("tls.key".to_string(), ByteString(key)),
        ])),
        ..Default::default()
    }
}

/// `ing` with one `tls` entry: `host` served with `secret`.
pub fn with_tls(mut ing: Ingress, host: &str, secret: &str) -> Ingress {
    let spec = ing.spec.get_or_insert_with(Default::default);
    spec.tls = Some(vec![
        serde_json::from_value(json!({"hosts": [host], "secretName": secret})).expect("tls"),
    ]);
    ing
}
