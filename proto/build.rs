//! Generates the v2 service code without a system `protoc`: `protox` compiles the `.proto`
//! to a descriptor set in pure Rust, `tonic-prost-build` turns that into Rust, with the
//! crate's own codec (`src/codec.rs`: malformed messages are `INVALID_ARGUMENT`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/inference.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::ProstCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
