//! Real consumers of the C ABI, built and run against the libucgm.so / libucgm.a that
//! this `cargo test` run just built (`target/<profile>/deps`, found from the test
//! executable's path): the C program (shared and static), the C++ program through the
//! RAII wrapper, the Go program through cgo, and the C program under valgrind.
//!
//! `cc` and `c++` are required. `go` and `valgrind` are optional: without them the test
//! says it skips, unless `UCGM_REQUIRE_GO=1` / `UCGM_REQUIRE_VALGRIND=1` turns the skip
//! into a failure (CI sets both).

mod capi_common;

use std::collections::HashMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use capi_common::*;
use ucgm::capi::model::*;
use ucgm::capi::sample::*;
use ucgm::capi::*;
use ucgm::{ModelConfig, ParamLayout};

/// Native libraries a program linking libucgm.a needs (Linux; what
/// `--print native-static-libs` reports, less what the C driver links by default).
const STATIC_LIBS: [&str; 3] = ["-lpthread", "-ldl", "-lm"];

fn find_tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// The tool, or None after printing why the test skips (a failure when `require_var=1`).
fn optional_tool(name: &str, require_var: &str, package: &str) -> Option<PathBuf> {
    let found = find_tool(name);
    if found.is_none() {
        assert!(
            std::env::var(require_var).as_deref() != Ok("1"),
            "{name} is not installed but {require_var}=1 (apt-get install {package})"
        );
        eprintln!("SKIPPED: {name} is not installed (apt-get install {package}); set {require_var}=1 to make this a failure");
    }
    found
}

fn required_tool(name: &str, package: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| panic!("{name} is required to build the C/C++ consumers (apt-get install {package})"))
}

/// Runs a command, failing the test with its output unless it exits 0.
fn run(cmd: &mut Command) -> Output {
    // Cargo's LD_LIBRARY_PATH lists target/<profile> before deps/, and a libucgm.so left
    // there by an earlier `cargo build`/`cargo run` would shadow the freshly built one
    // (LD_LIBRARY_PATH outranks the -rpath): point the programs at this run's library
    // first, and keep the rest of the path (where the CUDA libraries, or their host
    // emulator, may be: the programs must see the backends this test process sees).
    let mut path = vec![lib_dir()];
    path.extend(std::env::var_os("LD_LIBRARY_PATH").iter().flat_map(std::env::split_paths));
    cmd.env("LD_LIBRARY_PATH", std::env::join_paths(path).expect("library path"));
    run_checked(cmd)
}

/// The program's "key value..." lines as key → rest of the line (each key once).
fn lines(out: &Output) -> HashMap<String, String> {
    let text = String::from_utf8(out.stdout.clone()).expect("UTF-8 output");
    let mut map = HashMap::new();
    for line in text.lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        assert!(map.insert(k.to_string(), v.to_string()).is_none() || k == "log", "line {k:?} printed twice");
    }
    map
}

#[track_caller]
fn expect(map: &HashMap<String, String>, key: &str, want: &str) {
    let got = map.get(key).unwrap_or_else(|| panic!("no {key:?} line in {map:#?}"));
    assert_eq!(got, want, "line {key:?}");
}

#[track_caller]
fn expect_prefix(map: &HashMap<String, String>, key: &str, prefix: &str) {
    let got = map.get(key).unwrap_or_else(|| panic!("no {key:?} line in {map:#?}"));
    assert!(got.starts_with(prefix), "line {key:?} = {got:?}, expected it to start with {prefix:?}");
}

fn tiny_param_count(arch: ucgm::Arch, depth: usize) -> usize {
    let cfg = ModelConfig {
        arch,
        input_size: 8,
        in_channels: 4,
        patch: 2,
        hidden: 32,
        depth,
        heads: 2,
        num_classes: 10,
    };
    ParamLayout::for_config(&cfg).total()
}

/// The consumer's "train steps N first F last L decreased D" line: the mean loss of the
/// last 10 steps is below 0.8 × that of the first 10, and the program says so too.
#[track_caller]
fn check_training(m: &HashMap<String, String>, prefix: &str, suffix: &str) {
    let line = m.get("train").unwrap_or_else(|| panic!("no train line in {m:#?}"));
    assert!(line.starts_with(prefix) && line.ends_with(suffix), "train line {line:?}");
    let word = |key: &str| -> f64 {
        let w: Vec<&str> = line.split(' ').collect();
        let i = w.iter().position(|x| *x == key).unwrap_or_else(|| panic!("no {key} in {line:?}"));
        w[i + 1].parse().unwrap_or_else(|e| panic!("{key} in {line:?}: {e}"))
    };
    let (first, last) = (word("first"), word("last"));
    assert!(first.is_finite() && last.is_finite() && last < 0.8 * first, "the loss did not decrease: {line}");
}

