#![no_main]

// The --from-file reader, and the compile of whatever it accepts (annotations, hosts,
// paths, TLS Secrets, Routes).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(snapshot) = portico_controller::file::parse(text) {
        let _ = portico_controller::compile::compile(&snapshot, &Default::default());
    }
});
