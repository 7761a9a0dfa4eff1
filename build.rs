//! Compiles `proto/clientgate/v1/clientgate.proto` with the protoc that `protoc-bin-vendored`
//! ships, so a fresh machine needs no system package, and writes the descriptor set that
//! server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut prost_config = tonic_prost_build::Config::new();
    prost_config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("clientgate_descriptor.bin"))
        // A request that does not decode is INVALID_ARGUMENT (src/proto/codec.rs).
        .codec_path("crate::proto::codec::StrictCodec")
        .compile_with_config(
            prost_config,
            &["proto/clientgate/v1/clientgate.proto"],
            &["proto"],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
