//! The committed CRD is what the types generate.

/// `crds/portico.dev_routes.yaml` is current: regenerate it with
/// `cargo run -p portico-controller --bin crdgen crds/portico.dev_routes.yaml`.
#[test]
fn committed_route_crd_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/portico.dev_routes.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = portico_controller::crd::route_crd_yaml();
    assert!(
        committed == generated,
        "crds/portico.dev_routes.yaml is stale; run: cargo run -p portico-controller --bin crdgen crds/portico.dev_routes.yaml"
    );
}
