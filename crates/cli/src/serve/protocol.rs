//! The KServe v2 / Open Inference Protocol wire format: inference requests and responses as
//! JSON tensors or with the binary-tensor extension (`Inference-Header-Content-Length`,
//! `binary_data_size`, `binary_data`), and the metadata documents.
//!
//! Only numeric tensors of the dtypes the runtime knows cross the wire (`FP32`, `FP16`,
//! `INT32`, `INT64`, `INT8`, `UINT8`); any other datatype is refused with a message naming
//! it, never converted.

use std::time::Duration;

use inference_api::{DType, Tensor, TensorData, TensorSpec, f16};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// A request the protocol layer refuses: the message goes back as `{"error": ...}` with 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadRequest(pub(crate) String);

impl std::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(msg: impl Into<String>) -> BadRequest {
    BadRequest(msg.into())
}

/// The KServe datatype name of a dtype.
pub(crate) fn datatype(d: DType) -> &'static str {
    match d {
        DType::F32 => "FP32",
        DType::F16 => "FP16",
        DType::I32 => "INT32",
        DType::I64 => "INT64",
        DType::I8 => "INT8",
        DType::U8 => "UINT8",
    }
}

fn dtype_of(name: &str, tensor: &str) -> Result<DType, BadRequest> {
    Ok(match name {
        "FP32" => DType::F32,
        "FP16" => DType::F16,
        "INT32" => DType::I32,
        "INT64" => DType::I64,
        "INT8" => DType::I8,
        "UINT8" => DType::U8,
        other => {
            return Err(bad(format!(
                "input `{tensor}` has datatype {other}, which this server does not take; send \
                 one of FP32, FP16, INT32, INT64, INT8, UINT8 (the model's metadata says which)"
            )));
        }
    })
}

#[derive(Debug, Deserialize)]
struct WireRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<WireInput>,
    #[serde(default)]
    outputs: Option<Vec<WireOutput>>,
}

#[derive(Debug, Deserialize)]
struct WireInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// A decoded inference request.
#[derive(Debug)]
pub(crate) struct Request {
    /// The caller's request id, echoed in the response.
    pub(crate) id: Option<String>,
    /// Input tensors by name, in request order.
    pub(crate) inputs: Vec<(String, Tensor)>,
    /// Outputs asked for, each with its `binary_data` flag if given; `None` means every
    /// output.
    pub(crate) outputs: Option<Vec<(String, Option<bool>)>>,
    /// Binary format for outputs not listed (`parameters.binary_data_output`).
    pub(crate) binary_default: bool,
    /// Per-request timeout from `parameters.timeout` (microseconds, as tritonclient sends it).
    pub(crate) timeout: Option<Duration>,
}