/// Builds the C consumer, linked to the shared library (with an rpath) or statically.
fn build_c(dir: &Path, shared: bool) -> PathBuf {
    let lib = lib_dir();
    let exe = dir.join(if shared { "consumer_c" } else { "consumer_c_static" });
    let mut cmd = Command::new(required_tool("cc", "gcc"));
    cmd.args(["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O1", "-g"])
        .arg("-I")
        .arg(repo().join("include"))
        .arg(repo().join("ffi/c/consumer.c"))
        .arg("-o")
        .arg(&exe);
    if shared {
        cmd.arg(format!("-L{}", lib.display()))
            .arg("-lucgm")
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .arg("-lm");
    } else {
        cmd.arg(lib.join("libucgm.a")).args(STATIC_LIBS);
    }
    run(&mut cmd);
    exe
}

/// What the C consumer must print; then its samples equal those of the saved model
/// sampled through the C API from here.
fn check_c_output(out: &Output, work: &Path) {
    assert!(
        out.stderr.is_empty(),
        "the library printed to stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = lines(out);
    expect(&m, "version", &format!("{} abi {UCGM_ABI_VERSION}", env!("CARGO_PKG_VERSION")));
    expect_prefix(&m, "system", &format!("ucgm {} | abi 1 | cpus", env!("CARGO_PKG_VERSION")));
    expect(&m, "null_model_status", "1 ucgm_forward: invalid argument: model is NULL");
    match cuda_here() {
        Ok(_) => expect(&m, "cuda_status", "0 "),
        Err(why) => expect(
            &m,
            "cuda_status",
            &format!("7 ucgm_backend_available: backend error: CUDA backend not available: {why}"),
        ),
    }
    let n = tiny_param_count(ucgm::Arch::Tit, 2);
    expect(&m, "info", &format!("arch 1 input 8 channels 4 classes 10 params {n} image_len 256"));
    check_training(&m, "steps 40 first", "decreased 1");
    expect(&m, "resume", "identical 1");
    expect(&m, "forward", "finite 1 nonzero 1");
    expect(&m, "sample", &format!("finite 1 batch 2 steps 6 nfe 6 trajectory {}", 7 * 2 * IMAGE_LEN));
    expect(&m, "reload", "identical 1");
    expect(&m, "sample_default", "finite 1");
    expect(
        &m,
        "bad_length_status",
        "1 ucgm_sample: invalid argument: out: length 255 elements, expected 256",
    );
    expect(&m, "done", "");

    // The program's sample buffer holds exactly what the library computes for its model.
    let raw = std::fs::read(work.join("c_samples.f32")).unwrap();
    assert_eq!(raw.len(), 2 * IMAGE_LEN * 4, "c_samples.f32: [2, 4, 8, 8] float32");
    let from_c: Vec<f32> = raw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let path = CString::new(work.join("c_model.safetensors").to_str().unwrap()).unwrap();
    let mut h = std::ptr::null_mut();
    ok(unsafe { ucgm_model_load(path.as_ptr(), std::ptr::null(), &mut h) });
    let model = Model(h);
    let labels = [3i32, 10];
    let mut p = sample_params(6, 2, 11);
    p.labels = labels.as_ptr();
    p.stochasticity = UCGM_STOCHASTICITY_FIXED;
    p.rho = 0.5;
    let here = model.sample(&p).unwrap();
    assert!(from_c == here, "the C program's samples differ from the same call made from Rust");
}

#[test]
fn c_consumer_shared_library() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_c(dir.path(), true);
    let out = run(Command::new(&exe).arg(dir.path()));
    check_c_output(&out, dir.path());
}

#[test]
fn c_consumer_static_library() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_c(dir.path(), false);
    // Linked statically: no libucgm.so is needed at run time.
    let ldd = find_tool("ldd").map(|l| run(Command::new(l).arg(&exe)));
    if let Some(ldd) = ldd {
        assert!(!String::from_utf8_lossy(&ldd.stdout).contains("libucgm"), "the static build links libucgm.so");
    }
    let out = run(Command::new(&exe).arg(dir.path()));
    check_c_output(&out, dir.path());
}

