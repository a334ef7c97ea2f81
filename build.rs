//! With the `torch` feature, the `ferroflow` binary, tests and benches find libtorch through
//! an rpath to `$LIBTORCH/lib` (set in `.cargo/config.toml`).

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_some()
        && let Ok(dir) = std::env::var("LIBTORCH")
    {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}/lib");
    }
}
