//! The request path's image handling on arbitrary bytes: decode cost from the header, then
//! decode, EXIF orientation, resize, crop and normalise, as a preprocessing worker runs them.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    repvgg_serve::fuzzing::image(data);
});
