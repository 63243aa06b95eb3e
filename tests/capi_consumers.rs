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
    build_c_program(dir, "consumer.c", if shared { "consumer_c" } else { "consumer_c_static" }, shared)
}

/// Builds `ffi/c/<source>` into `dir/<name>`, linked to the shared library (with an
/// rpath) or statically.
fn build_c_program(dir: &Path, source: &str, name: &str, shared: bool) -> PathBuf {
    let lib = lib_dir();
    let exe = dir.join(name);
    let mut cmd = Command::new(required_tool("cc", "gcc"));
    cmd.args(["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O1", "-g"])
        .arg("-I")
        .arg(repo().join("include"))
        .arg(repo().join("ffi/c").join(source))
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

/// Builds `ffi/cpp/<source>` (with the RAII wrapper) into `dir/<name>`.
fn build_cpp(dir: &Path, source: &str, name: &str) -> PathBuf {
    let lib = lib_dir();
    let exe = dir.join(name);
    run(Command::new(required_tool("c++", "g++"))
        .args(["-std=c++17", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O1", "-g"])
        .arg("-I")
        .arg(repo().join("include"))
        .arg("-I")
        .arg(repo().join("ffi/cpp"))
        .arg(repo().join("ffi/cpp").join(source))
        .arg(format!("-L{}", lib.display()))
        .arg("-lucgm")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&exe));
    exe
}

#[test]
fn cpp_consumer_with_raii_wrapper() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_cpp(dir.path(), "consumer.cpp", "consumer_cpp");
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

/// Builds the Go program in `ffi/go/<package>` into `dir/<name>` (cgo, no network).
fn build_go(go: &Path, dir: &Path, package: &str, name: &str) -> PathBuf {
    let lib = lib_dir();
    let exe = dir.join(name);
    run(Command::new(go)
        .args(["build", "-o"])
        .arg(&exe)
        .arg(package)
        .current_dir(repo().join("ffi/go"))
        .env("CGO_ENABLED", "1")
        .env("CGO_LDFLAGS", format!("-L{0} -Wl,-rpath,{0}", lib.display()))
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off"));
    exe
}

#[test]
fn go_consumer_through_cgo() {
    let Some(go) = optional_tool("go", "UCGM_REQUIRE_GO", "golang-go") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let exe = build_go(&go, dir.path(), ".", "consumer_go");
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

/// Runs `program` (its arguments set) under valgrind memcheck and asserts no errors and
/// no lost memory, with one narrow suppression (a "possibly lost" record of
/// crossbeam-epoch, see the file); returns the output.
fn valgrind_clean(valgrind: &Path, program: &Command) -> Output {
    let out = Command::new(valgrind)
        .args(["--leak-check=full", "--error-exitcode=1"])
        .arg(format!("--suppressions={}", repo().join("ffi/c/valgrind.supp").display()))
        .arg(program.get_program())
        .args(program.get_args())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "valgrind reports errors or leaks ({}):\n{report}", out.status);
    assert!(report.contains("ERROR SUMMARY: 0 errors"), "{report}");
    for kind in ["definitely", "indirectly", "possibly"] {
        let clean = report.contains(&format!("{kind} lost: 0 bytes")) || report.contains("All heap blocks were freed");
        assert!(clean, "{kind} lost memory:\n{report}");
    }
    out
}

#[test]
fn c_consumer_under_valgrind_has_no_errors_or_leaks() {
    let Some(valgrind) = optional_tool("valgrind", "UCGM_REQUIRE_VALGRIND", "valgrind") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let exe = build_c(dir.path(), true);
    // 20 training steps instead of 40: valgrind runs the program ~200 times slower.
    let out = valgrind_clean(&valgrind, Command::new(&exe).arg(dir.path()).arg("20"));
    let m = lines(&out);
    assert!(m.get("train").is_some_and(|l| l.starts_with("steps 20 first")), "{m:#?}");
    expect(&m, "reload", "identical 1");
    expect(&m, "done", "");
}

// ---------------------------------------------------------------------------------------
// "Sample an image": ffi/c/sample_image.c, ffi/cpp/sample_image.cpp, ffi/go/sampleimage.

/// Side of the examples' images: the tiny TiT's 8×8 latents × the tiny VAE's factor 4.
const IMAGE_SIDE: usize = 32;
/// Per-channel latent statistics the C++ example reads (`[1, 4, 1, 1]`, the reference's
/// layout).
const STATS_MEAN: [f32; 4] = [0.25, -0.5, 0.0, 1.0];
const STATS_STD: [f32; 4] = [1.5, 0.75, 2.0, 1.25];

fn c_str(p: &Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

/// What the examples read: a tiny latent TiT with random weights saved through the C ABI
/// (`dir/latent_tit.safetensors`), the tiny reference VAE, and a statistics file.
fn image_inputs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let model = dir.join("latent_tit.safetensors");
    let m = Model::tiny_random(UCGM_ARCH_TIT, 21, 2);
    ok(unsafe { ucgm_model_save(m.0, c_str(&model).as_ptr()) });
    let stats = dir.join("stats.safetensors");
    ucgm::tensor_file::write_atomic(
        &stats,
        &[
            ucgm::tensor_file::TensorOut::f32("mean", vec![1, 4, 1, 1], &STATS_MEAN),
            ucgm::tensor_file::TensorOut::f32("std", vec![1, 4, 1, 1], &STATS_STD),
        ],
        &Default::default(),
    )
    .unwrap();
    let vae = repo().join("../shared/reference/vae_tiny_diffusers.safetensors");
    assert!(vae.is_file(), "{} is missing (../shared/reference)", vae.display());
    (model, vae, stats)
}

/// The same call made from here with the examples' settings (handles with the default
/// params, hence the same backend; classes 1 and 7, seed 42, 8 steps): `[2, 32, 32, 3]`.
fn expected_images(model: &Path, vae: &Path, stats: Option<&Path>) -> Vec<u8> {
    use ucgm::capi::latent_norm::*;
    use ucgm::capi::sample_image::ucgm_sample_image_rgb8;
    use ucgm::capi::vae::*;
    let mut rgb = vec![0u8; 2 * IMAGE_SIDE * IMAGE_SIDE * 3];
    unsafe {
        let (mut m, mut v) = (std::ptr::null_mut(), std::ptr::null_mut());
        ok(ucgm_model_load(c_str(model).as_ptr(), std::ptr::null(), &mut m));
        let m = Model(m);
        ok(ucgm_vae_load(c_str(vae).as_ptr(), std::ptr::null(), &mut v));
        match stats {
            Some(s) => ok(ucgm_model_load_latent_stats(m.0, c_str(s).as_ptr(), 1.0)),
            None => ok(ucgm_model_set_latent_norm(
                m.0,
                UCGM_LATENT_NORM_SCALE,
                UCGM_SD_VAE_MULTIPLIER,
                std::ptr::null(),
                std::ptr::null(),
                0,
            )),
        }
        let (labels, seed) = ([1i32, 7], 42u64);
        let st = ucgm_sample_image_rgb8(m.0, v, 8, labels.as_ptr(), 2, &seed, rgb.as_mut_ptr(), rgb.len());
        ucgm_vae_free(v);
        ok(st);
    }
    rgb
}

/// A binary PPM (P6, maxval 255) as the C and C++ examples write it: (width, height,
/// `[H, W, 3]` bytes).
fn read_ppm(path: &Path) -> (usize, usize, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        let len = bytes[at..]
            .iter()
            .position(u8::is_ascii_whitespace)
            .unwrap_or_else(|| panic!("{}: short header", path.display()));
        fields.push(String::from_utf8(bytes[at..at + len].to_vec()).unwrap());
        at += len + 1; // one whitespace byte ends the header
    }
    assert_eq!(fields[0], "P6", "{}: not a binary PPM", path.display());
    assert_eq!(fields[3], "255", "{}: maxval", path.display());
    let (w, h): (usize, usize) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    assert_eq!(bytes.len() - at, w * h * 3, "{}: pixel bytes", path.display());
    (w, h, bytes[at..].to_vec())
}

/// A PNG as the Go example writes it (through the library's own PNG reader).
fn read_png(path: &Path) -> (usize, usize, Vec<u8>) {
    let img = ucgm::image::decode::read_rgb8(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width, img.height, img.pixels)
}

/// The example printed one line per image, wrote 32×32 pictures that are not constant and
/// differ from each other, exactly the pixels of the same call made from here.
fn check_images(out: &Output, prefix: &str, ext: &str, read: fn(&Path) -> (usize, usize, Vec<u8>), want: &[u8]) {
    assert!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[2], "done");
    let per = IMAGE_SIDE * IMAGE_SIDE * 3;
    let mut images = Vec::new();
    for (i, line) in lines[..2].iter().enumerate() {
        let w: Vec<&str> = line.split(' ').collect();
        assert_eq!(w.len(), 5, "{line}");
        assert_eq!((w[0], w[1], w[3], w[4]), ("image", &*i.to_string(), "32", "32"), "{line}");
        let path = PathBuf::from(w[2]);
        assert!(path.file_name().unwrap().to_str().unwrap() == format!("{prefix}_{i}.{ext}"), "{line}");
        let (width, height, pixels) = read(&path);
        assert_eq!((width, height), (IMAGE_SIDE, IMAGE_SIDE), "{}", path.display());
        assert!(pixels.iter().any(|&p| p != pixels[0]), "{}: a constant image", path.display());
        assert!(
            pixels == want[i * per..][..per],
            "{}: differs from ucgm_sample_image_rgb8 called from Rust",
            path.display()
        );
        images.push(pixels);
    }
    assert_ne!(images[0], images[1], "the two classes gave the same picture");
}

#[test]
fn c_sample_image_example_writes_ppm() {
    let dir = tempfile::tempdir().unwrap();
    let (model, vae, _) = image_inputs(dir.path());
    let exe = build_c_program(dir.path(), "sample_image.c", "sample_image_c", true);
    let out = run(Command::new(&exe).arg(&model).arg(&vae).arg(dir.path()));
    check_images(&out, "c_image", "ppm", read_ppm, &expected_images(&model, &vae, None));
}

#[test]
fn cpp_sample_image_example_with_latent_statistics_writes_ppm() {
    let dir = tempfile::tempdir().unwrap();
    let (model, vae, stats) = image_inputs(dir.path());
    let exe = build_cpp(dir.path(), "sample_image.cpp", "sample_image_cpp");
    let out = run(Command::new(&exe).arg(&model).arg(&vae).arg(dir.path()).arg(&stats));
    let want = expected_images(&model, &vae, Some(&stats));
    assert_ne!(want, expected_images(&model, &vae, None), "the statistics changed nothing");
    check_images(&out, "cpp_image", "ppm", read_ppm, &want);
}

#[test]
fn go_sample_image_example_writes_png() {
    let Some(go) = optional_tool("go", "UCGM_REQUIRE_GO", "golang-go") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (model, vae, _) = image_inputs(dir.path());
    let exe = build_go(&go, dir.path(), "./sampleimage", "sample_image_go");
    let out = run(Command::new(&exe).arg(&model).arg(&vae).arg(dir.path()));
    check_images(&out, "go_image", "png", read_png, &expected_images(&model, &vae, None));
}

#[test]
fn c_sample_image_example_under_valgrind_has_no_errors_or_leaks() {
    let Some(valgrind) = optional_tool("valgrind", "UCGM_REQUIRE_VALGRIND", "valgrind") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (model, vae, stats) = image_inputs(dir.path());
    let exe = build_c_program(dir.path(), "sample_image.c", "sample_image_c", true);
    let out = valgrind_clean(&valgrind, Command::new(&exe).arg(&model).arg(&vae).arg(dir.path()).arg(&stats));
    let (_, _, pixels) = read_ppm(&dir.path().join("c_image_1.ppm"));
    let per = IMAGE_SIDE * IMAGE_SIDE * 3;
    // Valgrind's virtual CPU has no AVX-512, so the `gemm` crate runs its AVX2 kernels
    // there: the floats can differ in their last bits from this process's AVX-512 run, and
    // a last-bit difference can move a pixel across an 8-bit rounding boundary (seen: 1
    // pixel of 3 072, by 1). The bit-exact comparison is `c_sample_image_example_writes_ppm`
    // (same CPU path); here the image must be the same picture: every value within 1 level,
    // and at most 1 % of them off at all.
    let want = &expected_images(&model, &vae, Some(&stats))[per..];
    let off: Vec<i32> = pixels.iter().zip(want).map(|(&a, &b)| (a as i32 - b as i32).abs()).filter(|&d| d > 0).collect();
    eprintln!(
        "under valgrind: {} of {} values differ from the native run, by at most {:?}",
        off.len(),
        want.len(),
        off.iter().max()
    );
    assert!(
        pixels.len() == want.len() && off.iter().all(|&d| d <= 1) && off.len() * 100 <= want.len(),
        "image 1 differs under valgrind"
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("done\n"));
}
