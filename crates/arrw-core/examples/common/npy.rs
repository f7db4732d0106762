//! Reading the benchmark datasets' `.npy` files (shared by the offline examples).
//!
//! A dataset directory holds `base.<dtype>.npy`, `query.<dtype>.npy` and
//! `groundtruth.i32.npy`, with dtype `u8`, `f16`, `f32` or `i32`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A 2-d array read from a `.npy` file, widened to `f32` (or kept as `i32`).
pub struct Array<T> {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<T>,
}

/// Reads the header of a `.npy` file: `(descr, shape, data offset)`.
fn npy_header(bytes: &[u8]) -> Result<(String, Vec<usize>, usize), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".into());
    }
    let major = bytes[6];
    let (len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = std::str::from_utf8(&bytes[start..start + len]).map_err(|e| e.to_string())?;
    let field = |name: &str| -> Result<&str, String> {
        let key = format!("'{name}':");
        let at = header
            .find(&key)
            .ok_or_else(|| format!("no {name} in header {header}"))?;
        Ok(header[at + key.len()..].trim_start())
    };
    let descr = field("descr")?;
    let descr = descr[1..]
        .split('\'')
        .next()
        .ok_or("bad descr")?
        .to_string();
    if field("fortran_order")?.starts_with("True") {
        return Err("fortran_order arrays are not supported".into());
    }
    let shape = field("shape")?;
    let shape = &shape[1..shape.find(')').ok_or("bad shape")?];
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    Ok((descr, dims, start + len))
}

fn shape2(dims: &[usize]) -> (usize, usize) {
    match dims {
        [r] => (*r, 1),
        [r, c] => (*r, *c),
        _ => panic!("expected a 1-d or 2-d array, got shape {dims:?}"),
    }
}

/// IEEE half to single precision.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m × 2^-24.
            let v = m as f32 * (2f32).powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

pub fn read_f32(path: &Path) -> Result<Array<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (descr, dims, off) = npy_header(&bytes)?;
    let (rows, cols) = shape2(&dims);
    let raw = &bytes[off..];
    let data: Vec<f32> = match descr.as_str() {
        "|u1" | "u1" => raw.iter().map(|&b| f32::from(b)).collect(),
        "<f2" => raw
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        "<f4" => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        "<i4" => raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        d => return Err(format!("{}: unsupported dtype {d}", path.display())),
    };
    if data.len() != rows * cols {
        return Err(format!("{}: truncated data", path.display()));
    }
    Ok(Array { rows, cols, data })
}

pub fn read_i32(path: &Path) -> Result<Array<i32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (descr, dims, off) = npy_header(&bytes)?;
    if descr != "<i4" {
        return Err(format!("{}: expected int32, got {descr}", path.display()));
    }
    let (rows, cols) = shape2(&dims);
    let data: Vec<i32> = bytes[off..]
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if data.len() != rows * cols {
        return Err(format!("{}: truncated data", path.display()));
    }
    Ok(Array { rows, cols, data })
}

pub fn find(dir: &Path, prefix: &str) -> Result<PathBuf, String> {
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let p = e.map_err(|e| e.to_string())?.path();
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if name.starts_with(prefix) && name.ends_with(".npy") {
            return Ok(p);
        }
    }
    Err(format!("no {prefix}*.npy in {}", dir.display()))
}

/// A dataset directory's base and query vectors, and the metric its vectors call
/// for: cosine when the first 1,000 base rows are unit length (sentence
/// embeddings), L2 otherwise (SIFT).
pub fn load_set(dir: &Path) -> Result<(Array<f32>, Array<f32>, arrw_core::ivf::Metric), String> {
    let base = read_f32(&find(dir, "base.")?)?;
    let query = read_f32(&find(dir, "query.")?)?;
    let unit = base
        .data
        .chunks_exact(base.cols)
        .take(1000)
        .all(|x| (x.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-2);
    let metric = if unit {
        arrw_core::ivf::Metric::Cosine
    } else {
        arrw_core::ivf::Metric::L2
    };
    Ok((base, query, metric))
}
