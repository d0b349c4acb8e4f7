//! Generates the gRPC service (tonic + prost) from proto/grpc_service.proto, with the protoc
//! that the `protoc-bin-vendored` crate ships (nothing to install).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/grpc_service.proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build finds protoc through PROTOC.
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure()
        .build_client(false)
        .bytes(".inference")
        .codec_path("crate::grpc::codec::BoundedCodec")
        .compile_protos(&["proto/grpc_service.proto"], &["proto"])?;
    Ok(())
}
