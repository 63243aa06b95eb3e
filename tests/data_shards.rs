//! Latent shards: write → read across several shards in name order, the ½ flip,
//! accepted dtypes, and every malformed-input case as an error value naming the file
//! and the tensor.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use ucgm::data::shards::{write_shard, LatentShards};
use ucgm::data::{Batcher, Dataset};
use ucgm::{Error, Rng};

const SHAPE: [usize; 3] = [2, 3, 3];
const SAMPLE: usize = 18;

/// A shard of `n` items whose latents encode (shard, item): latents ≥ 0, flips < 0.
fn make_shard(dir: &Path, name: &str, shard: usize, n: usize, labels: &[i64]) -> PathBuf {
    let latents: Vec<f32> = (0..n * SAMPLE).map(|i| (shard * 1000 + i) as f32).collect();
    let flips: Vec<f32> = latents.iter().map(|v| -v - 0.5).collect();
    let path = dir.join(name);
    write_shard(&path, [n, SHAPE[0], SHAPE[1], SHAPE[2]], &latents, &flips, labels, &BTreeMap::new()).unwrap();
    path
}

/// Writes a safetensors file with raw tensors (any dtype, any shape).
fn write_raw(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let bytes = safetensors::serialize(views, None::<HashMap<String, String>>).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn f32_bytes(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
}

fn i64_bytes(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Expects an `Error::Format` whose path is `file` and whose message mentions `needle`.
fn expect_format(r: Result<LatentShards, Error>, file: &Path, needle: &str) {
    match r {
        Err(Error::Format { path, msg }) => {
            assert_eq!(path, file, "error names the wrong file: {msg}");
            assert!(msg.contains(needle), "message {msg:?} does not mention {needle:?}");
        }
        other => panic!("expected a format error on {}, got {other:?}", file.display()),
    }
}

#[test]
fn shards_are_read_in_name_order_and_concatenated() {
    let dir = tempfile::tempdir().unwrap();
    // Created out of order; N differs per shard.
    make_shard(dir.path(), "part-2.safetensors", 2, 1, &[4]);
    make_shard(dir.path(), "part-0.safetensors", 0, 3, &[0, 1, 2]);
    make_shard(dir.path(), "part-1.safetensors", 1, 2, &[3, 0]);
    // Ignored: other extensions, hidden (e.g. interrupted atomic writes) and folders.
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    std::fs::write(dir.path().join(".part-3.safetensors"), "garbage").unwrap();
    std::fs::create_dir(dir.path().join("sub.safetensors")).unwrap();

    let ds = LatentShards::open(dir.path(), None).unwrap();
    let names: Vec<_> = ds.files().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["part-0.safetensors", "part-1.safetensors", "part-2.safetensors"]);
    assert_eq!((ds.len(), ds.sample_shape(), ds.num_classes()), (6, SHAPE, 5));
    assert_eq!(LatentShards::open(dir.path(), Some(1000)).unwrap().num_classes(), 1000);

    let expected_source = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0)]; // (shard, item)
    let expected_labels = [0, 1, 2, 3, 0, 4];
    let mut rng = Rng::new(0);
    let mut x = vec![0.0; SAMPLE];
    for (index, &(shard, item)) in expected_source.iter().enumerate() {
        let label = ds.get(index, &mut rng, &mut x).unwrap();
        assert_eq!(label, expected_labels[index]);
        let plain: Vec<f32> = (0..SAMPLE).map(|k| (shard * 1000 + item * SAMPLE + k) as f32).collect();
        let flipped: Vec<f32> = plain.iter().map(|v| -v - 0.5).collect();
        assert!(x == plain || x == flipped, "item {index} is neither its latent nor its flipped latent");
    }
}

