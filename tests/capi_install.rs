//! The installed C library: `scripts/install.sh` installs the libucgm.so / libucgm.a this
//! `cargo test` run built (`--artifacts target/<profile>/deps`) into a temporary prefix,
//! and the C and C++ consumers in `ffi/` build against the *installed* files only: the C
//! program through pkg-config (shared, and static through ucgm-static.pc), the C++ and C
//! programs through CMake's `find_package(ucgm)` (ffi/cmake/example). The programs run
//! and their results are checked; the layout, the SONAME, the symlinks and the header's
//! version macros are checked too.
//!
//! `cc`, `c++`, `bash`, `objdump` and `readelf` are required. `pkg-config`, `cmake` and
//! `make` are optional: without them the test says it skips, unless
//! `UCGM_REQUIRE_INSTALL=1` turns the skip into a failure (CI sets it).

mod capi_common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use capi_common::{lib_dir, repo};
use ucgm::capi::UCGM_ABI_VERSION;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn find_tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// The tools, or None after printing why the test skips (a failure with
/// `UCGM_REQUIRE_INSTALL=1`).
fn tools_or_skip(test: &str, names: &[(&str, &str)]) -> Option<Vec<PathBuf>> {
    let mut found = Vec::new();
    for (name, package) in names {
        match find_tool(name) {
            Some(p) => found.push(p),
            None => {
                assert!(
                    std::env::var("UCGM_REQUIRE_INSTALL").as_deref() != Ok("1"),
                    "{test}: {name} is not installed but UCGM_REQUIRE_INSTALL=1 (apt-get install {package})"
                );
                eprintln!("SKIPPED: {test}: {name} is not installed (apt-get install {package}); set UCGM_REQUIRE_INSTALL=1 to make this a failure");
                return None;
            }
        }
    }
    Some(found)
}

fn required_tool(name: &str, package: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| panic!("{name} is required (apt-get install {package})"))
}

/// Runs a command, failing the test with its output unless it exits 0.
fn run(cmd: &mut Command) -> Output {
    capi_common::run_checked(cmd)
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

/// Where the installed library lives for one test.
struct Installed {
    _dir: tempfile::TempDir,
    prefix: PathBuf,
}

impl Installed {
    fn lib(&self) -> PathBuf {
        self.prefix.join("lib")
    }

    /// A command whose environment sees the installed library, not the build tree's:
    /// `LD_LIBRARY_PATH` starts with the installed libdir (cargo's own entries, which
    /// list target/<profile>/deps, come after it; the CUDA libraries may be there).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut path = vec![self.lib()];
        path.extend(std::env::var_os("LD_LIBRARY_PATH").iter().flat_map(std::env::split_paths));
        let mut cmd = Command::new(program);
        cmd.env("LD_LIBRARY_PATH", std::env::join_paths(path).expect("library path"))
            .env("PKG_CONFIG_PATH", self.lib().join("pkgconfig"))
            .env_remove("PKG_CONFIG_LIBDIR");
        cmd
    }

    fn pkg_config(&self, pkg_config: &Path, args: &[&str]) -> String {
        stdout(&run(self.command(pkg_config).args(args))).trim().to_string()
    }
}

/// Runs scripts/install.sh on this run's build into a fresh temporary prefix.
fn install() -> Installed {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    run(Command::new(required_tool("bash", "bash"))
        .arg(repo().join("scripts/install.sh"))
        .arg("--prefix")
        .arg(&prefix)
        .arg("--artifacts")
        .arg(lib_dir())
        .env_remove("DESTDIR"));
    Installed { _dir: dir, prefix }
}

/// The cargo profile this test was built with (`target/<profile>/deps`).
fn profile() -> String {
    let dir = lib_dir();
    let dir = if dir.ends_with("deps") { dir.parent().unwrap().to_path_buf() } else { dir };
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

/// The ELF SONAME of a shared library and its NEEDED entries (`objdump -p`).
fn dynamic_section(file: &Path) -> (Option<String>, Vec<String>) {
    let out = stdout(&run(Command::new(required_tool("objdump", "binutils")).arg("-p").arg(file)));
    let mut soname = None;
    let mut needed = Vec::new();
    for line in out.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["SONAME", name] => soname = Some(name.to_string()),
            ["NEEDED", name] => needed.push(name.to_string()),
            _ => {}
        }
    }
    (soname, needed)
}