/// Decodes a request body. `header_len` is the `Inference-Header-Content-Length` header:
/// the JSON part's length, with binary tensor data after it.
pub(crate) fn decode_request(
    body: &[u8],
    header_len: Option<usize>,
) -> Result<Request, BadRequest> {
    let (json_part, mut binary) = match header_len {
        Some(n) if n > body.len() => {
            return Err(bad(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )));
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let wire: WireRequest = serde_json::from_slice(json_part)
        .map_err(|e| bad(format!("the request is not a KServe v2 inference request: {e}")))?;
    let timeout = match wire.parameters.get("timeout") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(us) if us > 0 => Some(Duration::from_micros(us)),
            _ => {
                return Err(bad(format!(
                    "parameters.timeout must be a positive integer in microseconds, got {v}"
                )));
            }
        },
    };
    let binary_default = flag(&wire.parameters, "binary_data_output")?.unwrap_or(false);
    let mut inputs = Vec::with_capacity(wire.inputs.len());
    for input in wire.inputs {
        let dtype = dtype_of(&input.datatype, &input.name)?;
        let shape: Vec<usize> = input
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                bad(format!("input `{}` has a negative dimension in {:?}", input.name, input.shape))
            })?;
        let count = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad(format!("input `{}` shape {shape:?} is too large", input.name)))?;
        let data = match (input.parameters.get("binary_data_size"), input.data) {
            (Some(size), None) => {
                let size =
                    size.as_u64().and_then(|s| usize::try_from(s).ok()).ok_or_else(|| {
                        bad(format!(
                            "input `{}`: binary_data_size must be a byte count",
                            input.name
                        ))
                    })?;
                let want = count.saturating_mul(dtype.size_of());
                if size != want {
                    return Err(bad(format!(
                        "input `{}`: binary_data_size is {size} bytes but {} {shape:?} needs {want}",
                        input.name, input.datatype
                    )));
                }
                if binary.len() < size {
                    return Err(bad(format!(
                        "input `{}` needs {size} bytes of binary data but only {} remain after \
                         the JSON header",
                        input.name,
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                from_le_bytes(dtype, mine)
            }
            (None, Some(data)) => from_json(dtype, &data, count, &input.name)?,
            (Some(_), Some(_)) => {
                return Err(bad(format!(
                    "input `{}` has both `data` and binary_data_size; send one",
                    input.name
                )));
            }
            (None, None) => {
                return Err(bad(format!(
                    "input `{}` has neither `data` nor parameters.binary_data_size",
                    input.name
                )));
            }
        };
        let tensor = Tensor::new(shape, data).map_err(|e| bad(e.to_string()))?;
        inputs.push((input.name, tensor));
    }
    if !binary.is_empty() {
        return Err(bad(format!(
            "{} bytes of binary data after the JSON header belong to no input (check each \
             input's binary_data_size)",
            binary.len()
        )));
    }
    let outputs = match wire.outputs {
        None => None,
        Some(list) => Some(
            list.into_iter()
                .map(|o| Ok((o.name, flag(&o.parameters, "binary_data")?)))
                .collect::<Result<Vec<_>, BadRequest>>()?,
        ),
    };
    Ok(Request { id: wire.id, inputs, outputs, binary_default, timeout })
}

fn flag(params: &Map<String, Value>, key: &str) -> Result<Option<bool>, BadRequest> {
    match params.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(bad(format!("parameter {key} must be true or false, got {v}"))),
    }
}

fn from_le_bytes(dtype: DType, b: &[u8]) -> TensorData {
    fn chunks<const N: usize, T>(b: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        b.chunks_exact(N).map(|c| f(c.try_into().unwrap_or([0; N]))).collect()
    }
    match dtype {
        DType::F32 => TensorData::F32(chunks(b, f32::from_le_bytes)),
        DType::F16 => TensorData::F16(chunks(b, |c| f16::from_bits(u16::from_le_bytes(c)))),
        DType::I32 => TensorData::I32(chunks(b, i32::from_le_bytes)),
        DType::I64 => TensorData::I64(chunks(b, i64::from_le_bytes)),
        DType::I8 => TensorData::I8(b.iter().map(|&x| x as i8).collect()),
        DType::U8 => TensorData::U8(b.to_vec()),
    }
}

/// Flattens `data` (flat or nested arrays, row-major) into `count` elements of `dtype`.
fn from_json(
    dtype: DType,
    data: &Value,
    count: usize,
    name: &str,
) -> Result<TensorData, BadRequest> {
    let mut flat: Vec<&Value> = Vec::with_capacity(count);
    flatten(data, &mut flat);
    if flat.len() != count {
        return Err(bad(format!(
            "input `{name}` has {} values in `data` but its shape needs {count}",
            flat.len()
        )));
    }
    let not_num = |i: usize, v: &Value| {
        bad(format!("input `{name}` value {i} is {v}, not a {}", datatype(dtype)))
    };
    fn ints<T: TryFrom<i64>>(
        flat: &[&Value],
        err: impl Fn(usize, &Value) -> BadRequest,
    ) -> Result<Vec<T>, BadRequest> {
        flat.iter()
            .enumerate()
            .map(|(i, v)| v.as_i64().and_then(|x| T::try_from(x).ok()).ok_or_else(|| err(i, v)))
            .collect()
    }
    let floats = |flat: &[&Value]| -> Result<Vec<f64>, BadRequest> {
        flat.iter().enumerate().map(|(i, v)| v.as_f64().ok_or_else(|| not_num(i, v))).collect()
    };
    Ok(match dtype {
        DType::F32 => TensorData::F32(floats(&flat)?.into_iter().map(|x| x as f32).collect()),
        DType::F16 => TensorData::F16(floats(&flat)?.into_iter().map(f16::from_f64).collect()),
        DType::I32 => TensorData::I32(ints(&flat, not_num)?),
        DType::I64 => TensorData::I64(ints(&flat, not_num)?),
        DType::I8 => TensorData::I8(ints(&flat, not_num)?),
        DType::U8 => TensorData::U8(ints(&flat, not_num)?),
    })
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|x| flatten(x, out)),
        other => out.push(other),
    }
}

