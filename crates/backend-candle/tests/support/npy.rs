//! A minimal reader for numpy `.npy` files (format 1.0-3.0, little-endian, C or Fortran
//! order): what the coremltools conformance capture writes.

use std::path::Path;

/// An array read from a `.npy` file: its shape and values as f64.
#[derive(Debug, Clone)]
pub(crate) struct Npy {
    /// Dimensions (empty for a scalar).
    pub(crate) shape: Vec<usize>,
    /// Values in row-major order.
    pub(crate) values: Vec<f64>,
}

fn field<'a>(header: &'a str, key: &str) -> Result<&'a str, String> {
    let at = header.find(&format!("'{key}'")).ok_or(format!("npy header has no {key}"))?;
    let rest = &header[at + key.len() + 2..];
    Ok(rest.trim_start().trim_start_matches(':').trim_start())
}

/// Reads `path`.
pub(crate) fn read(path: &Path) -> Result<Npy, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format!("{}: not a .npy file", path.display()));
    }
    let (hlen, start) = if bytes[6] == 1 {
        (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10)
    } else {
        let b = &bytes[8..12];
        (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).map_err(|e| e.to_string())?;
    let descr = field(header, "descr")?;
    let descr = descr.trim_start_matches('\'').split('\'').next().unwrap_or("").to_string();
    let fortran = field(header, "fortran_order")?.starts_with("True");
    let shape_s = field(header, "shape")?;
    let shape_s = &shape_s[1..shape_s.find(')').ok_or("bad shape")?];
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let data = &bytes[start + hlen..];
    let n: usize = shape.iter().product();
    let kind = descr.trim_start_matches(['<', '|', '=']);
    let width = match kind {
        "f8" | "i8" | "u8" => 8,
        "f4" | "i4" | "u4" => 4,
        "f2" | "i2" | "u2" => 2,
        "b1" | "i1" | "u1" => 1,
        other => return Err(format!("unsupported npy dtype {other}")),
    };
    if data.len() < n * width {
        return Err(format!("{}: {} bytes for {n} values", path.display(), data.len()));
    }
    let values: Vec<f64> = data[..n * width]
        .chunks_exact(width)
        .map(|c| match kind {
            "f8" => f64::from_le_bytes(c.try_into().unwrap_or([0; 8])),
            "i8" => i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64,
            "u8" => u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64,
            "f4" => f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            "i4" => f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            "u4" => f64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            "f2" => f64::from(half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
            "i2" => f64::from(i16::from_le_bytes([c[0], c[1]])),
            "u2" => f64::from(u16::from_le_bytes([c[0], c[1]])),
            "i1" => f64::from(c[0] as i8),
            _ => f64::from(c[0]),
        })
        .collect();
    let values = if fortran { row_major(&shape, &values) } else { values };
    Ok(Npy { shape, values })
}

/// Reorders column-major (Fortran) values of `shape` into row-major order.
fn row_major(shape: &[usize], col: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(col.len());
    for e in 0..col.len() {
        // Row-major index `e` -> coordinates -> column-major offset.
        let (mut rest, mut at, mut stride) = (e, 0, 1);
        let mut coords = vec![0; shape.len()];
        for d in (0..shape.len()).rev() {
            coords[d] = rest % shape[d];
            rest /= shape[d];
        }
        for (d, &c) in coords.iter().enumerate() {
            at += c * stride;
            stride *= shape[d];
        }
        out.push(col[at]);
    }
    out
}
