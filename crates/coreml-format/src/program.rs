//! The typed ML Program: functions, blocks, operations and their arguments, converted and
//! checked from the protobuf once, when the model is opened.

use std::collections::{BTreeMap, HashSet};

use coreml_proto::proto::mil_spec;

use crate::types::ValueType;
use crate::value::ConstValue;

/// An ML Program (`MILSpec.Program`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Program {
    /// Program format version.
    pub version: i64,
    /// Functions by name; converted models have `main`.
    pub functions: BTreeMap<String, Function>,
    /// Program-level attributes (e.g. `buildInfo`).
    pub attributes: BTreeMap<String, ConstValue>,
}

/// One function of a program: typed inputs and the block of its active opset.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Function {
    /// Inputs in declaration order.
    pub inputs: Vec<NamedType>,
    /// The opset the active block is written in (e.g. `CoreML6`).
    pub opset: String,
    /// The block of that opset.
    pub block: Block,
    /// Other opset specializations, when the function has more than one.
    pub other_blocks: BTreeMap<String, Block>,
    /// Function attributes.
    pub attributes: BTreeMap<String, ConstValue>,
}

/// A variable name and its type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct NamedType {
    /// Variable name.
    pub name: String,
    /// Its type.
    pub ty: ValueType,
}

/// A basic block in SSA form: operations in execution order and the names it returns.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Block {
    /// Block inputs (nested blocks of control-flow ops; empty for a function's block).
    pub inputs: Vec<NamedType>,
    /// Operations in order; each output name is defined once.
    pub operations: Vec<Operation>,
    /// Names of the values the block returns.
    pub outputs: Vec<String>,
}

/// One input binding of an operation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Argument {
    /// The value of a variable defined earlier (a function input or an op output).
    Name(String),
    /// An inline constant.
    Value(ConstValue),
}

/// One operation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Operation {
    /// Operation type (`conv`, `const`, `linear`, ...).
    pub op_type: String,
    /// Named inputs; each is a list of bindings (variadic inputs such as `concat.values` have
    /// several, most have one).
    pub inputs: BTreeMap<String, Vec<Argument>>,
    /// Outputs with their types.
    pub outputs: Vec<NamedType>,
    /// Attributes; a `const` op holds its value in `val`, and most ops carry `name`.
    pub attributes: BTreeMap<String, ConstValue>,
    /// Nested blocks (control flow).
    pub blocks: Vec<Block>,
}

impl Operation {
    /// The single binding of input `name`, if the op has exactly one.
    pub fn input(&self, name: &str) -> Option<&Argument> {
        match self.inputs.get(name)?.as_slice() {
            [a] => Some(a),
            _ => None,
        }
    }

    /// The variable name bound to input `name`, when it is a single named binding.
    pub fn input_name(&self, name: &str) -> Option<&str> {
        match self.input(name)? {
            Argument::Name(n) => Some(n),
            Argument::Value(_) => None,
        }
    }

    /// The op's `name` attribute (the name given at conversion), when present.
    pub fn name(&self) -> Option<&str> {
        self.attributes.get("name")?.as_str()
    }

    /// The value of a `const` op (its `val` attribute); `None` for other ops.
    pub fn const_value(&self) -> Option<&ConstValue> {
        if self.op_type == "const" { self.attributes.get("val") } else { None }
    }

    /// Name of the first output.
    pub fn output_name(&self) -> Option<&str> {
        self.outputs.first().map(|o| o.name.as_str())
    }
}

impl Block {
    /// Visits every operation of this block and its nested blocks, depth first.
    pub fn visit_ops<'a>(&'a self, f: &mut impl FnMut(&'a Operation)) {
        for op in &self.operations {
            f(op);
            for b in &op.blocks {
                b.visit_ops(f);
            }
        }
    }

    /// The operation that defines variable `name` in this block (not in nested blocks).
    pub fn producer(&self, name: &str) -> Option<&Operation> {
        self.operations.iter().find(|op| op.outputs.iter().any(|o| o.name == name))
    }

    /// The (unresolved) value of the `const` op defining `name` in this block.
    pub fn const_value(&self, name: &str) -> Option<&ConstValue> {
        self.producer(name)?.const_value()
    }

    /// Every `const` op of this block by output name, for lookups in a loop.
    pub fn consts(&self) -> BTreeMap<&str, &ConstValue> {
        self.operations
            .iter()
            .filter_map(|op| Some((op.output_name()?, op.const_value()?)))
            .collect()
    }
}

impl Function {
    /// The (unresolved) value of the `const` op defining `name` in the function's block.
    /// Blob-backed values still need [`crate::MlModel::resolve`].
    pub fn const_value(&self, name: &str) -> Option<&ConstValue> {
        self.block.const_value(name)
    }

    /// The constant bound to input `input` of `op`: an inline value, or the value of the
    /// `const` op that defines the named variable. `None` when the input is absent, variadic,
    /// or computed at run time. Blob-backed values still need [`crate::MlModel::resolve`].
    pub fn const_input<'a>(&'a self, op: &'a Operation, input: &str) -> Option<&'a ConstValue> {
        match op.input(input)? {
            Argument::Value(v) => Some(v),
            Argument::Name(n) => self.const_value(n),
        }
    }
}

impl Program {
    /// The `main` function, or the only function.
    pub fn main(&self) -> Option<&Function> {
        self.functions.get("main").or_else(|| match self.functions.len() {
            1 => self.functions.values().next(),
            _ => None,
        })
    }