#[test]
fn the_flipped_latent_is_taken_about_half_the_time() {
    let dir = tempfile::tempdir().unwrap();
    make_shard(dir.path(), "a.safetensors", 0, 4, &[0, 1, 0, 1]);
    let ds = LatentShards::open(dir.path(), None).unwrap();
    let mut rng = Rng::new(123);
    let mut x = vec![0.0; SAMPLE];
    let draws = 4000;
    let mut flips = 0;
    for i in 0..draws {
        ds.get(i % 4, &mut rng, &mut x).unwrap();
        flips += (x[0] < 0.0) as usize;
    }
    // Binomial(4000, ½): mean 2000, std √(4000/4) ≈ 31.6. ±5 std (±158) fails for a
    // correct implementation with probability < 1e-6, and catches p = 0.45 or 0.55
    // (a 200-count shift) and any "always"/"never".
    let dev = (flips as f64 - draws as f64 / 2.0).abs();
    assert!(dev <= 5.0 * (draws as f64 / 4.0).sqrt(), "{flips} flips in {draws} draws");
}

#[test]
fn batcher_over_shards_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    make_shard(dir.path(), "a.safetensors", 0, 5, &[0, 1, 2, 3, 4]);
    make_shard(dir.path(), "b.safetensors", 1, 4, &[5, 6, 7, 8]);
    let run = || {
        let mut b = Batcher::new(LatentShards::open(dir.path(), None).unwrap(), 7).unwrap();
        let mut x = vec![0.0; 6 * SAMPLE];
        let mut labels = vec![0; 6];
        let mut out = Vec::new();
        for _ in 0..5 {
            b.next_batch(6, &mut x, &mut labels).unwrap();
            out.push((x.clone(), labels.clone()));
        }
        out
    };
    let first = run();
    assert_eq!(first, run());
    let labels: Vec<usize> = first.iter().take(3).flat_map(|(_, l)| l.clone()).collect();
    let mut epoch0 = labels[..9].to_vec();
    epoch0.sort_unstable();
    assert_eq!(epoch0, (0..9).collect::<Vec<_>>());
}

#[test]
fn f16_latents_and_i32_labels_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let n = 2;
    let half: Vec<u8> = (0..n * SAMPLE).flat_map(|i| half::f16::from_f32(i as f32 * 0.5).to_le_bytes()).collect();
    let labels: Vec<u8> = [3i32, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
    let shape = vec![n, SHAPE[0], SHAPE[1], SHAPE[2]];
    write_raw(
        &dir.path().join("h.safetensors"),
        &[
            ("latents", Dtype::F16, shape.clone(), half.clone()),
            ("latents_flip", Dtype::F16, shape, half),
            ("labels", Dtype::I32, vec![n], labels),
        ],
    );
    let ds = LatentShards::open(dir.path(), None).unwrap();
    let mut x = vec![0.0; SAMPLE];
    assert_eq!(ds.get(1, &mut Rng::new(0), &mut x).unwrap(), 1);
    assert_eq!(x[0], SAMPLE as f32 * 0.5);
}

