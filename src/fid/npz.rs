//! Statistics files: numpy `.npz` archives holding `mu` `[D]` and `sigma` `[D, D]`, as
//! written by pytorch-fid (`--save-stats`, `np.savez(path, mu=mu, sigma=sigma)`) and
//! shipped by the ADM evaluator (`VIRTUAL_imagenet256_labeled.npz` also holds `arr_0`,
//! `mu_s`, `sigma_s`; other entries are ignored). Reading accepts float32 and float64,
//! C or Fortran order, stored or deflated entries; writing produces float64 arrays in
//! an uncompressed archive exactly like `np.savez`, atomically.

use std::io::{Cursor, Read, Write};
use std::path::Path;

use npyz::WriterBuilder;

use crate::error::{Error, Result};
use crate::limits::check_bytes;
use crate::metric::GaussianStats;
use crate::tensor_file::write_bytes_atomic;

/// Largest feature dimension accepted in a statistics file (sigma then takes 8 GiB).
pub const MAX_STATS_DIM: usize = 32_768;

/// One array of the archive, as f64 in C order.
fn read_array(archive: &mut zip::ZipArchive<std::fs::File>, path: &Path, name: &str) -> Result<(Vec<usize>, Vec<f64>)> {
    let fmt = |msg: String| Error::format(path, msg);
    let mut entry = archive
        .by_name(&format!("{name}.npy"))
        .map_err(|_| fmt(format!("no array '{name}' (a statistics file holds 'mu' and 'sigma')")))?;
    // The archive's declared size is only a claim: it bounds the read, but nothing is
    // allocated from it (the buffer grows with the bytes actually read).
    let size = entry.size();
    let max = (MAX_STATS_DIM * MAX_STATS_DIM * 8 + (1 << 20)) as u64;
    if size > max {
        return Err(fmt(format!(
            "array '{name}' claims {size} bytes, more than a {MAX_STATS_DIM}-dimensional sigma"
        )));
    }
    check_bytes(&format!("statistics file array '{name}'"), size as usize, 1)?;
    let mut bytes = Vec::new();
    (&mut entry)
        .take(size)
        .read_to_end(&mut bytes)
        .map_err(|e| fmt(format!("array '{name}' cannot be read: {e}")))?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| fmt(format!("array '{name}' is not a .npy array: {e}")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    // The shape is a claim too: its elements must fit in the bytes read before the
    // reader allocates for them.
    let elems = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let elem_bytes = if npy.dtype().descr().contains("f4") { 4 } else { 8 };
    if elems.and_then(|n| n.checked_mul(elem_bytes)).is_none_or(|b| b > bytes.len()) {
        return Err(fmt(format!("array '{name}' of shape {shape:?} does not fit in its {} bytes", bytes.len())));
    }
    let fortran = npy.order() == npyz::Order::Fortran;
    let descr = npy.dtype().descr();
    let values: Vec<f64> = match descr.as_str() {
        "'<f8'" | "<f8" => npy.into_vec::<f64>().map_err(|e| fmt(format!("array '{name}': {e}")))?,
        "'<f4'" | "<f4" => npy
            .into_vec::<f32>()
            .map_err(|e| fmt(format!("array '{name}': {e}")))?
            .into_iter()
            .map(f64::from)
            .collect(),
        other => return Err(fmt(format!("array '{name}' has dtype {other}; expected float32 or float64"))),
    };
    let values = if fortran && shape.len() == 2 {
        let (r, c) = (shape[0], shape[1]);
        let mut out = vec![0.0; values.len()];
        for i in 0..r {
            for j in 0..c {
                out[i * c + j] = values[j * r + i];
            }
        }
        out
    } else {
        values
    };
    Ok((shape, values))
}

/// Reads `mu` `[D]` and `sigma` `[D, D]` from a `.npz` file and checks their shapes,
/// finiteness and the symmetry of `sigma`.
pub fn read_stats_npz(path: impl AsRef<Path>) -> Result<GaussianStats> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| Error::format(path, format!("not a numpy .npz (zip) archive: {e}")))?;
    let (mu_shape, mu) = read_array(&mut archive, path, "mu")?;
    let d = match mu_shape.as_slice() {
        [d] if (1..=MAX_STATS_DIM).contains(d) => *d,
        _ => {
            return Err(Error::format(
                path,
                format!("'mu' has shape {mu_shape:?}; expected [D] with 1 ≤ D ≤ {MAX_STATS_DIM}"),
            ))
        }
    };
    let (sigma_shape, sigma) = read_array(&mut archive, path, "sigma")?;
    if sigma_shape != [d, d] {
        return Err(Error::format(
            path,
            format!("'sigma' has shape {sigma_shape:?}; expected [{d}, {d}] to match 'mu'"),
        ));
    }
    GaussianStats::from_symmetric(mu, sigma).map_err(|e| Error::format(path, e.to_string()))
}

/// One `.npy` array in float64, C order.
fn npy_bytes(shape: &[u64], values: &[f64]) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut w = npyz::WriteOptions::new().default_dtype().shape(shape).writer(&mut buf).begin_nd()?;
    w.extend(values.iter().copied())?;
    w.finish()?;
    Ok(buf)
}

/// Writes `mu` and `sigma` as a `.npz` archive (float64, uncompressed, as `np.savez`),
/// atomically.
pub fn write_stats_npz(path: impl AsRef<Path>, stats: &GaussianStats) -> Result<()> {
    let path = path.as_ref();
    let d = stats.dim() as u64;
    let build = || -> std::io::Result<Vec<u8>> {
        let mut zw = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(stats.dim() * stats.dim() * 8 > u32::MAX as usize);
        for (name, shape, values) in [("mu.npy", vec![d], stats.mean()), ("sigma.npy", vec![d, d], stats.cov())] {
            zw.start_file(name, opts).map_err(std::io::Error::other)?;
            zw.write_all(&npy_bytes(&shape, values)?)?;
        }
        Ok(zw.finish().map_err(std::io::Error::other)?.into_inner())
    };
    let bytes = build().map_err(|e| Error::io(path, e))?;
    write_bytes_atomic(path, &bytes)
}