    /// Number of operations of each type over all functions and nested blocks (consts included).
    pub fn op_histogram(&self) -> BTreeMap<String, usize> {
        let mut h = BTreeMap::new();
        for f in self.functions.values() {
            f.block.visit_ops(&mut |op| *h.entry(op.op_type.clone()).or_insert(0) += 1);
        }
        h
    }

    /// Converts and checks the protobuf program. Errors are plain text naming the function and
    /// operation; the caller adds the file.
    pub(crate) fn from_proto(p: &mil_spec::Program) -> Result<Program, String> {
        let mut functions = BTreeMap::new();
        for (name, f) in &p.functions {
            let func = convert_function(f).map_err(|e| format!("function `{name}`: {e}"))?;
            functions.insert(name.clone(), func);
        }
        Ok(Program {
            version: p.version,
            functions,
            attributes: convert_attrs(&p.attributes).map_err(|e| format!("program {e}"))?,
        })
    }
}

fn convert_attrs(
    a: &std::collections::HashMap<String, mil_spec::Value>,
) -> Result<BTreeMap<String, ConstValue>, String> {
    a.iter()
        .map(|(k, v)| {
            Ok((k.clone(), ConstValue::from_proto(v).map_err(|e| format!("attribute `{k}`: {e}"))?))
        })
        .collect()
}

fn convert_named(v: &[mil_spec::NamedValueType]) -> Result<Vec<NamedType>, String> {
    v.iter()
        .map(|n| {
            let ty = ValueType::from_proto(n.r#type.as_ref())
                .map_err(|e| format!("variable `{}`: {e}", n.name))?;
            Ok(NamedType { name: n.name.clone(), ty })
        })
        .collect()
}

fn convert_function(f: &mil_spec::Function) -> Result<Function, String> {
    let inputs = convert_named(&f.inputs).map_err(|e| format!("input {e}"))?;
    let block = f.block_specializations.get(&f.opset).ok_or_else(|| {
        let known: Vec<&String> = f.block_specializations.keys().collect();
        format!("active opset `{}` has no block (blocks: {known:?})", f.opset)
    })?;
    let mut other_blocks = BTreeMap::new();
    for (opset, b) in &f.block_specializations {
        if *opset != f.opset {
            other_blocks.insert(opset.clone(), convert_block(b)?);
        }
    }
    let block = convert_block(block)?;
    check_scope(&block, &inputs.iter().map(|i| i.name.as_str()).collect())?;
    Ok(Function {
        inputs,
        opset: f.opset.clone(),
        block,
        other_blocks,
        attributes: convert_attrs(&f.attributes)?,
    })
}

fn convert_block(b: &mil_spec::Block) -> Result<Block, String> {
    let mut operations = Vec::with_capacity(b.operations.len());
    for (i, op) in b.operations.iter().enumerate() {
        let converted = convert_op(op).map_err(|e| {
            let out = op.outputs.first().map(|o| o.name.as_str()).unwrap_or("?");
            format!("operation #{i} `{}` (output `{out}`): {e}", op.r#type)
        })?;
        operations.push(converted);
    }
    Ok(Block {
        inputs: convert_named(&b.inputs).map_err(|e| format!("block input {e}"))?,
        operations,
        outputs: b.outputs.clone(),
    })
}

fn convert_op(op: &mil_spec::Operation) -> Result<Operation, String> {
    use mil_spec::argument::binding::Binding;
    let mut inputs = BTreeMap::new();
    for (name, arg) in &op.inputs {
        let bindings = arg
            .arguments
            .iter()
            .map(|b| match &b.binding {
                Some(Binding::Name(n)) => Ok(Argument::Name(n.clone())),
                Some(Binding::Value(v)) => ConstValue::from_proto(v).map(Argument::Value),
                None => Err("empty binding".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("input `{name}`: {e}"))?;
        inputs.insert(name.clone(), bindings);
    }
    let attributes = convert_attrs(&op.attributes)?;
    if op.r#type == "const" && !attributes.contains_key("val") {
        return Err("const op without a `val` attribute".into());
    }
    Ok(Operation {
        op_type: op.r#type.clone(),
        inputs,
        outputs: convert_named(&op.outputs).map_err(|e| format!("output {e}"))?,
        attributes,
        blocks: op.blocks.iter().map(convert_block).collect::<Result<_, _>>()?,
    })
}

/// Checks SSA scoping: every named argument refers to a function input, a block input or an
/// earlier output (outer scopes included), and every block output is defined.
fn check_scope<'a>(block: &'a Block, outer: &HashSet<&'a str>) -> Result<(), String> {
    let mut scope = outer.clone();
    scope.extend(block.inputs.iter().map(|i| i.name.as_str()));
    for (i, op) in block.operations.iter().enumerate() {
        for (input, args) in &op.inputs {
            for a in args {
                if let Argument::Name(n) = a
                    && !scope.contains(n.as_str())
                {
                    return Err(format!(
                        "operation #{i} `{}`: input `{input}` refers to `{n}`, which is not \
                         defined before it",
                        op.op_type
                    ));
                }
            }
        }
        for b in &op.blocks {
            check_scope(b, &scope)
                .map_err(|e| format!("operation #{i} `{}` nested block: {e}", op.op_type))?;
        }
        scope.extend(op.outputs.iter().map(|o| o.name.as_str()));
    }
    if let Some(missing) = block.outputs.iter().find(|o| !scope.contains(o.as_str())) {
        return Err(format!("block output `{missing}` is not defined in the block"));
    }
    Ok(())
}