/// The consumer's "key value..." lines as key → rest of the line.
fn lines(out: &Output) -> HashMap<String, String> {
    stdout(out)
        .lines()
        .filter(|l| !l.starts_with("log "))
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[track_caller]
fn expect(m: &HashMap<String, String>, key: &str, want: &str) {
    let got = m.get(key).unwrap_or_else(|| panic!("no {key:?} line in {m:#?}"));
    assert_eq!(got, want, "line {key:?}");
}

/// Runs ffi/c/consumer.c (built any way) and checks what it prints: the library version
/// and ABI, training that lowers the loss, a reload giving identical samples, the end.
fn run_c_consumer(installed: &Installed, exe: &Path) {
    let work = tempfile::tempdir().unwrap();
    let out = run(installed.command(exe).arg(work.path()));
    assert!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let m = lines(&out);
    expect(&m, "version", &format!("{VERSION} abi {UCGM_ABI_VERSION}"));
    let train = m.get("train").unwrap_or_else(|| panic!("no train line in {m:#?}"));
    assert!(train.starts_with("steps 40 first") && train.ends_with("decreased 1"), "train line {train:?}");
    expect(&m, "resume", "identical 1");
    expect(&m, "reload", "identical 1");
    expect(&m, "done", "");
    assert_eq!(std::fs::metadata(work.path().join("c_samples.f32")).unwrap().len(), 2 * 256 * 4);
}

/// Runs ffi/cpp/consumer.cpp and checks its results.
fn run_cpp_consumer(installed: &Installed, exe: &Path) {
    let work = tempfile::tempdir().unwrap();
    let out = run(installed.command(exe).arg(work.path()));
    assert!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let m = lines(&out);
    let train = m.get("train").unwrap_or_else(|| panic!("no train line in {m:#?}"));
    assert!(train.starts_with("steps 40 first") && train.ends_with("decreased 1"), "train line {train:?}");
    expect(&m, "reload", "identical 1");
    expect(&m, "params", "identical 1");
    expect(&m, "done", "");
}

/// Runs ffi/c/sample_image.c or ffi/cpp/sample_image.cpp on the tiny reference TiT and
/// VAE: two 32×32 binary PPM files of the documented size, then the end.
fn run_sample_image(installed: &Installed, exe: &Path, prefix: &str) {
    let work = tempfile::tempdir().unwrap();
    let reference = repo().join("../shared/reference");
    let out = run(installed
        .command(exe)
        .arg(reference.join("tit_tiny_weights.safetensors"))
        .arg(reference.join("vae_tiny_diffusers.safetensors"))
        .arg(work.path()));
    assert!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let text = stdout(&out);
    for i in 0..2 {
        let path = work.path().join(format!("{prefix}_{i}.ppm"));
        assert!(text.contains(&format!("image {i} {} 32 32\n", path.display())), "{text}");
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"P6\n32 32\n255\n") && bytes.len() == 13 + 32 * 32 * 3, "{}", path.display());
    }
    assert!(text.ends_with("done\n"), "{text}");
}

/// A program linked to the shared library loads the installed one (by its SONAME).
fn assert_uses_installed_shared_library(installed: &Installed, exe: &Path) {
    let soname = format!("libucgm.so.{UCGM_ABI_VERSION}");
    let (_, needed) = dynamic_section(exe);
    assert!(needed.contains(&soname), "{} needs {needed:?}, not {soname}", exe.display());
    if let Some(ldd) = find_tool("ldd") {
        let out = stdout(&run(installed.command(ldd).arg(exe)));
        let want = format!("{soname} => {}", installed.lib().join(&soname).display());
        assert!(out.contains(&want), "ldd {}: no {want:?} in\n{out}", exe.display());
    }
}

fn assert_static(exe: &Path) {
    let (_, needed) = dynamic_section(exe);
    assert!(!needed.iter().any(|n| n.starts_with("libucgm")), "{} needs {needed:?}", exe.display());
}