#[test]
fn malformed_shards_are_format_errors_naming_file_and_tensor() {
    let n = 2;
    let shape = vec![n, SHAPE[0], SHAPE[1], SHAPE[2]];
    let good_latents = || ("latents", Dtype::F32, shape.clone(), f32_bytes(n * SAMPLE));
    let good_flip = || ("latents_flip", Dtype::F32, shape.clone(), f32_bytes(n * SAMPLE));
    let good_labels = || ("labels", Dtype::I64, vec![n], i64_bytes(&[0, 1]));
    type Case = (&'static str, Vec<(&'static str, Dtype, Vec<usize>, Vec<u8>)>, &'static str);
    let cases: Vec<Case> = vec![
        ("missing latents_flip", vec![good_latents(), good_labels()], "latents_flip"),
        ("missing labels", vec![good_latents(), good_flip()], "labels"),
        (
            "rank-3 latents",
            vec![("latents", Dtype::F32, vec![n, 3, 6], f32_bytes(n * SAMPLE)), good_flip(), good_labels()],
            "latents",
        ),
        (
            "flip shape differs",
            vec![
                good_latents(),
                ("latents_flip", Dtype::F32, vec![n, 2, 9, 1], f32_bytes(n * SAMPLE)),
                good_labels(),
            ],
            "latents_flip",
        ),
        (
            "too few labels",
            vec![good_latents(), good_flip(), ("labels", Dtype::I64, vec![1], i64_bytes(&[0]))],
            "labels",
        ),
        (
            "2-d labels",
            vec![good_latents(), good_flip(), ("labels", Dtype::I64, vec![n, 1], i64_bytes(&[0, 1]))],
            "labels",
        ),
        (
            "float labels",
            vec![good_latents(), good_flip(), ("labels", Dtype::F32, vec![n], f32_bytes(n))],
            "labels",
        ),
        (
            "integer latents",
            vec![
                ("latents", Dtype::I64, shape.clone(), i64_bytes(&vec![0; n * SAMPLE])),
                good_flip(),
                good_labels(),
            ],
            "latents",
        ),
        (
            "negative label",
            vec![good_latents(), good_flip(), ("labels", Dtype::I64, vec![n], i64_bytes(&[0, -1]))],
            "labels",
        ),
        (
            "NaN latent",
            vec![
                good_latents(),
                (
                    "latents_flip",
                    Dtype::F32,
                    shape.clone(),
                    [f32_bytes(n * SAMPLE - 1), f32::NAN.to_le_bytes().to_vec()].concat(),
                ),
                good_labels(),
            ],
            "latents_flip",
        ),
    ];
    for (what, tensors, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        make_shard(dir.path(), "a.safetensors", 0, 2, &[0, 1]);
        let bad = dir.path().join("b.safetensors");
        write_raw(&bad, &tensors);
        let r = LatentShards::open(dir.path(), None);
        assert!(r.is_err(), "{what}: accepted");
        expect_format(r, &bad, needle);
    }
}

#[test]
fn truncated_garbage_inconsistent_and_out_of_range_inputs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_shard(dir.path(), "a.safetensors", 0, 2, &[0, 1]);
    let bytes = std::fs::read(&a).unwrap();

    // Truncated shard.
    let b = dir.path().join("b.safetensors");
    std::fs::write(&b, &bytes[..bytes.len() - 5]).unwrap();
    assert!(matches!(LatentShards::open(dir.path(), None), Err(Error::Format { path, .. }) if path == b));
    // Garbage, and an empty file.
    std::fs::write(&b, b"{not safetensors").unwrap();
    assert!(matches!(LatentShards::open(dir.path(), None), Err(Error::Format { path, .. }) if path == b));
    std::fs::write(&b, b"").unwrap();
    assert!(matches!(LatentShards::open(dir.path(), None), Err(Error::Format { path, .. }) if path == b));

    // A second shard with a different sample shape.
    let latents = vec![0.0f32; 2 * 2 * 3 * 4];
    write_shard(&b, [2, 2, 3, 4], &latents, &latents, &[0, 1], &BTreeMap::new()).unwrap();
    expect_format(LatentShards::open(dir.path(), None), &b, "a.safetensors");
    std::fs::remove_file(&b).unwrap();

    // Labels not below num_classes.
    expect_format(LatentShards::open(dir.path(), Some(1)), &a, "num_classes");
    assert!(matches!(LatentShards::open(dir.path(), Some(0)), Err(Error::InvalidArgument(_))));

    // An empty folder and a missing one.
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(LatentShards::open(empty.path(), None), Err(Error::InvalidArgument(_))));
    assert!(matches!(LatentShards::open(empty.path().join("missing"), None), Err(Error::Io { .. })));

    // Writer and reader argument checks.
    let l = vec![0.0f32; SAMPLE];
    assert!(matches!(
        write_shard(&b, [1, 2, 3, 3], &l[1..], &l, &[0], &BTreeMap::new()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        write_shard(&b, [1, 2, 3, 3], &l, &l, &[0, 1], &BTreeMap::new()),
        Err(Error::InvalidArgument(_))
    ));
    let ds = LatentShards::open(dir.path(), None).unwrap();
    let mut x = vec![0.0; SAMPLE];
    assert!(matches!(ds.get(2, &mut Rng::new(0), &mut x), Err(Error::InvalidArgument(_))));
    assert!(matches!(ds.get(0, &mut Rng::new(0), &mut x[1..]), Err(Error::InvalidArgument(_))));
}
