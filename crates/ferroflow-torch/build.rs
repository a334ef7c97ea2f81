//! Binaries and tests of this crate find libtorch through an rpath to `$LIBTORCH/lib`
//! (`.cargo/config.toml` points `LIBTORCH` at `deps/libtorch`, unpacked by
//! `scripts/setup-runtimes.sh`).

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(dir) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}/lib");
    }
}
