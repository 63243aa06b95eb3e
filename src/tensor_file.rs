//! Safetensors files: strict reading (f32, f16, bf16 converted to f32; i64/i32 labels)
//! with errors that name the file and the tensor, and atomic writing (temp file in the
//! same folder, fsync, rename), so an interrupted write never damages the previous file.
//!
//! Every file the engine writes carries a CRC-32 of its tensors (names, dtypes, shapes
//! and data, in name order) in the metadata under [`CHECKSUM_KEY`]; [`TensorFile::open`]
//! verifies it, so bytes damaged on disk or in transfer fail to load instead of loading
//! as finite garbage. Files without one (converted official checkpoints) load unchecked.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::error::{Error, Result};

/// Metadata key of the tensor checksum: `"crc32:<8 hex digits>"`.
pub const CHECKSUM_KEY: &str = "ucgm_checksum";

/// The checksum of tensors given as (name, dtype, shape, data), in any order.
fn checksum<'a>(tensors: impl IntoIterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>) -> String {
    let mut items: Vec<_> = tensors.into_iter().collect();
    items.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = crc32fast::Hasher::new();
    for (name, dtype, shape, data) in items {
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(format!("{dtype:?}").as_bytes());
        for &d in shape {
            h.update(&(d as u64).to_le_bytes());
        }
        h.update(&(data.len() as u64).to_le_bytes());
        h.update(data);
    }
    format!("crc32:{:08x}", h.finalize())
}

/// A safetensors file read into memory.
pub struct TensorFile {
    path: PathBuf,
    bytes: Vec<u8>,
    metadata: HashMap<String, String>,
    names: Vec<String>,
}

impl TensorFile {
    /// Reads and validates a whole file (header, offsets, sizes).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| Error::format(&path, format!("not a valid safetensors file: {e}")))?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::format(&path, format!("not a valid safetensors file: {e}")))?;
        if let Some(stored) = metadata.get(CHECKSUM_KEY) {
            let computed = checksum(st.tensors().iter().map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data())));
            if *stored != computed {
                return Err(Error::format(
                    &path,
                    format!("checksum mismatch: the tensor data is damaged (stored {stored}, computed {computed})"),
                ));
            }
        }
        let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
        names.sort();
        Ok(TensorFile { path, bytes, metadata, names })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sorted tensor names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The `__metadata__` string map.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.names.binary_search_by(|n| n.as_str().cmp(name)).is_ok()
    }

    fn view(&self, name: &str) -> Result<TensorView<'_>> {
        let st = SafeTensors::deserialize(&self.bytes).map_err(|e| Error::format(&self.path, e.to_string()))?;
        st.tensor(name)
            .map_err(|_| Error::Weights(format!("{}: tensor {name:?} is missing", self.path.display())))
    }

    /// Shape of a tensor.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.view(name)?.shape().to_vec())
    }

    /// A floating-point tensor as f32 (f32, f16 and bf16 accepted), with its shape.
    pub fn f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let v = self.view(name)?;
        let data = v.data();
        let out: Vec<f32> = match v.dtype() {
            Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            Dtype::F16 => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::F64 => data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            other => {
                return Err(Error::Weights(format!(
                    "{}: tensor {name:?} has unsupported dtype {other:?} (expected F32, F16 or BF16)",
                    self.path.display()
                )))
            }
        };
        Ok((v.shape().to_vec(), out))
    }

    /// A floating-point tensor whose shape must equal `shape`.
    pub fn f32_shaped(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (s, v) = self.f32(name)?;
        if s != shape {
            return Err(Error::Weights(format!(
                "{}: tensor {name:?} has shape {s:?}, expected {shape:?}",
                self.path.display()
            )));
        }
        Ok(v)
    }

    /// An integer tensor (i64, i32, u8) as i64, with its shape.
    pub fn i64(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>)> {
        let v = self.view(name)?;
        let data = v.data();
        let out: Vec<i64> = match v.dtype() {
            Dtype::I64 => data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
            Dtype::I32 => data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect(),
            Dtype::U8 => data.iter().map(|&b| b as i64).collect(),
            other => {
                return Err(Error::Weights(format!(
                    "{}: tensor {name:?} has unsupported dtype {other:?} (expected I64 or I32)",
                    self.path.display()
                )))
            }
        };
        Ok((v.shape().to_vec(), out))
    }
}

