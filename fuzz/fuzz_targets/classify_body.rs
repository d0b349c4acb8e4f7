//! A /classify body (JSON base64 or multipart) through the body reader; peak heap within 8 x the input.
#![no_main]
mod peak;

#[global_allocator]
static ALLOCATOR: peak::Counting = peak::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peak::bounded(data, 8, repvgg_serve::fuzzing::classify_body);
});
