//! Bakes the ONNX Runtime library path seen at build time (`ORT_DYLIB_PATH`, set by
//! `.cargo/config.toml`) into the crate as a fallback, so binaries run outside cargo find it.

fn main() {
    println!("cargo:rerun-if-env-changed=ORT_DYLIB_PATH");
    if let Ok(path) = std::env::var("ORT_DYLIB_PATH") {
        println!("cargo:rustc-env=FERROFLOW_BUILD_ORT_DYLIB={path}");
    }
}
