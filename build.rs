//! Build script: header generation only (cbindgen). Never needs CUDA or nvcc.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