#[test]
fn cpp_consumer_with_raii_wrapper() {
    let dir = tempfile::tempdir().unwrap();
    let lib = lib_dir();
    let exe = dir.path().join("consumer_cpp");
    run(Command::new(required_tool("c++", "g++"))
        .args(["-std=c++17", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O1", "-g"])
        .arg("-I")
        .arg(repo().join("include"))
        .arg("-I")
        .arg(repo().join("ffi/cpp"))
        .arg(repo().join("ffi/cpp/consumer.cpp"))
        .arg(format!("-L{}", lib.display()))
        .arg("-lucgm")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&exe));
    let out = run(Command::new(&exe).arg(dir.path()));
    assert!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let m = lines(&out);
    expect(&m, "info", &format!("arch 1 params {} image_len 256", tiny_param_count(ucgm::Arch::Tit, 2)));
    check_training(&m, "steps 40 first", "decreased 1");
    expect(&m, "step_with", "finite 1");
    expect(&m, "ema_file", "identical 1");
    expect(&m, "forward", "finite 1 size 512");
    // Order 2, 5 steps: 3 grid points, NFE 2·3 − 1.
    expect(&m, "sample", &format!("finite 1 size {} trajectory {} nfe 5", 3 * IMAGE_LEN, 4 * 3 * IMAGE_LEN));
    expect(&m, "reload", "identical 1");
    expect(&m, "params", "identical 1");
    expect_prefix(
        &m,
        "bad_transport_status",
        "1 ucgm_sample_ext: invalid argument: ucgm_sample_params.transport = 42",
    );
    expect(&m, "sample_default", "finite 1");
    expect(&m, "done", "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("log {UCGM_LOG_INFO} trainer created: Linear transport")), "{text}");
    assert!(text.contains(&format!("log {UCGM_LOG_INFO} sampled 3 x 4x8x8 in 3 steps")), "{text}");
    assert!(text.contains(&format!("log {UCGM_LOG_INFO} saved ")), "{text}");
}

#[test]
fn go_consumer_through_cgo() {
    let Some(go) = optional_tool("go", "UCGM_REQUIRE_GO", "golang-go") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lib = lib_dir();
    let exe = dir.path().join("consumer_go");
    let cache = dir.path().join("gocache");
    run(Command::new(go)
        .args(["build", "-o"])
        .arg(&exe)
        .arg(".")
        .current_dir(repo().join("ffi/go"))
        .env("CGO_ENABLED", "1")
        .env("CGO_LDFLAGS", format!("-L{0} -Wl,-rpath,{0}", lib.display()))
        .env("GOCACHE", &cache)
        .env("GOPATH", dir.path().join("gopath"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off"));
    let out = run(Command::new(&exe).arg(dir.path()));
    assert!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let m = lines(&out);
    expect(&m, "version", &format!("{} abi 1", env!("CARGO_PKG_VERSION")));
    expect(&m, "info", &format!("arch 0 params {} image_len 256", tiny_param_count(ucgm::Arch::Sit, 1)));
    expect(&m, "sample", &format!("finite true size {} deterministic true", 2 * IMAGE_LEN));
    expect(&m, "reload", "identical true");
    expect(
        &m,
        "zero_steps_status",
        "1 ucgm_sample_ext: invalid argument: sampling steps must be at least 1",
    );
    expect(&m, "done", "");
}

#[test]
fn c_consumer_under_valgrind_has_no_errors_or_leaks() {
    let Some(valgrind) = optional_tool("valgrind", "UCGM_REQUIRE_VALGRIND", "valgrind") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let exe = build_c(dir.path(), true);
    // One narrow suppression (a "possibly lost" record of crossbeam-epoch, see the file).
    // 20 training steps instead of 40: valgrind runs the program ~200 times slower.
    let out = Command::new(valgrind)
        .args(["--leak-check=full", "--error-exitcode=1"])
        .arg(format!("--suppressions={}", repo().join("ffi/c/valgrind.supp").display()))
        .arg(&exe)
        .arg(dir.path())
        .arg("20")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "valgrind reports errors or leaks ({}):\n{report}", out.status);
    assert!(report.contains("ERROR SUMMARY: 0 errors"), "{report}");
    for kind in ["definitely", "indirectly", "possibly"] {
        let clean = report.contains(&format!("{kind} lost: 0 bytes")) || report.contains("All heap blocks were freed");
        assert!(clean, "{kind} lost memory:\n{report}");
    }
    let m = lines(&out);
    assert!(m.get("train").is_some_and(|l| l.starts_with("steps 20 first")), "{m:#?}");
    expect(&m, "reload", "identical 1");
    expect(&m, "done", "");
}
