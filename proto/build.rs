//! Generates the prost code from the .proto files with protox, so that no
//! system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["superapp/v1/client.proto", "superapp/v1/bus.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
