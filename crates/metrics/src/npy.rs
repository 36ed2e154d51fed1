//! Reading 2-D float matrices (`N×d`, one feature vector per row) from NumPy `.npy` files.
//!
//! Only what feature files need: little- or big-endian `f4`/`f8`, C or Fortran order, two
//! dimensions. Everything else is refused with the reason, never guessed.

use std::path::Path;

use crate::MetricsError;

/// A row-major `rows×cols` matrix in float64 (float32 input is widened exactly).
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Matrix {
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// Reads a 2-D float32/float64 `.npy` file.
pub fn read_matrix(path: &Path) -> Result<Matrix, MetricsError> {
    let bytes = std::fs::read(path).map_err(|source| MetricsError::Io { path: path.to_owned(), source })?;
    parse_matrix(&bytes).map_err(|reason| MetricsError::Npy { path: path.to_owned(), reason })
}

/// Parses the bytes of a 2-D float32/float64 `.npy` file; the error is the reason.
pub fn parse_matrix(bytes: &[u8]) -> Result<Matrix, String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("missing the \\x93NUMPY magic: this is not a .npy file (a .npz or pickle?)".into());
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let end = start.checked_add(header_len).filter(|&e| e <= bytes.len()).ok_or("truncated header")?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let fortran = match dict_value(header, "fortran_order").map(str::trim) {
        Some("False") => false,
        Some("True") => true,
        _ => return Err("header has no valid 'fortran_order'".into()),
    };
    let shape_txt = dict_value(header, "shape").ok_or("header has no 'shape'")?;
    let shape: Vec<usize> = shape_txt
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape entry `{s}`")))
        .collect::<Result<_, _>>()?;
    if shape.len() != 2 {
        return Err(format!("expected a 2-D array (samples × features), found shape {shape:?}"));
    }
    let (rows, cols) = (shape[0], shape[1]);
    let (width, little) = match descr {
        "<f4" | "=f4" | "|f4" => (4, true),
        ">f4" => (4, false),
        "<f8" | "=f8" | "|f8" => (8, true),
        ">f8" => (8, false),
        other => return Err(format!("dtype `{other}` is not float32/float64; save the features with .astype(np.float32)")),
    };
    let count = rows.checked_mul(cols).ok_or("shape overflows")?;
    let payload = &bytes[end..];
    if payload.len() != count * width {
        return Err(format!("data holds {} bytes but shape {rows}×{cols} of {width}-byte floats needs {}", payload.len(), count * width));
    }
    let values = payload.chunks_exact(width).map(|c| match (width, little) {
        (4, true) => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
        (4, false) => f32::from_be_bytes([c[0], c[1], c[2], c[3]]) as f64,
        (_, true) => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        (_, false) => f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
    });
    let data = if fortran {
        let col_major: Vec<f64> = values.collect();
        let mut data = vec![0.0; count];
        for j in 0..cols {
            for i in 0..rows {
                data[i * cols + j] = col_major[j * rows + i];
            }
        }
        data
    } else {
        values.collect()
    };
    Ok(Matrix { rows, cols, data })
}

/// The raw text of `key`'s value in the header's Python dict literal.
fn dict_value<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let at = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest[rest.find(':')? + 1..].trim_start();
    // A tuple value contains commas, so it ends at its closing parenthesis.
    let len = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}'])? };
    Some(&rest[..len])
}

/// Encodes a row-major matrix as a little-endian float64 `.npy` file (used by tests and tools).
pub fn encode_f64(rows: usize, cols: usize, data: &[f64]) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Pad so that the data starts on a 64-byte boundary, as NumPy does.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}
