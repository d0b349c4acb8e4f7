//! The restricted unpickler on arbitrary bytes: it must return (a root, a refusal or an
//! error), never panic, hang or allocate beyond the input's size.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    repvgg_serve::fuzzing::unpickle(data);
});
