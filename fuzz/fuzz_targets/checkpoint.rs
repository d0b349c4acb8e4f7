//! Checkpoint loading on arbitrary bytes (format sniffing, torch.save zip + pickle,
//! safetensors, name normalisation): an error for every bad file, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    repvgg_serve::fuzzing::checkpoint(data);
});
