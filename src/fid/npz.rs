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

/// One array entry of the archive (its declared uncompressed size and its reader), read
/// into memory as f64 in C order.
fn read_array(entry: &mut dyn Read, size: u64, path: &Path, name: &str) -> Result<(Vec<usize>, Vec<f64>)> {
    let fmt = |msg: String| Error::format(path, msg);
    // The archive's declared size is only a claim: it bounds the read, but nothing is
    // allocated from it (the buffer grows with the bytes actually read).
    let max = (MAX_STATS_DIM * MAX_STATS_DIM * 8 + (1 << 20)) as u64;
    if size > max {
        return Err(fmt(format!(
            "array '{name}' claims {size} bytes, more than a {MAX_STATS_DIM}-dimensional sigma"
        )));
    }
    check_bytes(&format!("statistics file array '{name}'"), size as usize, 1)?;
    let mut bytes = Vec::new();
    entry
        .take(size)
        .read_to_end(&mut bytes)
        .map_err(|e| fmt(format!("array '{name}' cannot be read: {e}")))?;
    // The .npy header length is a claim as well (npyz reserves it before reading): it
    // must fit in the bytes read.
    check_npy_header_len(&bytes).map_err(|m| fmt(format!("array '{name}' is not a .npy array: {m}")))?;
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

/// Checks that the header length a `.npy` prefix declares (u16 in version 1, u32 in
/// versions 2 and 3, after the 6-byte magic and the 2 version bytes) fits in `bytes`.
fn check_npy_header_len(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Ok(()); // npyz reports the missing magic
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        _ => return Err("truncated header".into()),
    };
    if len > bytes.len() - start {
        return Err(format!("the header claims {len} bytes, the array has {}", bytes.len()));
    }
    Ok(())
}

/// An array as read: its shape and its values (f64, C order).
type Array = (Vec<usize>, Vec<f64>);

/// `mu.npy` and `sigma.npy` of the archive, each if present.
///
/// The entries are read in file order from their local headers
/// (`zip::read::read_zipfile_from_stream`), not through the central directory: the zip
/// crate's central-directory parser reserves memory for the entry count an end record
/// claims, so a 556-byte file could make it allocate 662 MB (a fuzz finding). Local
/// headers carry bounded names and extra fields, and each entry's data is read no
/// further than the bytes present. Entries that are not wanted (ADM's `arr_0` images)
/// are read past, not kept. `np.savez` writes seekable files with sizes in the local
/// headers, which is what this needs; an archive streamed with data descriptors is a
/// clear error.
fn read_mu_sigma(mut reader: impl Read, path: &Path) -> Result<(Option<Array>, Option<Array>)> {
    let (mut mu, mut sigma) = (None, None);
    while mu.is_none() || sigma.is_none() {
        let entry = zip::read::read_zipfile_from_stream(&mut reader).map_err(|e| Error::format(path, format!("not a numpy .npz (zip) archive: {e}")))?;
        let Some(mut entry) = entry else { break };
        let (slot, name) = match entry.name() {
            "mu.npy" => (&mut mu, "mu"),
            "sigma.npy" => (&mut sigma, "sigma"),
            _ => continue,
        };
        if slot.is_some() {
            return Err(Error::format(path, format!("array '{name}' appears twice in the archive")));
        }
        let size = entry.size();
        *slot = Some(read_array(&mut entry, size, path, name)?);
    }
    Ok((mu, sigma))
}

/// Reads `mu` `[D]` and `sigma` `[D, D]` from a `.npz` file and checks their shapes,
/// finiteness and the symmetry of `sigma`.
pub fn read_stats_npz(path: impl AsRef<Path>) -> Result<GaussianStats> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let (mu, sigma) = read_mu_sigma(std::io::BufReader::new(file), path)?;
    let (mu_shape, mu) = mu.ok_or_else(|| Error::format(path, "no array 'mu' (a statistics file holds 'mu' and 'sigma')"))?;
    let d = match mu_shape.as_slice() {
        [d] if (1..=MAX_STATS_DIM).contains(d) => *d,
        _ => {
            return Err(Error::format(
                path,
                format!("'mu' has shape {mu_shape:?}; expected [D] with 1 ≤ D ≤ {MAX_STATS_DIM}"),
            ))
        }
    };
    let (sigma_shape, sigma) = sigma.ok_or_else(|| Error::format(path, "no array 'sigma' (a statistics file holds 'mu' and 'sigma')"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An ADM-style archive: a large unrelated `arr_0` first, then `mu` and `sigma`
    /// deflated (`np.savez_compressed`) in float32 — read past and read.
    #[test]
    fn reads_past_other_entries_and_deflated_arrays() {
        let d = 4u64;
        let mu: Vec<f64> = (0..d).map(|i| i as f64 - 1.5).collect();
        let sigma: Vec<f64> = (0..d * d).map(|k| if k / d == k % d { 2.0 } else { 0.25 }).collect();
        let f32_npy = |shape: &[u64], v: &[f64]| {
            let mut buf = Vec::new();
            let mut w = npyz::WriteOptions::new().default_dtype().shape(shape).writer(&mut buf).begin_nd().unwrap();
            w.extend(v.iter().map(|&x| x as f32)).unwrap();
            w.finish().unwrap();
            buf
        };
        let mut zw = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zw.start_file("arr_0.npy", stored).unwrap();
        zw.write_all(&npy_bytes(&[1000, 64], &vec![0.5; 64_000]).unwrap()).unwrap();
        zw.start_file("mu.npy", deflated).unwrap();
        zw.write_all(&f32_npy(&[d], &mu)).unwrap();
        zw.start_file("sigma.npy", deflated).unwrap();
        zw.write_all(&f32_npy(&[d, d], &sigma)).unwrap();
        let bytes = zw.finish().unwrap().into_inner();
        let dir = std::env::temp_dir().join(format!("ucgm-npz-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("adm_style.npz");
        std::fs::write(&path, &bytes).unwrap();
        let stats = read_stats_npz(&path).unwrap();
        assert_eq!(stats.mean(), &mu[..]);
        assert_eq!(stats.cov(), &sigma[..]);
        // Truncated inside sigma: a clear format error.
        std::fs::write(&path, &bytes[..bytes.len() - 200]).unwrap();
        let e = read_stats_npz(&path).unwrap_err().to_string();
        assert!(e.contains("malformed") || e.contains("sigma"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
