//! A gRPC ModelInferRequest through the codec's wire check, prost and the converter; peak heap within 8 x the input.
#![no_main]
mod peak;

#[global_allocator]
static ALLOCATOR: peak::Counting = peak::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peak::bounded(data, 8, repvgg_serve::fuzzing::grpc_infer);
});
