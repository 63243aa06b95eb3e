//! Build script: header generation (cbindgen) and the shared library's SONAME. Never
//! needs CUDA or nvcc.
//!
//! Writes `$OUT_DIR/ucgm.h` from `src/capi/` with `cbindgen.toml`, adding the version
//! macros (`UCGM_VERSION_*`, from Cargo.toml's package version, so the number is written
//! once). The committed `include/ucgm.h` is compared with it by `tests/capi_header.rs`
//! (set `UCGM_BLESS=1` there to update the committed copy); the build never writes into
//! the source tree.
//!
//! SONAME (Linux): `libucgm.so.<UCGM_ABI_VERSION>`, the ABI version declared in
//! `src/capi/mod.rs` (which ucgm_abi_version() returns), not the package version: the
//! ABI only grows compatibly within one ABI version, so a program linked against ABI 1
//! loads any later library of ABI 1. `scripts/install.sh` names the file
//! `libucgm.so.<abi>.<package version>` with the links `libucgm.so.<abi>` and `libucgm.so`.
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=src/capi");

    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let abi = abi_version(&root);
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libucgm.so.{abi}");
    }

    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let version = std::env::var("CARGO_PKG_VERSION").expect("CARGO_PKG_VERSION");
    let part = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name}"));
    let macros = format!(
        "// Version of this header (Cargo.toml's package version). ucgm_version() gives the\n\
         // library's at run time; ucgm_abi_version() is what compatibility depends on.\n\
         #define UCGM_VERSION_MAJOR {}\n\
         #define UCGM_VERSION_MINOR {}\n\
         #define UCGM_VERSION_PATCH {}\n\
         #define UCGM_VERSION_STRING \"{version}\"",
        part("CARGO_PKG_VERSION_MAJOR"),
        part("CARGO_PKG_VERSION_MINOR"),
        part("CARGO_PKG_VERSION_PATCH"),
    );
    config.after_includes = Some(match config.after_includes.take() {
        Some(rest) => format!("\n{macros}\n\n{}", rest.trim()),
        None => format!("\n{macros}"),
    });
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/capi/mod.rs"))
        .generate()
        .expect("cbindgen could not generate the C header from src/capi/")
        .write_to_file(out.join("ucgm.h"));
}

/// `UCGM_ABI_VERSION` as declared in `src/capi/mod.rs` (tests/capi_install.rs checks the
/// SONAME against the compiled constant).
fn abi_version(root: &Path) -> u32 {
    let path = root.join("src/capi/mod.rs");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let decl = "pub const UCGM_ABI_VERSION: u32 = ";
    text.lines()
        .find_map(|l| l.trim().strip_prefix(decl))
        .and_then(|v| v.trim_end_matches(';').trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{decl}N;` line in {}", path.display()))
}
