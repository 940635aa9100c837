#![no_main]

// The value parsers annotations and Route fields go through: nginx sizes, durations.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = portico_controller::compile::parse_size(&text);
    let _ = portico_controller::crd::parse_duration(&text);
});
