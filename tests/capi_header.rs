//! The committed C header `include/ucgm.h` is exactly what cbindgen generates from
//! `src/capi/` (build.rs writes the fresh one to OUT_DIR). Run with `UCGM_BLESS=1` to
//! update the committed copy after changing the C API.

use std::path::Path;

const GENERATED: &str = include_str!(concat!(env!("OUT_DIR"), "/ucgm.h"));

#[test]
fn committed_header_matches_cbindgen_output() {
    let committed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include").join("ucgm.h");
    if std::env::var("UCGM_BLESS").as_deref() == Ok("1") {
        std::fs::write(&committed_path, GENERATED).expect("write include/ucgm.h");
        eprintln!("updated {}", committed_path.display());
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_else(|e| panic!("{}: {e}", committed_path.display()));
    if committed != GENERATED {
        let line = committed.lines().zip(GENERATED.lines()).position(|(a, b)| a != b).map_or_else(
            || format!("lengths differ: {} vs {} lines", committed.lines().count(), GENERATED.lines().count()),
            |i| format!("first difference at line {}", i + 1),
        );
        panic!("include/ucgm.h is stale ({line}); regenerate it with `UCGM_BLESS=1 cargo test --test capi_header` and commit it");
    }
}

#[test]
fn header_documents_its_conventions() {
    // The top comment is the contract every exported function relies on.
    for topic in [
        "Ownership.",
        "Threading.",
        "Tensors.",
        "NCHW",
        "elements, not bytes",
        "struct_size",
        "Callbacks.",
    ] {
        assert!(GENERATED.contains(topic), "the header's top comment does not cover {topic:?}");
    }
}
