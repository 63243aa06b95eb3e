//! FID statistics and distances against the shared reference (`fid_io_shared`):
//! streaming mean/covariance, the Fréchet distance (`fd_ab`, computed by pytorch-fid
//! with scipy), `.npz` statistics files (round trip, numpy reading the engine's file,
//! bad files), and NaN features.

mod common;

use std::process::Command;

use ucgm::fid::{frechet_distance, read_stats_npz, write_stats_npz, FeatureStats};
use ucgm::metric::GaussianStats;
use ucgm::Error;

/// `feats_a`, `feats_b` [64, 2048] float64 and the metadata `fd_ab`.
fn reference_features() -> (Vec<f64>, Vec<f64>, f64) {
    let bytes = std::fs::read(common::reference("fid_io_shared.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let fd: f64 = meta.metadata().as_ref().unwrap()["fd_ab"].parse().unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let get = |name: &str| -> Vec<f64> {
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F64);
        assert_eq!(t.shape(), &[64, 2048]);
        t.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
    };
    (get("feats_a"), get("feats_b"), fd)
}

fn stream(features: &[f64], batch_rows: usize) -> GaussianStats {
    let mut s = FeatureStats::new(2048).unwrap();
    for chunk in features.chunks(batch_rows * 2048) {
        s.add_f64(chunk).unwrap();
    }
    assert_eq!(s.count(), 64);
    s.finish().unwrap()
}

fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
}

#[test]
#[ignore = "fd_ab contains 2.2e-5 (8.7e-8 relative) of rounding noise from sqrt of the ~1985 null-space eigenvalues of the rank-63 Σ_aΣ_b; how Σ_aΣ_b is rounded moves it by -4.1e-8..+3.5e-8 (scripts/fd_noise.py --products), ucgm lands at 1.1e-8 (see src/fid/frechet.rs)"]
fn frechet_distance_equals_pytorch_fid_reference() {
    let (fa, fb, fd_ref) = reference_features();
    let fd = frechet_distance(&stream(&fa, 64), &stream(&fb, 64)).unwrap();
    let rel = (fd - fd_ref).abs() / fd_ref;
    eprintln!("fd = {fd:.15}, reference {fd_ref:.15}, relative difference {rel:.2e}");
    assert!(rel <= 1e-8, "fd {fd} vs reference {fd_ref} (relative {rel:e})");
}

#[test]
fn frechet_distance_near_pytorch_fid_reference_and_symmetric() {
    let (fa, fb, fd_ref) = reference_features();
    let a = stream(&fa, 64);
    let b = stream(&fb, 64);
    let fd = frechet_distance(&a, &b).unwrap();
    let rel = (fd - fd_ref).abs() / fd_ref;
    eprintln!("fd = {fd:.15}, reference {fd_ref:.15}, relative difference {rel:.2e}");
    // The reference's own rounding noise is 9e-8 relative (module doc of fid::frechet);
    // this checks the distance lies within it, the strict 1e-8 check is the ignored test
    // above and the full-rank check below.
    assert!(rel <= 1e-7, "fd {fd} vs reference {fd_ref} (relative {rel:e})");
    let ba = frechet_distance(&b, &a).unwrap();
    assert!((ba - fd).abs() / fd <= 1e-7);
    // Against itself: zero up to the same null-space noise (as pytorch-fid).
    let aa = frechet_distance(&a, &a).unwrap();
    eprintln!("fd(a, a) = {aa:e}");
    assert!(aa.abs() < 1e-6 * fd, "{aa}");
}

