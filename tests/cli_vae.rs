//! Pixels in, pixels out with the tiny reference VAE (`../shared/reference/
//! vae_tiny_diffusers.safetensors`, f = 4, z = 4): `ucgm encode` of a folder of PNGs made
//! here → shards readable by `LatentShards::open` whose latents are the VAE posterior of
//! the reference preprocessing → `ucgm train` of a tiny latent TiT → `ucgm sample --vae`
//! → PNGs of the right size; `ucgm decode`; an interrupted encode resumes to the same
//! bytes; bad input is an error that leaves nothing half-written.

mod cli_common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cli_common::ucgm;
use ucgm::app::encode::{encode_folder, list_images, shard_name, EncodeOptions, PosteriorMode};
use ucgm::control::RunControl;
use ucgm::data::shards::LatentShards;
use ucgm::data::Dataset;
use ucgm::engine::AnyVae;
use ucgm::image::center_crop::load_preprocessed;
use ucgm::tensor_file::TensorFile;
use ucgm::{AnyBackend, Error, Rng};

fn vae_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/vae_tiny_diffusers.safetensors")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A PNG of `w × h` random RGB pixels.
fn write_png(path: &Path, w: u32, h: u32, seed: u64) {
    let mut rng = Rng::new(seed);
    let px: Vec<u8> = (0..w * h * 3).map(|_| (rng.uniform() * 256.0) as u8).collect();
    let mut buf = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut buf, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.write_header().unwrap().write_image_data(&px).unwrap();
    }
    std::fs::write(path, buf).unwrap();
}

/// root/cat: 3 images (one 7×7, enlarged by the crop), root/dog: 3 images, one in a
/// sub-folder (found recursively, as torchvision does).
fn make_folder(root: &Path) {
    for c in ["cat", "dog/sub"] {
        std::fs::create_dir_all(root.join(c)).unwrap();
    }
    write_png(&root.join("cat/a.png"), 40, 24, 1);
    write_png(&root.join("cat/b.PNG"), 7, 7, 2);
    write_png(&root.join("cat/c.png"), 16, 16, 3);
    write_png(&root.join("dog/x.png"), 33, 50, 4);
    write_png(&root.join("dog/y.png"), 64, 64, 5);
    write_png(&root.join("dog/sub/z.png"), 20, 18, 6);
    std::fs::write(root.join("dog/notes.txt"), "not an image and not an image extension").unwrap();
}

fn opts(input: &Path, output: &Path, posterior: PosteriorMode, batch: usize) -> EncodeOptions {
    EncodeOptions {
        input: input.into(),
        output: output.into(),
        image_size: 16,
        batch,
        shard_size: 4,
        posterior,
        seed: 7,
        vae_name: "vae_tiny_diffusers.safetensors".into(),
    }
}

fn cpu_vae() -> AnyVae {
    AnyVae::load(vae_path(), AnyBackend::cpu(1).unwrap()).unwrap()
}