/// An encoded response: the body and, when binary tensors follow the JSON, its length
/// (the `Inference-Header-Content-Length` header).
#[derive(Debug)]
pub(crate) struct Response {
    /// JSON header, then binary tensor data in output order.
    pub(crate) body: Vec<u8>,
    /// Length of the JSON part when binary data follows.
    pub(crate) header_len: Option<usize>,
}

/// Encodes outputs; each `(name, tensor, binary)` is sent as JSON `data` or as raw
/// little-endian bytes after the JSON header.
pub(crate) fn encode_response(
    model: &str,
    version: &str,
    id: Option<&str>,
    outputs: &[(String, Tensor, bool)],
) -> Response {
    let mut binary: Vec<u8> = Vec::new();
    let mut list = Vec::with_capacity(outputs.len());
    for (name, t, as_binary) in outputs {
        let mut o = json!({
            "name": name,
            "datatype": datatype(t.dtype()),
            "shape": t.shape(),
        });
        if *as_binary {
            let before = binary.len();
            to_le_bytes(t.data(), &mut binary);
            o["parameters"] = json!({ "binary_data_size": binary.len() - before });
        } else {
            o["data"] = json_data(t.data());
        }
        list.push(o);
    }
    let mut doc = json!({ "model_name": model, "model_version": version, "outputs": list });
    if let Some(id) = id {
        doc["id"] = json!(id);
    }
    let mut body = serde_json::to_vec(&doc).unwrap_or_default();
    if binary.is_empty() && !outputs.iter().any(|o| o.2) {
        return Response { body, header_len: None };
    }
    let header_len = body.len();
    body.extend_from_slice(&binary);
    Response { body, header_len: Some(header_len) }
}

fn to_le_bytes(d: &TensorData, out: &mut Vec<u8>) {
    match d {
        TensorData::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::F16(v) => {
            v.iter().for_each(|x| out.extend_from_slice(&x.to_bits().to_le_bytes()));
        }
        TensorData::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
        TensorData::U8(v) => out.extend_from_slice(v),
    }
}

/// Row-major flat JSON numbers (non-finite floats become `null`, as JSON has no NaN).
fn json_data(d: &TensorData) -> Value {
    match d {
        TensorData::F32(v) => json!(v),
        TensorData::F16(v) => json!(v.iter().map(|x| x.to_f32()).collect::<Vec<f32>>()),
        TensorData::I32(v) => json!(v),
        TensorData::I64(v) => json!(v),
        TensorData::I8(v) => json!(v),
        TensorData::U8(v) => json!(v),
    }
}