#[test]
fn install_layout_soname_and_header_macros() {
    let installed = install();
    let lib = installed.lib();
    let soname = format!("libucgm.so.{UCGM_ABI_VERSION}");
    let real = format!("{soname}.{VERSION}");

    // The shared library under its full name, with the SONAME link and the dev link.
    assert!(std::fs::symlink_metadata(lib.join(&real)).unwrap().is_file(), "{real} is not a file");
    assert_eq!(std::fs::read_link(lib.join(&soname)).unwrap(), Path::new(&real));
    assert_eq!(std::fs::read_link(lib.join("libucgm.so")).unwrap(), Path::new(&soname));
    let (got, _) = dynamic_section(&lib.join(&real));
    assert_eq!(got.as_deref(), Some(soname.as_str()), "SONAME of the installed library");
    let readelf = stdout(&run(Command::new(required_tool("readelf", "binutils")).arg("-d").arg(lib.join(&real))));
    assert!(readelf.contains(&format!("Library soname: [{soname}]")), "{readelf}");

    // Release artifacts carry no debug info (symbols stay: the C API is exported); the
    // other profiles (test, profiling) keep theirs.
    let sections = stdout(&run(Command::new(required_tool("objdump", "binutils")).arg("-h").arg(lib.join(&real))));
    if profile() == "release" {
        assert!(!sections.contains(".debug_info"), "the release libucgm.so has debug info:\n{sections}");
        let a = stdout(&run(Command::new(required_tool("objdump", "binutils")).arg("-h").arg(lib.join("libucgm.a"))));
        assert!(!a.contains(".debug_info"), "the installed libucgm.a has debug info");
    }
    let dynsyms = stdout(&run(Command::new(required_tool("objdump", "binutils")).arg("-T").arg(lib.join(&real))));
    assert!(dynsyms.contains("ucgm_model_create"), "ucgm_model_create is not exported");

    for file in [
        "libucgm.a",
        "pkgconfig/ucgm.pc",
        "pkgconfig/ucgm-static.pc",
        "cmake/ucgm/ucgmConfig.cmake",
        "cmake/ucgm/ucgmConfigVersion.cmake",
    ] {
        assert!(lib.join(file).is_file(), "lib/{file} not installed");
    }
    let pc = std::fs::read_to_string(lib.join("pkgconfig/ucgm.pc")).unwrap();
    assert!(pc.contains(&format!("prefix={}\n", installed.prefix.display())), "{pc}");
    assert!(pc.contains(&format!("Version: {VERSION}\n")), "{pc}");
    let cmake = std::fs::read_to_string(lib.join("cmake/ucgm/ucgmConfig.cmake")).unwrap();
    assert!(cmake.contains(&format!("\"${{_ucgm_libdir}}/{real}\"")) && !cmake.contains('@'), "{cmake}");

    // The headers and the valgrind suppression file.
    let inc = installed.prefix.join("include");
    assert_eq!(
        std::fs::read(inc.join("ucgm.h")).unwrap(),
        std::fs::read(repo().join("include/ucgm.h")).unwrap()
    );
    assert!(inc.join("ucgm.hpp").is_file());
    assert_eq!(
        std::fs::read(installed.prefix.join("share/ucgm/valgrind.supp")).unwrap(),
        std::fs::read(repo().join("ffi/c/valgrind.supp")).unwrap()
    );

    // Version macros from Cargo.toml; every function declaration carries UCGM_API; the
    // header points valgrind users at the suppression file.
    let header = std::fs::read_to_string(inc.join("ucgm.h")).unwrap();
    for (name, value) in [
        ("UCGM_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR").to_string()),
        ("UCGM_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR").to_string()),
        ("UCGM_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH").to_string()),
        ("UCGM_VERSION_STRING", format!("\"{VERSION}\"")),
        ("UCGM_ABI_VERSION", UCGM_ABI_VERSION.to_string()),
    ] {
        assert!(header.contains(&format!("\n#define {name} {value}\n")), "ucgm.h: no `#define {name} {value}`");
    }
    // Declarations are one line each (cbindgen.toml: args = "horizontal").
    let decls: Vec<&str> = header
        .lines()
        .filter(|l| !l.starts_with([' ', '/', '#', '}']) && !l.starts_with("typedef") && l.ends_with(");"))
        .collect();
    assert!(decls.len() > 30, "few function declarations found: {decls:?}");
    let without: Vec<&&str> = decls.iter().filter(|l| !l.starts_with("UCGM_API ")).collect();
    assert!(without.is_empty(), "declarations without UCGM_API: {without:?}");
    assert!(
        header.contains("share/ucgm/valgrind.supp"),
        "the header does not mention the valgrind suppression"
    );
}

#[test]
fn staged_install_with_destdir() {
    let dir = tempfile::tempdir().unwrap();
    let stage = dir.path().join("stage");
    run(Command::new(required_tool("bash", "bash"))
        .arg(repo().join("scripts/install.sh"))
        .args(["--prefix", "/opt/ucgm", "--libdir", "lib64"])
        .arg("--artifacts")
        .arg(lib_dir())
        .env("DESTDIR", &stage));
    let lib = stage.join("opt/ucgm/lib64");
    assert!(lib.join("libucgm.so").exists() && lib.join("libucgm.a").is_file());
    assert!(stage.join("opt/ucgm/include/ucgm.h").is_file());
    assert!(stage.join("opt/ucgm/share/ucgm/valgrind.supp").is_file());
    // The installed files name the final prefix, not the staging directory.
    let pc = std::fs::read_to_string(lib.join("pkgconfig/ucgm.pc")).unwrap();
    assert!(pc.contains("prefix=/opt/ucgm\n") && pc.contains("libdir=${prefix}/lib64\n"), "{pc}");
    assert!(!pc.contains(stage.to_str().unwrap()), "{pc}");
    let cmake = std::fs::read_to_string(lib.join("cmake/ucgm/ucgmConfig.cmake")).unwrap();
    assert!(cmake.contains("\"${_ucgm_libdir}/../include\""), "{cmake}");
}

