//! Prints a model's summary (JSON) and its main function in a MIL-like text form.
//!
//! `cargo run -p coreml-format --example dump -- path/to/model.mlpackage [--no-consts]`

use coreml_format::{Argument, ConstData, ConstValue, MlModel};

fn show(v: &ConstValue) -> String {
    match &v.data {
        ConstData::Blob(b) => format!("{}{:?} @blob({})", v.dtype, v.shape, b.offset),
        _ if v.element_count() > 8 => {
            format!("{}{:?} <{} values>", v.dtype, v.shape, v.stored_len())
        }
        ConstData::String(s) => format!("{s:?}"),
        _ => match v.to_f32_vec() {
            Some(f) => format!("{}{:?} {f:?}", v.dtype, v.shape),
            None => format!("{v:?}"),
        },
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or("usage: dump MODEL [--no-consts]")?;
    let no_consts = args.iter().any(|a| a == "--no-consts");
    let model = MlModel::open(path)?;
    println!("{}", serde_json::to_string_pretty(&model.summary())?);
    let main = model.main_function()?;
    for i in &main.inputs {
        println!("input {}: {}", i.name, i.ty);
    }
    for op in &main.block.operations {
        if no_consts && op.op_type == "const" {
            continue;
        }
        let outs: Vec<String> =
            op.outputs.iter().map(|o| format!("{}: {}", o.name, o.ty)).collect();
        let ins: Vec<String> = op
            .inputs
            .iter()
            .map(|(k, args)| {
                let a: Vec<String> = args
                    .iter()
                    .map(|a| match a {
                        Argument::Name(n) => match main.const_value(n) {
                            Some(c) if no_consts => format!("{n}={}", show(c)),
                            _ => n.clone(),
                        },
                        Argument::Value(v) => show(v),
                    })
                    .collect();
                format!("{k}={}", a.join("|"))
            })
            .collect();
        let attrs: Vec<String> = op
            .attributes
            .iter()
            .filter(|(k, _)| *k != "name")
            .map(|(k, v)| format!("{k}={}", show(v)))
            .collect();
        println!("{} = {}({}) [{}]", outs.join(", "), op.op_type, ins.join(", "), attrs.join(", "));
    }
    println!("return {:?}", main.block.outputs);
    Ok(())
}
