//! `ucgm fid`: folders of PNGs and JPEGs of mixed sizes (resized, not an error),
//! statistics files on either side, an empty folder and a wrong weights file as clear
//! errors.

mod common;

use std::path::Path;
use std::process::Command;

fn write_png(path: &Path, w: u32, h: u32, seed: u32) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(f, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let data: Vec<u8> = (0..w * h * 3).map(|i| ((i * 2654435761u32.wrapping_add(seed)) >> 13) as u8).collect();
    enc.write_header().unwrap().write_image_data(&data).unwrap();
}

fn ucgm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ucgm"))
        .args(["--backend", "cpu", "--threads", "2"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn fid_of(stdout: &str) -> f64 {
    stdout.lines().find_map(|l| l.strip_prefix("FID ")).unwrap().trim().parse().unwrap()
}

#[test]
fn fid_folders_stats_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    for i in 0..3 {
        write_png(&a.join(format!("{i}.png")), 32 + 5 * i, 40, i); // mixed sizes
        write_png(&b.join(format!("{i}.png")), 48, 48, 100 + i);
    }
    let w = common::reference("fid_inception_random.safetensors");
    let w = w.to_str().unwrap();
    let stats = dir.path().join("a.npz");
    let (ok, out, err) = ucgm(&[
        "fid",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--inception",
        w,
        "--save-stats",
        stats.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let fid = fid_of(&out);
    assert!(fid.is_finite() && fid > 0.0, "{out}");
    // The saved statistics of A stand in for A; against itself the distance is ~0.
    let (ok, out2, err) = ucgm(&["fid", stats.to_str().unwrap(), b.to_str().unwrap(), "--inception", w]);
    assert!(ok, "{err}");
    assert!((fid_of(&out2) - fid).abs() <= 1e-9 * fid, "{out2} vs {out}");
    let (ok, out3, err) = ucgm(&["fid", stats.to_str().unwrap(), stats.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(fid_of(&out3).abs() < 1e-6 * fid, "{out3}");
    // Empty folder.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, _, err) = ucgm(&["fid", empty.to_str().unwrap(), b.to_str().unwrap(), "--inception", w]);
    assert!(!ok && err.contains("0 PNG/JPEG image(s)"), "{err}");
    // A JPEG joins the folder (the fixture's 4:2:0 file, made by Pillow): read, not skipped,
    // so the distance changes.
    let fixture = std::fs::read("tests/fixtures/image_preprocess.safetensors").unwrap();
    let st = safetensors::SafeTensors::deserialize(&fixture).unwrap();
    std::fs::write(a.join("3.jpg"), st.tensor("jpeg420.file").unwrap().data()).unwrap();
    let (ok, out4, err) = ucgm(&["fid", a.to_str().unwrap(), b.to_str().unwrap(), "--inception", w]);
    assert!(ok, "{err}");
    let fid4 = fid_of(&out4);
    assert!(fid4.is_finite() && (fid4 - fid).abs() > 1e-6 * fid, "{out4} vs {out}");
    // Wrong weights file (a statistics file is not a safetensors file).
    let (ok, _, err) = ucgm(&["fid", a.to_str().unwrap(), b.to_str().unwrap(), "--inception", stats.to_str().unwrap()]);
    assert!(!ok && !err.is_empty(), "{err}");
    // Missing --inception for images.
    let (ok, _, err) = ucgm(&["fid", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(!ok && err.contains("--inception"), "{err}");
}