/// Data of one tensor to write.
pub enum TensorData<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
}

/// A named tensor to write.
pub struct TensorOut<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData<'a>,
}

impl<'a> TensorOut<'a> {
    /// An f32 tensor.
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, data: &'a [f32]) -> Self {
        TensorOut {
            name: name.into(),
            shape,
            data: TensorData::F32(data),
        }
    }
    /// An i64 tensor.
    pub fn i64(name: impl Into<String>, shape: Vec<usize>, data: &'a [i64]) -> Self {
        TensorOut {
            name: name.into(),
            shape,
            data: TensorData::I64(data),
        }
    }
}

/// Serializes tensors + metadata to safetensors bytes.
pub fn to_bytes(tensors: &[TensorOut<'_>], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for t in tensors {
        let n: usize = t.shape.iter().product();
        let (dtype, bytes, len) = match t.data {
            TensorData::F32(d) => (Dtype::F32, d.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(), d.len()),
            TensorData::I64(d) => (Dtype::I64, d.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(), d.len()),
        };
        if n != len {
            return Err(Error::Internal(format!("tensor {} has shape {:?} but {len} values", t.name, t.shape)));
        }
        raw.push((t.name.clone(), dtype, t.shape.clone(), bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = raw
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b).map_err(|e| Error::Internal(e.to_string()))?)))
        .collect::<Result<_>>()?;
    let mut meta: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    meta.insert(
        CHECKSUM_KEY.to_string(),
        checksum(raw.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice()))),
    );
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Internal(format!("safetensors serialize: {e}")))
}

/// Writes tensors atomically: a temp file beside `path`, fsync, then rename over `path`.
/// On any error the previous file at `path` (if any) is untouched and the temp file is removed.
pub fn write_atomic(path: impl AsRef<Path>, tensors: &[TensorOut<'_>], metadata: &BTreeMap<String, String>) -> Result<()> {
    let bytes = to_bytes(tensors, metadata)?;
    write_bytes_atomic(path.as_ref(), &bytes)
}

/// Writes bytes atomically (temp file + fsync + rename).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.safetensors");
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let l = [3i64, 9];
        let mut meta = BTreeMap::new();
        meta.insert("k".to_string(), "v".to_string());
        write_atomic(&p, &[TensorOut::f32("x", vec![2, 2], &x), TensorOut::i64("l", vec![2], &l)], &meta).unwrap();
        let f = TensorFile::open(&p).unwrap();
        assert_eq!(f.f32_shaped("x", &[2, 2]).unwrap(), x);
        assert_eq!(f.i64("l").unwrap().1, l);
        assert_eq!(f.metadata()["k"], "v");
        assert!(matches!(f.f32_shaped("x", &[4]), Err(Error::Weights(_))));
        assert!(matches!(f.f32("nope"), Err(Error::Weights(_))));
        assert!(matches!(f.f32("l"), Err(Error::Weights(_))));
        // Truncated file: a clear format error.
        let bytes = std::fs::read(&p).unwrap();
        let q = dir.path().join("t.safetensors");
        std::fs::write(&q, &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(TensorFile::open(&q), Err(Error::Format { .. })));
        std::fs::write(&q, b"garbage").unwrap();
        assert!(matches!(TensorFile::open(&q), Err(Error::Format { .. })));
        assert!(matches!(TensorFile::open(dir.path().join("missing")), Err(Error::Io { .. })));
        // Damaged data (finite garbage) fails the checksum; the same bytes without a
        // checksum (as converted files) load.
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 20] ^= 0x01;
        std::fs::write(&q, &bad).unwrap();
        let e = TensorFile::open(&q).err().expect("damaged file must fail");
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        assert!(f.metadata()[CHECKSUM_KEY].starts_with("crc32:"));
        // Unwritable destination: error, nothing left behind.
        assert!(write_atomic(dir.path().join("no/such/dir/x.safetensors"), &[], &meta).is_err());
    }
}
