#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portico_dataplane::fuzzing::request_head(data));