#[test]
fn c_consumer_through_pkg_config() {
    let Some(tools) = tools_or_skip("c_consumer_through_pkg_config", &[("pkg-config", "pkg-config")]) else {
        return;
    };
    let installed = install();
    let cflags = installed.pkg_config(&tools[0], &["--cflags", "ucgm"]);
    let libs = installed.pkg_config(&tools[0], &["--libs", "ucgm"]);
    assert_eq!(libs, format!("-L{} -lucgm", installed.lib().display()));
    assert_eq!(installed.pkg_config(&tools[0], &["--modversion", "ucgm"]), VERSION);

    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("consumer_c");
    run(Command::new(required_tool("cc", "gcc"))
        .args(["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O1"])
        .args(cflags.split_whitespace())
        .arg(repo().join("ffi/c/consumer.c"))
        .args(libs.split_whitespace())
        .arg("-lm")
        .arg("-o")
        .arg(&exe));
    assert_uses_installed_shared_library(&installed, &exe);
    run_c_consumer(&installed, &exe);
}

#[test]
fn c_consumer_static_through_pkg_config() {
    let Some(tools) = tools_or_skip("c_consumer_static_through_pkg_config", &[("pkg-config", "pkg-config")]) else {
        return;
    };
    let installed = install();
    // `--static` lists what libucgm.a needs ...
    let libs = installed.pkg_config(&tools[0], &["--static", "--libs", "ucgm"]);
    assert_eq!(libs, format!("-L{} -lucgm -lpthread -ldl -lm", installed.lib().display()));
    // ... and ucgm-static.pc names the archive, since -lucgm takes the .so when both are there.
    let cflags = installed.pkg_config(&tools[0], &["--cflags", "ucgm-static"]);
    let libs = installed.pkg_config(&tools[0], &["--static", "--libs", "ucgm-static"]);
    assert!(libs.contains(&installed.lib().join("libucgm.a").display().to_string()), "{libs}");

    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("consumer_c_static");
    run(Command::new(required_tool("cc", "gcc"))
        .args(["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O1"])
        .args(cflags.split_whitespace())
        .arg(repo().join("ffi/c/consumer.c"))
        .args(libs.split_whitespace())
        .arg("-o")
        .arg(&exe));
    assert_static(&exe);
    run_c_consumer(&installed, &exe);
}

#[test]
fn cpp_and_c_consumers_through_cmake_find_package() {
    let Some(tools) = tools_or_skip("cpp_and_c_consumers_through_cmake_find_package", &[("cmake", "cmake"), ("make", "make")]) else {
        return;
    };
    let installed = install();
    let build = tempfile::tempdir().unwrap();
    run(installed
        .command(&tools[0])
        .arg("-S")
        .arg(repo().join("ffi/cmake/example"))
        .arg("-B")
        .arg(build.path())
        .arg("-G")
        .arg("Unix Makefiles")
        .arg(format!("-DCMAKE_PREFIX_PATH={}", installed.prefix.display()))
        .arg("-DCMAKE_BUILD_TYPE=Release")
        .env_remove("CMAKE_PREFIX_PATH"));
    let cache = std::fs::read_to_string(build.path().join("CMakeCache.txt")).unwrap();
    let want = format!("ucgm_DIR:PATH={}", installed.lib().join("cmake/ucgm").display());
    assert!(cache.contains(&want), "find_package(ucgm) did not use the installed package ({want})");
    run(installed.command(&tools[0]).arg("--build").arg(build.path()).arg("-j2"));

    let cpp = build.path().join("consumer_cpp");
    assert_uses_installed_shared_library(&installed, &cpp);
    run_cpp_consumer(&installed, &cpp);
    let c = build.path().join("consumer_c");
    assert_uses_installed_shared_library(&installed, &c);
    run_c_consumer(&installed, &c);
    let c_static = build.path().join("consumer_c_static");
    assert_static(&c_static);
    run_c_consumer(&installed, &c_static);
    for (name, prefix) in [("sample_image_c", "c_image"), ("sample_image_cpp", "cpp_image")] {
        let exe = build.path().join(name);
        assert_uses_installed_shared_library(&installed, &exe);
        run_sample_image(&installed, &exe, prefix);
    }
}