#[test]
fn encode_train_sample_decode_end_to_end() {
    let d = tempfile::tempdir().unwrap();
    let (imgs, shards) = (d.path().join("images"), d.path().join("shards"));
    make_folder(&imgs);
    let vae = vae_path();
    let (ok, out, err) = ucgm(&[
        "encode",
        s(&imgs),
        "--vae",
        s(&vae),
        "--out",
        s(&shards),
        "--image-size",
        "16",
        "--batch",
        "3",
        "--shard-size",
        "4",
        "--backend",
        "cpu",
        "--threads",
        "1",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("encoded 6 images of 2 classes") && out.contains("2 shards written"), "{out}");
    // The reference's file names and metadata.
    let first = TensorFile::open(shards.join("latents_rank00_shard000.safetensors")).unwrap();
    assert_eq!(first.metadata()["total_size"], "4");
    assert_eq!(first.metadata()["dtype"], "torch.float32");
    let data = LatentShards::open(&shards, Some(2)).unwrap();
    assert_eq!((data.len(), data.sample_shape()), (6, [4, 4, 4]));
    assert_eq!((0..6).map(|i| data.label(i)).collect::<Vec<_>>(), [0, 0, 0, 1, 1, 1]);
    // Latents are the VAE posterior mean of the reference preprocessing, unscaled; the
    // flipped ones that of the mirrored crop. Order as torchvision: by (folder, file name),
    // so dog/sub/z.png comes after dog/y.png; item 4 (shard 1, item 0) is dog/y.png.
    let list = list_images(&imgs).unwrap();
    let names: Vec<_> = list
        .files
        .iter()
        .map(|f| f.strip_prefix(&imgs).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["cat/a.png", "cat/b.PNG", "cat/c.png", "dog/x.png", "dog/y.png", "dog/sub/z.png"]);
    let mut v = cpu_vae();
    let second = TensorFile::open(shards.join("latents_rank00_shard001.safetensors")).unwrap();
    let (shape, lat) = second.f32("latents").unwrap();
    assert_eq!(shape, [2, 4, 4, 4]);
    let x = load_preprocessed(&imgs.join("dog/y.png"), 16).unwrap();
    let post = v.encode(&x, 1, 16, 16).unwrap();
    assert_eq!(&lat[..64], &post.mean[..], "shard 1 item 0 = encode(center_crop_arr(dog/y.png)).mean");
    let mut flipped = x.clone();
    for row in flipped.chunks_exact_mut(16) {
        row.reverse();
    }
    let post_flip = v.encode(&flipped, 1, 16, 16).unwrap();
    assert_eq!(&second.f32("latents_flip").unwrap().1[..64], &post_flip.mean[..]);
    assert_ne!(post.mean, post_flip.mean);

    // Latent statistics as the reference computes them (per channel over N, H, W; torch's
    // unbiased std), stored as scripts/convert_vae.py stats writes them.
    let all: Vec<f32> = (0..2)
        .flat_map(|k| TensorFile::open(shards.join(shard_name(k))).unwrap().f32("latents").unwrap().1)
        .collect();
    let (mut mean, mut std) = (vec![0f32; 4], vec![0f32; 4]);
    for c in 0..4 {
        let v: Vec<f64> = all
            .chunks_exact(16)
            .enumerate()
            .filter(|(i, _)| i % 4 == c)
            .flat_map(|(_, p)| p.iter().map(|&x| x as f64))
            .collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        mean[c] = m as f32;
        std[c] = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt() as f32;
    }
    let stats = d.path().join("stats.safetensors");
    ucgm::tensor_file::write_atomic(
        &stats,
        &[
            ucgm::tensor_file::TensorOut::f32("mean", vec![1, 4, 1, 1], &mean),
            ucgm::tensor_file::TensorOut::f32("std", vec![1, 4, 1, 1], &std),
        ],
        &Default::default(),
    )
    .unwrap();

    // Train a tiny latent TiT on the shards, normalised as VA-VAE latents are.
    let run = d.path().join("run");
    let cfg = d.path().join("run.yaml");
    std::fs::write(
        &cfg,
        format!(
            "output_dir: {}\ndata: {{data_path: {}, image_size: 16, num_classes: 2, latent_norm: true, latent_stats: {}}}\nvae: {{downsample_ratio: 4}}\n\
             model: {{type: TiT, in_chans: 4, hidden_size: 32, depth: 1, num_heads: 2, patch_size: 2}}\n\
             train: {{max_steps: 3, global_batch_size: 4, global_seed: 0, ckpt_every: 3, ema_decay: 0.9}}\n\
             optimizer: {{type: AdamW, lr: 0.001}}\ntransport: {{type: Linear}}\nsample: {{sampling_steps: 2}}\n",
            run.display(),
            shards.display(),
            stats.display()
        ),
    )
    .unwrap();
    let (ok, out, err) = cli_common::train(s(&cfg), &[]);
    assert!(ok, "{out}\n{err}");
    let ckpt = run.join("checkpoints/0000003.safetensors");
    assert!(ckpt.exists());

    // The normalisation travels with the checkpoint: `sample --vae` needs no more flags.
    let stored = ucgm::latent_norm::LatentNorm::from_metadata(&ckpt, TensorFile::open(&ckpt).unwrap().metadata()).unwrap();
    assert_eq!(stored, Some(ucgm::latent_norm::LatentNorm::from_stats_file(&stats, 1.0).unwrap()));
    let grid = d.path().join("grid.png");
    let per = d.path().join("each");
    let base = [
        "sample",
        "--ckpt",
        s(&ckpt),
        "--vae",
        s(&vae),
        "--n",
        "4",
        "--steps",
        "2",
        "--backend",
        "cpu",
        "--threads",
        "1",
    ];
    let (ok, out, err) = ucgm(&[&base[..], &["--out", s(&grid), "--images-dir", s(&per)]].concat());
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("with 4-channel statistics"), "{err}");
    // Without a stored normalisation and without flags, sampling says what to pass.
    let e = ucgm::app::decode::resolve_norm(None, None, None).unwrap_err().to_string();
    assert!(e.contains("--latent-multiplier 0.18215") && e.contains("--latent-stats"), "{e}");
    let g = png_size(&grid);
    assert_eq!(g, (2 * (16 + 2) + 2, 2 * (16 + 2) + 2), "2×2 grid of 16×16 images, padding 2");
    for i in 0..4 {
        assert_eq!(png_size(&per.join(format!("{i:06}.png"))), (16, 16));
    }
    // A VAE whose latent channels differ from the model's is refused before sampling.
    let (ok, _, err) = ucgm(
        &[&base[..], &["--out", s(&grid), "--latent-multiplier", "1"]]
            .concat()
            .iter()
            .map(|a| if *a == s(&vae) { s(&ckpt) } else { a })
            .collect::<Vec<_>>(),
    );
    assert!(!ok, "{err}");

    // ucgm decode of a shard: raw latents → 16×16 images.
    let dec = d.path().join("decoded");
    let (ok, out, err) = ucgm(&[
        "decode",
        s(&shards.join(shard_name(0))),
        "--vae",
        s(&vae),
        "--images-dir",
        s(&dec),
        "--backend",
        "cpu",
    ]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(std::fs::read_dir(&dec).unwrap().count(), 4);
    assert_eq!(png_size(&dec.join("000003.png")), (16, 16));
}

fn png_size(p: &Path) -> (u32, u32) {
    let dec = png::Decoder::new(std::io::Cursor::new(std::fs::read(p).unwrap()));
    let r = dec.read_info().unwrap();
    (r.info().width, r.info().height)
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

type ShardContent = (String, Vec<(String, Vec<usize>, Vec<u8>)>, std::collections::BTreeMap<String, String>);

/// Every shard of `dir`: file name, tensors (name, shape, raw bytes) and metadata (the
/// safetensors writer orders metadata keys arbitrarily, so bytes are compared per tensor).
fn shards(dir: &Path) -> Vec<ShardContent> {
    files(dir)
        .into_iter()
        .map(|(name, bytes)| {
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let mut t: Vec<_> = st.tensors().into_iter().map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec())).collect();
            t.sort();
            let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
            (name, t, meta.metadata().clone().unwrap_or_default().into_iter().collect())
        })
        .collect()
}

