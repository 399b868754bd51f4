//! Compiles `aurigraph/v11/*.proto` (with protox: no `protoc` needed) into Rust messages and
//! clients, and writes the encoded file descriptor set the node's server reflection serves.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "aurigraph/v11/common.proto",
    "aurigraph/v11/transactions.proto",
    "aurigraph/v11/node.proto",
    "aurigraph/v11/consensus.proto",
    "aurigraph/v11/accounts.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("aurigraph_v11_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .build_transport(false)
        // The binary batch arrives as `bytes::Bytes` sliced from tonic's receive buffer (no
        // copy into a Vec); its records are then read in place, as over HTTP.
        .bytes(".aurigraph.v11.SubmitBatchRequest.batch")
        .compile_fds(descriptors)?;
    Ok(())
}
