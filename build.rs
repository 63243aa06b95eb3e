//! Build script: header generation only (cbindgen). Never needs CUDA or nvcc.
//!
//! Writes `$OUT_DIR/ucgm.h` from `src/capi/` with `cbindgen.toml`. The committed
//! `include/ucgm.h` is compared with it by `tests/capi_header.rs` (set `UCGM_BLESS=1`
//! there to update the committed copy); the build never writes into the source tree.
use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=src/capi");
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/capi/mod.rs"))
        .generate()
        .expect("cbindgen could not generate the C header from src/capi/")
        .write_to_file(out.join("ucgm.h"));
}
