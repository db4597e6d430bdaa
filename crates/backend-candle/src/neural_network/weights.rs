//! Decoding a NeuralNetwork layer's `WeightParams` into f32: `floatValue`, `float16Value`
//! (little-endian halves), and `rawValue` quantized with linear (per-tensor or per-channel
//! scale/bias) or look-up-table quantization at 1-8 bits, bit-packed most significant bit first
//! as coremltools writes them.

use coreml_format::proto::{
    QuantizationParams, WeightParams, quantization_params::QuantizationType,
};
use half::f16;

/// The f32 values of `w`, checked to hold `count` elements. `channels` is the size of the first
/// (output-channel) axis, along which per-channel quantization parameters run. Errors are plain
/// text naming what is wrong; the caller names the layer.
pub(crate) fn decode(w: &WeightParams, count: usize, channels: usize) -> Result<Vec<f32>, String> {
    if !w.int8_raw_value.is_empty() {
        return Err("int8 dynamic-quantized weights (int8RawValue) are not supported".into());
    }
    let values = if !w.float_value.is_empty() {
        w.float_value.clone()
    } else if !w.float16_value.is_empty() {
        if !w.float16_value.len().is_multiple_of(2) {
            return Err(format!("float16Value has an odd byte count {}", w.float16_value.len()));
        }
        w.float16_value.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
    } else if !w.raw_value.is_empty() {
        let q = w.quantization.as_ref().ok_or(
            "rawValue without quantization parameters (raw fp32 bytes are not a weight form \
             coremltools writes)",
        )?;
        dequantize(&w.raw_value, q, count, channels)?
    } else if count == 0 {
        Vec::new()
    } else {
        return Err(format!("no weight values (expected {count})"));
    };
    if values.len() != count {
        return Err(format!("{} weight values where {count} are expected", values.len()));
    }
    Ok(values)
}

/// Unpacks `count` unsigned integers of `bits` bits, most significant bit first.
fn unpack(raw: &[u8], bits: usize, count: usize) -> Result<Vec<u32>, String> {
    if !(1..=8).contains(&bits) {
        return Err(format!("{bits}-bit quantization (1 to 8 bits are supported)"));
    }
    let need = (count * bits).div_ceil(8);
    if raw.len() != need {
        return Err(format!(
            "rawValue has {} bytes; {count} values of {bits} bits need {need}",
            raw.len()
        ));
    }
    let mut out = Vec::with_capacity(count);
    for k in 0..count {
        let mut v = 0u32;
        for b in 0..bits {
            let bit = k * bits + b;
            let byte = raw[bit / 8];
            v = (v << 1) | u32::from((byte >> (7 - bit % 8)) & 1);
        }
        out.push(v);
    }
    Ok(out)
}

fn dequantize(
    raw: &[u8],
    q: &QuantizationParams,
    count: usize,
    channels: usize,
) -> Result<Vec<f32>, String> {
    let bits = usize::try_from(q.number_of_bits).map_err(|_| "number of bits overflows")?;
    let codes = unpack(raw, bits, count)?;
    let per = |len: usize, what: &str| -> Result<usize, String> {
        if len == 1 {
            Ok(0)
        } else if len == channels && channels > 0 && count.is_multiple_of(channels) {
            Ok(count / channels)
        } else {
            Err(format!("{len} quantization {what} values for {channels} output channels"))
        }
    };
    match &q.quantization_type {
        Some(QuantizationType::LinearQuantization(lq)) => {
            let sstep = per(lq.scale.len(), "scale")?;
            let bias = if lq.bias.is_empty() { vec![0.0] } else { lq.bias.clone() };
            let bstep = per(bias.len(), "bias")?;
            Ok(codes
                .iter()
                .enumerate()
                .map(|(k, &c)| {
                    let s = k.checked_div(sstep).map_or(lq.scale[0], |j| lq.scale[j]);
                    let b = k.checked_div(bstep).map_or(bias[0], |j| bias[j]);
                    s * c as f32 + b
                })
                .collect())
        }
        Some(QuantizationType::LookupTableQuantization(lut)) => {
            let entries = 1usize << bits;
            let table = &lut.float_value;
            let per_channel = table.len() == entries * channels && channels > 1;
            if table.len() != entries && !per_channel {
                return Err(format!(
                    "look-up table of {} values for {bits}-bit codes (expected {entries})",
                    table.len()
                ));
            }
            let step = if per_channel { count / channels.max(1) } else { 0 };
            Ok(codes
                .iter()
                .enumerate()
                .map(|(k, &c)| {
                    let base = if per_channel { (k / step.max(1)) * entries } else { 0 };
                    table[base + c as usize]
                })
                .collect())
        }
        None => Err("quantization parameters without a quantization type".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coreml_format::proto::{LinearQuantizationParams, LookUpTableQuantizationParams};

    fn packed(codes: &[u32], bits: usize) -> Vec<u8> {
        let mut out = vec![0u8; (codes.len() * bits).div_ceil(8)];
        for (k, &c) in codes.iter().enumerate() {
            for b in 0..bits {
                let bit = k * bits + b;
                if (c >> (bits - 1 - b)) & 1 == 1 {
                    out[bit / 8] |= 1 << (7 - bit % 8);
                }
            }
        }
        out
    }

    fn quantized(raw: Vec<u8>, bits: u64, t: QuantizationType) -> WeightParams {
        WeightParams {
            raw_value: raw,
            quantization: Some(QuantizationParams {
                number_of_bits: bits,
                quantization_type: Some(t),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn float_and_half_values_decode() {
        let w = WeightParams { float_value: vec![1.0, -2.5], ..Default::default() };
        assert_eq!(decode(&w, 2, 1).expect("f32"), vec![1.0, -2.5]);
        let bytes = [0.5f32, -3.0].iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect();
        let w = WeightParams { float16_value: bytes, ..Default::default() };
        assert_eq!(decode(&w, 2, 1).expect("f16"), vec![0.5, -3.0]);
        let e = decode(&w, 3, 1).expect_err("count");
        assert!(e.contains("2 weight values where 3"), "{e}");
    }

    #[test]
    fn linear_quantization_is_per_channel_along_the_first_axis() {
        let codes = [0, 1, 2, 3, 4, 5, 6, 7];
        let t = QuantizationType::LinearQuantization(LinearQuantizationParams {
            scale: vec![0.5, 2.0],
            bias: vec![1.0, -1.0],
        });
        let w = quantized(packed(&codes, 3), 3, t);
        let want: Vec<f32> = codes
            .iter()
            .enumerate()
            .map(|(k, &c)| if k < 4 { 0.5 * c as f32 + 1.0 } else { 2.0 * c as f32 - 1.0 })
            .collect();
        assert_eq!(decode(&w, 8, 2).expect("linear"), want);
    }

    #[test]
    fn lut_quantization_reads_the_table() {
        let codes = [3, 0, 1, 2, 2];
        let table = vec![-1.0, 0.25, 4.0, 9.0];
        let t = QuantizationType::LookupTableQuantization(LookUpTableQuantizationParams {
            float_value: table.clone(),
        });
        let w = quantized(packed(&codes, 2), 2, t);
        let want: Vec<f32> = codes.iter().map(|&c| table[c as usize]).collect();
        assert_eq!(decode(&w, 5, 5).expect("lut"), want);
        let e = decode(
            &quantized(
                vec![0; 3],
                2,
                QuantizationType::LookupTableQuantization(LookUpTableQuantizationParams {
                    float_value: table,
                }),
            ),
            5,
            5,
        )
        .expect_err("short");
        assert!(e.contains("need 2"), "{e}");
    }
}
