//! Writes the Route CRD: `crdgen` prints it, `crdgen PATH` writes it to PATH.
//! `controller/tests/crds.rs` fails when the committed file differs.

use std::process::ExitCode;

fn main() -> ExitCode {
    let yaml = portico_controller::crd::route_crd_yaml();
    match std::env::args_os().nth(1) {
        None => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(&path, yaml) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("crdgen: cannot write {}: {e}", path.to_string_lossy());
                ExitCode::FAILURE
            }
        },
    }
}
