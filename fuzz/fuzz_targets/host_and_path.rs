#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portico_dataplane::fuzzing::host_and_path(data));