/// One tensor of model metadata: `{"name", "datatype", "shape"}`, `-1` for a flexible dim.
pub(crate) fn tensor_metadata(spec: &TensorSpec) -> Value {
    let shape: Vec<i64> = spec
        .shape
        .iter()
        .map(|d| match d {
            inference_api::Dim::Fixed(n) => i64::try_from(*n).unwrap_or(-1),
            _ => -1,
        })
        .collect();
    json!({ "name": spec.name, "datatype": datatype(spec.dtype), "shape": shape })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_tensors_nested_or_flat_decode_the_same() {
        let flat =
            br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3,4.5]}]}"#;
        let nested =
            br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4.5]]}]}"#;
        let a = decode_request(flat, None).unwrap();
        let b = decode_request(nested, None).unwrap();
        assert_eq!(a.inputs, b.inputs);
        assert_eq!(a.inputs[0].1.as_f32().unwrap(), &[1.0, 2.0, 3.0, 4.5]);
        assert!(a.outputs.is_none() && !a.binary_default && a.timeout.is_none());
    }

    #[test]
    fn binary_tensors_follow_the_json_header() {
        let header = br#"{"id":"7","parameters":{"binary_data_output":true,"timeout":2500},"inputs":[{"name":"a","shape":[2],"datatype":"INT64","parameters":{"binary_data_size":16}},{"name":"b","shape":[1],"datatype":"FP16","parameters":{"binary_data_size":2}}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&5i64.to_le_bytes());
        body.extend_from_slice(&(-3i64).to_le_bytes());
        body.extend_from_slice(&f16::from_f32(1.5).to_bits().to_le_bytes());
        let r = decode_request(&body, Some(header.len())).unwrap();
        assert_eq!(r.id.as_deref(), Some("7"));
        assert!(r.binary_default);
        assert_eq!(r.timeout, Some(Duration::from_micros(2500)));
        assert_eq!(r.inputs[0].1.data(), &TensorData::I64(vec![5, -3]));
        assert_eq!(r.inputs[1].1.data(), &TensorData::F16(vec![f16::from_f32(1.5)]));

        // One byte short, one byte extra: both named.
        let e = decode_request(&body[..body.len() - 1], Some(header.len())).unwrap_err();
        assert!(e.0.contains("input `b` needs 2 bytes"), "{e}");
        let mut long = body.clone();
        long.push(0);
        let e = decode_request(&long, Some(header.len())).unwrap_err();
        assert!(e.0.contains("1 bytes of binary data"), "{e}");
        let e = decode_request(&body, Some(body.len() + 1)).unwrap_err();
        assert!(e.0.contains("Inference-Header-Content-Length"), "{e}");
    }

    #[test]
    fn bad_requests_name_the_problem() {
        let cases: [(&[u8], &str); 6] = [
            (
                br#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#,
                "2 values",
            ),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":["a"]}]}"#, "BYTES"),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"UINT8","data":[300]}]}"#, "300"),
            (br#"{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}"#, "negative"),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#, "neither"),
            (br#"{"inputs":"#, "not a KServe v2 inference request"),
        ];
        for (body, want) in cases {
            let e = decode_request(body, None).unwrap_err();
            assert!(e.0.contains(want), "want {want:?} in {e}");
        }
    }

    #[test]
    fn responses_mix_json_and_binary_outputs() {
        let t = Tensor::from_f32([1, 2], vec![0.25, -1.0]).unwrap();
        let json_only = encode_response("m", "1", Some("r"), &[("y".into(), t.clone(), false)]);
        assert!(json_only.header_len.is_none());
        let v: Value = serde_json::from_slice(&json_only.body).unwrap();
        assert_eq!(v["outputs"][0]["data"], json!([0.25, -1.0]));
        assert_eq!(v["outputs"][0]["shape"], json!([1, 2]));
        assert_eq!(v["id"], "r");

        let bin = encode_response("m", "1", None, &[("y".into(), t, true)]);
        let n = bin.header_len.unwrap();
        let v: Value = serde_json::from_slice(&bin.body[..n]).unwrap();
        assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert!(v["outputs"][0].get("data").is_none());
        let tail = &bin.body[n..];
        assert_eq!(f32::from_le_bytes(tail[4..8].try_into().unwrap()), -1.0);
    }
}