#[test]
fn interrupted_encode_resumes_to_the_same_shards() {
    let d = tempfile::tempdir().unwrap();
    let imgs = d.path().join("images");
    make_folder(&imgs);
    let mut vae = cpu_vae();
    let straight = d.path().join("straight");
    encode_folder(&mut vae, &opts(&imgs, &straight, PosteriorMode::Sample, 2), &mut RunControl::default()).unwrap();

    // Stop in the middle of shard 1 (after 5 images): shard 0 is whole, nothing else.
    let split = d.path().join("split");
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let mut stop = move |done: usize, _: usize| {
        if done > 4 {
            flag.store(true, Ordering::Relaxed);
        }
        true
    };
    let mut ctl = RunControl {
        cancel: Some(cancel),
        progress: Some(&mut stop),
    };
    let e = encode_folder(&mut vae, &opts(&imgs, &split, PosteriorMode::Sample, 2), &mut ctl).unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e}");
    let names: Vec<_> = files(&split).into_iter().map(|f| f.0).collect();
    assert_eq!(names, [shard_name(0)], "only the finished shard, no temporary file");

    // Resume: shard 0 skipped, shard 1 written, the bytes equal the straight run's.
    let r = encode_folder(&mut vae, &opts(&imgs, &split, PosteriorMode::Sample, 2), &mut RunControl::default()).unwrap();
    assert_eq!((r.shards_skipped, r.shards_written), (1, 1));
    assert_eq!(shards(&split), shards(&straight));
    // The posterior noise is drawn per image, not per batch: another batch size gives the
    // same latents up to the encoder's float rounding (its GEMM blocking depends on the
    // batch, so the last bits may differ).
    let other = d.path().join("other_batch");
    encode_folder(&mut vae, &opts(&imgs, &other, PosteriorMode::Sample, 3), &mut RunControl::default()).unwrap();
    for k in 0..2 {
        let a = TensorFile::open(straight.join(shard_name(k))).unwrap().f32("latents").unwrap().1;
        let b = TensorFile::open(other.join(shard_name(k))).unwrap().f32("latents").unwrap().1;
        let num: f64 = a.iter().zip(&b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        let den: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
        assert!((num / den).sqrt() < 1e-5, "shard {k}: rel-L2 {}", (num / den).sqrt());
    }
    // Sample mode really samples: it differs from the mean.
    let mean = d.path().join("mean");
    encode_folder(&mut vae, &opts(&imgs, &mean, PosteriorMode::Mean, 2), &mut RunControl::default()).unwrap();
    assert_ne!(shards(&mean), shards(&straight));

    // Through the command line: a rerun skips everything; other settings are refused.
    let (ok, out, err) = ucgm(&[
        "encode",
        s(&imgs),
        "--vae",
        s(&vae_path()),
        "--out",
        s(&split),
        "--image-size",
        "16",
        "--shard-size",
        "4",
        "--posterior",
        "sample",
        "--seed",
        "7",
        "--backend",
        "cpu",
    ]);
    assert!(ok && out.contains("0 shards written, 2 finished ones skipped"), "{out}\n{err}");
    let (ok, _, err) = ucgm(&[
        "encode",
        s(&imgs),
        "--vae",
        s(&vae_path()),
        "--out",
        s(&split),
        "--image-size",
        "16",
        "--shard-size",
        "4",
        "--backend",
        "cpu",
    ]);
    assert!(!ok && err.contains("was made from other images or settings"), "{err}");
    assert_eq!(shards(&split), shards(&straight));
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let imgs = d.path().join("images");
    make_folder(&imgs);
    std::fs::write(imgs.join("cat/broken.png"), b"definitely not a PNG").unwrap();
    let out_dir = d.path().join("shards");
    let vae = vae_path();
    let run = |extra: &[&str]| ucgm(&[&["encode", s(&imgs), "--vae", s(&vae), "--out", s(&out_dir), "--backend", "cpu"][..], extra].concat());
    let (ok, _, err) = run(&["--image-size", "16"]);
    assert!(!ok && err.contains("broken.png") && err.contains("not an image"), "{err}");
    assert_eq!(std::fs::read_dir(&out_dir).map(|r| r.count()).unwrap_or(0), 0, "no shard, no temporary file");
    std::fs::remove_file(imgs.join("cat/broken.png")).unwrap();
    // Not a multiple of the VAE's factor 4; a DiT weights file given as a VAE.
    let (ok, _, err) = run(&["--image-size", "18"]);
    assert!(!ok && err.contains("multiple of the VAE's downsampling factor 4"), "{err}");
    std::fs::write(imgs.join("dog/photo.webp"), b"RIFF").unwrap();
    let (ok, _, err) = run(&["--image-size", "16"]);
    assert!(!ok && err.contains("PNG and JPEG only"), "{err}");
    std::fs::remove_file(imgs.join("dog/photo.webp")).unwrap();
    let dit = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/tit_tiny_weights.safetensors");
    let (ok, _, err) = ucgm(&[
        "encode",
        s(&imgs),
        "--vae",
        s(&dit),
        "--out",
        s(&out_dir),
        "--image-size",
        "16",
        "--backend",
        "cpu",
    ]);
    assert!(!ok, "{err}");
    // decode: a latent of the wrong channel count, and a NaN latent.
    let lat = d.path().join("lat.safetensors");
    let bad = vec![0.5f32; 2 * 3 * 4 * 4];
    ucgm::tensor_file::write_atomic(
        &lat,
        &[ucgm::tensor_file::TensorOut::f32("latents", vec![2, 3, 4, 4], &bad)],
        &Default::default(),
    )
    .unwrap();
    let png_dir = d.path().join("png");
    let (ok, _, err) = ucgm(&["decode", s(&lat), "--vae", s(&vae), "--images-dir", s(&png_dir), "--backend", "cpu"]);
    assert!(!ok && err.contains("3 channels but the VAE takes 4"), "{err}");
    let mut nan = vec![0.5f32; 4 * 4 * 4];
    nan[7] = f32::NAN;
    ucgm::tensor_file::write_atomic(
        &lat,
        &[ucgm::tensor_file::TensorOut::f32("latents", vec![1, 4, 4, 4], &nan)],
        &Default::default(),
    )
    .unwrap();
    let (ok, _, err) = ucgm(&["decode", s(&lat), "--vae", s(&vae), "--images-dir", s(&png_dir), "--backend", "cpu"]);
    assert!(!ok && err.to_lowercase().contains("non-finite") || err.contains("NaN"), "{err}");
    assert!(!png_dir.exists() || std::fs::read_dir(&png_dir).unwrap().count() == 0);
}