/// Full-rank covariances (the first 48 of the 2048 features, 64 samples): no
/// null-space noise, so the distance must equal pytorch-fid's
/// `calculate_frechet_distance` (scipy sqrtm) to 1e-8 relative.
#[test]
fn frechet_distance_equals_pytorch_fid_full_rank() {
    let (fa, fb, _) = reference_features();
    let cut = |f: &[f64]| -> Vec<f64> { f.chunks_exact(2048).flat_map(|r| r[..48].to_vec()).collect() };
    let (ca, cb) = (cut(&fa), cut(&fb));
    let a = GaussianStats::from_features(&ca, 48).unwrap();
    let b = GaussianStats::from_features(&cb, 48).unwrap();
    let fd = frechet_distance(&a, &b).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.f64"), dir.path().join("b.f64"));
    let bytes = |v: &[f64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(&pa, bytes(&ca)).unwrap();
    std::fs::write(&pb, bytes(&cb)).unwrap();
    let script = "import sys, numpy as np\nfrom pytorch_fid.fid_score import calculate_frechet_distance as fd\n\
        a = np.fromfile(sys.argv[1]).reshape(64, 48); b = np.fromfile(sys.argv[2]).reshape(64, 48)\n\
        print(repr(float(fd(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)))))";
    match Command::new(python()).arg("-c").arg(script).arg(&pa).arg(&pb).output() {
        Ok(out) if out.status.success() => {
            let want: f64 = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
            let rel = (fd - want).abs() / want;
            eprintln!("48-d: fd = {fd:.15}, pytorch-fid {want:.15}, relative {rel:.2e}");
            assert!(rel <= 1e-8, "{fd} vs {want}");
        }
        Ok(out) => eprintln!("SKIPPED: pytorch-fid not available: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => eprintln!("SKIPPED: no python ({e})"),
    }
}

fn python() -> std::path::PathBuf {
    let venv = std::path::Path::new("/work/venv/bin/python");
    if venv.exists() {
        venv.to_path_buf()
    } else {
        "python3".into()
    }
}

#[test]
fn streaming_statistics_do_not_depend_on_batching() {
    let (fa, _, _) = reference_features();
    let whole = GaussianStats::from_features(&fa, 2048).unwrap();
    for rows in [1, 7, 13, 64] {
        let s = stream(&fa, rows);
        let dm = max_rel_diff(s.mean(), whole.mean());
        let dc = max_rel_diff(s.cov(), whole.cov());
        eprintln!("batches of {rows}: mean {dm:.2e}, cov {dc:.2e}");
        assert!(dm < 1e-13 && dc < 1e-12, "batches of {rows}: mean {dm:e}, cov {dc:e}");
    }
    // f32 input is the f64 path on the rounded values.
    let f32s: Vec<f32> = fa.iter().map(|&v| v as f32).collect();
    let rounded: Vec<f64> = f32s.iter().map(|&v| v as f64).collect();
    let mut s = FeatureStats::new(2048).unwrap();
    s.add_f32(&f32s).unwrap();
    let t = GaussianStats::from_features(&rounded, 2048).unwrap();
    assert!(max_rel_diff(s.finish().unwrap().cov(), t.cov()) < 1e-12);
}

#[test]
fn streaming_state_resumes() {
    let (fa, _, _) = reference_features();
    let mut s = FeatureStats::new(2048).unwrap();
    s.add_f64(&fa[..20 * 2048]).unwrap();
    let mut r = FeatureStats::from_state(s.count(), s.mean().to_vec(), &s.scatter()).unwrap();
    r.add_f64(&fa[20 * 2048..]).unwrap();
    s.add_f64(&fa[20 * 2048..]).unwrap();
    assert_eq!(r.finish().unwrap(), s.finish().unwrap());
}

#[test]
fn large_offsets_keep_the_covariance() {
    // Features with a mean of 1e8 and unit variance: the naive E[xxᵀ] − μμᵀ loses all
    // digits; the centred pairwise update keeps them.
    let x: Vec<f64> = (0..1000).map(|i| 1e8 + ((i * 7919) % 1000) as f64 / 1000.0).collect();
    let mut s = FeatureStats::new(1).unwrap();
    for c in x.chunks(3) {
        s.add_f64(c).unwrap();
    }
    let want = GaussianStats::from_features(&x, 1).unwrap();
    // (The values themselves carry rounding of 1e8·ε ≈ 1.5e-8, so agreement to 1e-7
    // relative is what f64 allows; the naive formula's cancellation error is O(1).)
    let got = s.finish().unwrap();
    assert!(
        (got.cov()[0] - want.cov()[0]).abs() < 1e-7 * want.cov()[0],
        "{} vs {}",
        got.cov()[0],
        want.cov()[0]
    );
}

#[test]
fn nan_features_are_refused() {
    let mut s = FeatureStats::new(4).unwrap();
    let mut x = vec![0.5f32; 12];
    x[9] = f32::NAN;
    let err = s.add_f32(&x).unwrap_err();
    assert!(matches!(err, Error::NonFinite(_)), "{err}");
    assert!(err.to_string().contains("row 2"), "{err}");
    assert_eq!(s.count(), 0);
    assert!(matches!(s.add_f32(&[0.0; 5]), Err(Error::InvalidArgument(_))));
    assert!(matches!(s.finish(), Err(Error::InvalidArgument(_))));
}

#[test]
fn npz_round_trip_and_numpy_reads_it() {
    let (fa, _, _) = reference_features();
    let stats = stream(&fa, 16);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stats.npz");
    write_stats_npz(&path, &stats).unwrap();
    let back = read_stats_npz(&path).unwrap();
    assert_eq!(back, stats);

    let python = python();
    let script = "import numpy as np, sys\nf = np.load(sys.argv[1])\nmu, s = f['mu'], f['sigma']\n\
         assert mu.dtype == np.float64 and mu.shape == (2048,) and s.shape == (2048, 2048)\n\
         print(repr(float(mu.sum())), repr(float(s.sum())), repr(float(s[3, 5])))\n\
         np.savez(sys.argv[2], mu=mu.astype(np.float32), sigma=np.asfortranarray(s), arr_0=np.zeros((3, 2048), np.float32))";
    let from_numpy = dir.path().join("numpy.npz");
    match Command::new(&python).arg("-c").arg(script).arg(&path).arg(&from_numpy).output() {
        Ok(out) if out.status.success() || !String::from_utf8_lossy(&out.stderr).contains("No module named") => {
            assert!(out.status.success(), "numpy failed: {}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8(out.stdout).unwrap();
            let v: Vec<f64> = text.split_whitespace().map(|t| t.parse().unwrap()).collect();
            let sum: f64 = stats.mean().iter().sum();
            assert!((v[0] - sum).abs() <= 1e-12 * sum.abs(), "{} vs {sum}", v[0]);
            assert_eq!(v[2], stats.cov()[3 * 2048 + 5]);
            // numpy's own file (float32 mu, Fortran-order sigma, an extra arr_0) reads back.
            let np = read_stats_npz(&from_numpy).unwrap();
            assert_eq!(np.cov(), stats.cov());
            assert!(np.mean().iter().zip(stats.mean()).all(|(a, b)| *a == (*b as f32) as f64));
        }
        _ => eprintln!("SKIPPED numpy check: no python with numpy at /work/venv or on PATH"),
    }
}

#[test]
fn bad_statistics_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npz");
    std::fs::write(&p, b"not a zip").unwrap();
    let e = read_stats_npz(&p).unwrap_err();
    assert!(matches!(e, Error::Format { .. }) && e.to_string().contains("npz"), "{e}");
    assert!(matches!(read_stats_npz(dir.path().join("missing.npz")), Err(Error::Io { .. })));
    // Wrong shapes: sigma [3, 3] with mu [4].
    let good = GaussianStats::new(vec![0.0; 3], vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]).unwrap();
    write_stats_npz(&p, &good).unwrap();
    assert_eq!(read_stats_npz(&p).unwrap(), good);
    let bytes = std::fs::read(&p).unwrap();
    // Patch mu's header shape (3,) → (4,) is not possible in place without breaking the
    // data length, so build the bad file with a 4-dim mu written separately.
    let bad = GaussianStats::new(vec![0.0; 4], vec![0.0; 16]).unwrap();
    let p4 = dir.path().join("four.npz");
    write_stats_npz(&p4, &bad).unwrap();
    let mixed = splice_sigma(&std::fs::read(&p4).unwrap(), &bytes);
    std::fs::write(&p, mixed).unwrap();
    let e = read_stats_npz(&p).unwrap_err();
    assert!(e.to_string().contains("'sigma' has shape [3, 3]; expected [4, 4]"), "{e}");
}

/// An archive with `mu` from `with_mu` and `sigma` from `with_sigma`.
fn splice_sigma(with_mu: &[u8], with_sigma: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let get = |bytes: &[u8], name: &str| {
        let mut a = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
        let mut v = Vec::new();
        a.by_name(name).unwrap().read_to_end(&mut v).unwrap();
        v
    };
    let mut zw = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default();
    zw.start_file("mu.npy", o).unwrap();
    zw.write_all(&get(with_mu, "mu.npy")).unwrap();
    zw.start_file("sigma.npy", o).unwrap();
    zw.write_all(&get(with_sigma, "sigma.npy")).unwrap();
    zw.finish().unwrap().into_inner()
}

/// Merging disjoint parts (as `ucgm eval`'s ranks do) equals one set holding both: to
/// f64 rounding against the direct two-pass statistics, exactly against streaming the
/// same batches (merging a one-batch part is the streaming update itself); an empty part
/// changes nothing; another dimension is refused.
#[test]
fn merging_parts_equals_the_whole() {
    let (fa, _, _) = reference_features();
    let (mut p1, mut p2) = (FeatureStats::new(2048).unwrap(), FeatureStats::new(2048).unwrap());
    p1.add_f64(&fa[..10 * 2048]).unwrap();
    p1.add_f64(&fa[10 * 2048..25 * 2048]).unwrap();
    p2.add_f64(&fa[25 * 2048..]).unwrap();
    let mut streamed = p1.clone();
    streamed.add_f64(&fa[25 * 2048..]).unwrap();
    let before = p1.finish().unwrap();
    p1.merge(&FeatureStats::new(2048).unwrap()).unwrap();
    assert_eq!(p1.finish().unwrap(), before, "an empty part changes nothing");
    p1.merge(&p2).unwrap();
    assert_eq!(p1.count(), 64);
    let merged = p1.finish().unwrap();
    assert_eq!(merged, streamed.finish().unwrap());
    let direct = GaussianStats::from_features(&fa, 2048).unwrap();
    assert!(max_rel_diff(merged.mean(), direct.mean()) < 1e-13);
    assert!(max_rel_diff(merged.cov(), direct.cov()) < 1e-12);
    assert!(p1.merge(&FeatureStats::new(4).unwrap()).is_err());
}
