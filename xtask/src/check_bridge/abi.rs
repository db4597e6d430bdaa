//! The ABI check: the header's prototypes, constants and structs against the Swift `@_cdecl`
//! functions and against coreml-sys (names, widths, signedness, pointer constness, values,
//! field order and the layout asserts). Any drift is a failure naming both sides.

use std::collections::{BTreeMap, BTreeSet};

use super::Section;
use super::model::{CStruct, Model};

/// `*mut T` -> ("mut", "T"); `*const T` -> ("const", "T"); `*? opaque` -> ("?", "opaque").
fn split_ptr(t: &str) -> Option<(&str, &str)> {
    let rest = t.strip_prefix('*')?;
    let (kind, inner) = rest.split_once(' ')?;
    Some((kind, inner))
}

/// Whether a Swift parameter type is the C type. Swift imports a pointer to an incomplete
/// struct (`cmb_model *`, const or not) as `OpaquePointer`, which keeps neither.
fn swift_matches_c(swift: &str, c: &str, opaque: &[String]) -> bool {
    match (split_ptr(swift), split_ptr(c)) {
        (Some(("?", "opaque")), Some((_, inner))) => opaque.iter().any(|o| o == inner),
        (Some((sk, sr)), Some((ck, cr))) => sk == ck && swift_matches_c(sr, cr, opaque),
        (None, None) => swift == c,
        _ => false,
    }
}

/// Replaces a named array length (`[char; CMB_NAME_CAPACITY]`) by its value.
fn resolve_array(t: &str, values: &BTreeMap<String, i64>) -> String {
    let array = t.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
    if let Some((elem, len)) = array.and_then(|inner| inner.rsplit_once("; ")) {
        let n = values.get(len).map(|v| v.to_string()).unwrap_or_else(|| len.to_string());
        return format!("[{}; {n}]", resolve_array(elem, values));
    }
    t.to_string()
}

/// An integer literal as C or Rust writes it (`8`, `-1`, `0x10`, `(4)`, `10u`).
pub(crate) fn parse_int(text: &str) -> Option<i64> {
    let t = text.trim().trim_start_matches('(').trim_end_matches(')').trim();
    let t = t.trim_end_matches(['u', 'U', 'l', 'L']);
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest.trim()),
        None => (false, t),
    };
    let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => t.parse::<i64>().ok()?,
    };
    Some(if neg { -v } else { v })
}

pub(crate) fn header_values(model: &Model) -> BTreeMap<String, i64> {
    model
        .header
        .defines
        .iter()
        .filter_map(|d| parse_int(&d.value).map(|v| (d.name.clone(), v)))
        .collect()
}

/// Every function in the header exists once in Swift and once in coreml-sys's loader, and
/// nothing else does.
pub(crate) fn symbols(model: &Model, s: &mut Section) {
    let header: BTreeSet<&str> = model.header.functions.iter().map(|f| f.name.as_str()).collect();
    let mut swift: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &model.swift.cdecls {
        *swift.entry(c.symbol.as_str()).or_default() += 1;
    }
    let rust: BTreeSet<&str> =
        model.rust.resolves.iter().filter_map(|r| r.symbol.as_deref()).collect();
    for name in &header {
        s.check(swift.contains_key(name), || {
            format!(
                "`{name}` is in {} but no Swift function has @_cdecl(\"{name}\")",
                model.header.file
            )
        });
        s.check(rust.contains(name), || {
            format!(
                "`{name}` is in {} but {} never resolves it",
                model.header.file, model.rust.loader_file
            )
        });
    }
    for (name, count) in &swift {
        s.check(header.contains(name), || {
            format!(
                "Swift exports @_cdecl(\"{name}\") but {} does not declare it",
                model.header.file
            )
        });
        s.check(*count == 1, || format!("@_cdecl(\"{name}\") appears {count} times in Swift"));
    }
    for name in &rust {
        s.check(header.contains(name), || {
            format!(
                "{} resolves `{name}` but {} does not declare it",
                model.rust.loader_file, model.header.file
            )
        });
    }
}

/// Each @_cdecl function's parameters and result against the prototype.
pub(crate) fn swift_signatures(model: &Model, s: &mut Section) {
    let opaque = &model.header.opaque;
    for c in &model.swift.cdecls {
        let Some(f) = model.header.functions.iter().find(|f| f.name == c.symbol) else { continue };
        let at = format!("{}:{} `{}`", c.file, c.line, c.symbol);
        s.check(c.visibility == "public", || {
            format!(
                "{at}: the @_cdecl function `{}` must be public to be exported (it is {})",
                c.swift_name, c.visibility
            )
        });
        s.check(c.params.len() == f.params.len(), || {
            format!(
                "{at}: Swift takes {} parameters, the header {} (line {})",
                c.params.len(),
                f.params.len(),
                f.line
            )
        });
        for (i, (sp, cp)) in c.params.iter().zip(&f.params).enumerate() {
            s.check(swift_matches_c(&sp.ty, &cp.ty, opaque), || {
                format!(
                    "{at}: parameter {} `{}`: Swift `{}` is `{}` but the header says `{}` for `{}`",
                    i + 1,
                    sp.name,
                    sp.swift,
                    sp.ty,
                    cp.ty,
                    cp.name.as_deref().unwrap_or("?")
                )
            });
        }
        s.check(swift_matches_c(&c.ret, &f.ret, opaque), || {
            format!(
                "{at}: Swift returns `{}` (`{}`) but the header returns `{}`",
                c.ret_swift, c.ret, f.ret
            )
        });
    }
}

/// Each fn-pointer type coreml-sys resolves a symbol as, against the prototype.
pub(crate) fn rust_signatures(model: &Model, s: &mut Section) {
    for r in &model.rust.resolves {
        let Some(symbol) = r.symbol.as_deref() else { continue };
        let Some(f) = model.header.functions.iter().find(|f| f.name == symbol) else { continue };
        let at = format!("{}:{} `{symbol}`", model.rust.loader_file, r.line);
        let Some(t) = model.rust.fn_types.iter().find(|t| t.alias == r.alias) else {
            s.fail(format!(
                "{at}: resolved as `{}`, which is not an extern \"C\" fn type in {}",
                r.alias, model.rust.types_file
            ));
            continue;
        };
        let at = format!("{}:{} `{}` (for `{symbol}`)", model.rust.types_file, t.line, t.alias);
        s.check(t.extern_c && t.is_unsafe, || format!("{at}: must be `unsafe extern \"C\" fn`"));
        s.check(t.params.len() == f.params.len(), || {
            format!(
                "{at}: takes {} parameters, the header {} (line {})",
                t.params.len(),
                f.params.len(),
                f.line
            )
        });
        for (i, (rp, cp)) in t.params.iter().zip(&f.params).enumerate() {
            s.check(rp.ty == cp.ty, || {
                format!(
                    "{at}: parameter {}: coreml-sys has `{}` but the header says `{}` for `{}`",
                    i + 1,
                    rp.ty,
                    cp.ty,
                    cp.name.as_deref().unwrap_or("?")
                )
            });
        }
        s.check(t.ret == f.ret, || {
            format!("{at}: returns `{}` but the header returns `{}`", t.ret, f.ret)
        });
    }
}

/// CMB_* constants: same set and values in the header and coreml-sys; every CMB_* name the
/// Swift code uses exists in the header.
pub(crate) fn constants(model: &Model, s: &mut Section) {
    let header: BTreeMap<&str, (&str, u32)> = model
        .header
        .defines
        .iter()
        .filter(|d| d.name.starts_with("CMB_"))
        .map(|d| (d.name.as_str(), (d.value.as_str(), d.line)))
        .collect();
    let rust: BTreeMap<&str, (&str, u32)> = model
        .rust
        .consts
        .iter()
        .filter(|c| c.name.starts_with("CMB_"))
        .map(|c| (c.name.as_str(), (c.value.as_str(), c.line)))
        .collect();
    for (name, (value, line)) in &header {
        let hv = parse_int(value);
        s.check(hv.is_some(), || {
            format!("{}:{line} `{name}` = `{value}` is not an integer", model.header.file)
        });
        match rust.get(name) {
            None => s.fail(format!(
                "{}:{line} `{name}` has no `pub const {name}` in {}",
                model.header.file, model.rust.types_file
            )),
            Some((rv, rline)) => s.check(parse_int(rv) == hv, || {
                format!(
                    "`{name}`: the header says {value} (line {line}), {}:{rline} says {rv}",
                    model.rust.types_file
                )
            }),
        }
    }
    for (name, (_, line)) in &rust {
        s.check(header.contains_key(name), || {
            format!("{}:{line} `{name}` is not in {}", model.rust.types_file, model.header.file)
        });
    }
    for c in &model.rust.consts {
        if c.name == "CMB_ABI_VERSION" {
            s.check(c.ty == "u32", || {
                format!(
                    "`CMB_ABI_VERSION` must be u32 (cmb_abi_version returns uint32_t), not {}",
                    c.ty
                )
            });
        }
    }
    for name in &model.swift.cmb_names {
        s.check(header.contains_key(name.as_str()), || {
            format!("the Swift sources use `{name}`, which {} does not define", model.header.file)
        });
    }
}

/// Field lists of every header struct against its `#[repr(C)]` mirror.
pub(crate) fn structs(model: &Model, s: &mut Section) {
    let hv = header_values(model);
    let rv: BTreeMap<String, i64> = model
        .rust
        .consts
        .iter()
        .filter_map(|c| parse_int(&c.value).map(|v| (c.name.clone(), v)))
        .collect();
    for cs in &model.header.structs {
        let Some(rs) = model.rust.structs.iter().find(|r| r.name == cs.name) else {
            s.fail(format!(
                "{}:{} `struct {}` has no mirror in {}",
                model.header.file, cs.line, cs.name, model.rust.types_file
            ));
            continue;
        };
        let at = format!(
            "{}:{} `{}` (mirror of `{}`)",
            model.rust.types_file, rs.line, rs.rust_name, cs.name
        );
        s.check(rs.repr_c, || format!("{at}: needs #[repr(C)]"));
        s.check(rs.fields.len() == cs.fields.len(), || {
            format!("{at}: {} fields, the header has {}", rs.fields.len(), cs.fields.len())
        });
        for (rf, cf) in rs.fields.iter().zip(&cs.fields) {
            let (rt, ct) = (resolve_array(&rf.ty, &rv), resolve_array(&cf.ty, &hv));
            s.check(rf.name == cf.name && rt == ct, || {
                format!(
                    "{at}: field `{}: {rt}` (line {}) but the header has `{}: {ct}` (line {})",
                    rf.name, rf.line, cf.name, cf.line
                )
            });
        }
    }
    for name in &model.header.opaque {
        s.check(model.rust.structs.iter().any(|r| &r.name == name), || {
            format!("opaque `{name}` has no Rust type in {}", model.rust.types_file)
        });
    }
}

/// (size, align) of a normalized type under the LP64 C rules (macOS arm64 and x86_64).
fn size_align(t: &str, structs: &[CStruct], values: &BTreeMap<String, i64>) -> Option<(u64, u64)> {
    if t.starts_with('*') {
        return Some((8, 8));
    }
    if let Some(inner) = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        let (elem, len) = inner.rsplit_once("; ")?;
        let n = values.get(len).copied().or_else(|| parse_int(len))?;
        let (size, align) = size_align(elem, structs, values)?;
        return Some((size * u64::try_from(n).ok()?, align));
    }
    let scalar = match t {
        "i8" | "u8" | "char" | "bool" => Some(1),
        "i16" | "u16" => Some(2),
        "i32" | "u32" | "f32" => Some(4),
        "i64" | "u64" | "f64" | "isize" | "usize" => Some(8),
        _ => None,
    };
    if let Some(n) = scalar {
        return Some((n, n));
    }
    let st = structs.iter().find(|s| s.name == t)?;
    let (size, align, _) = layout(st, structs, values)?;
    Some((size, align))
}

/// Size, alignment and each field's offset.
type Layout = (u64, u64, Vec<(String, u64)>);

/// The layout of a header struct.
fn layout(st: &CStruct, structs: &[CStruct], values: &BTreeMap<String, i64>) -> Option<Layout> {
    let (mut offset, mut align) = (0u64, 1u64);
    let mut offsets = Vec::new();
    for f in &st.fields {
        let (size, a) = size_align(&f.ty, structs, values)?;
        offset = offset.div_ceil(a) * a;
        offsets.push((f.name.clone(), offset));
        offset += size;
        align = align.max(a);
    }
    Some((offset.div_ceil(align) * align, align, offsets))
}

/// The layout the header implies against coreml-sys's compile-time asserts (which pin the
/// Rust layout): every struct needs a size assert, and every assert must agree.
pub(crate) fn layouts(model: &Model, s: &mut Section) {
    let values = header_values(model);
    for st in &model.header.structs {
        let Some((size, align, offsets)) = layout(st, &model.header.structs, &values) else {
            s.fail(format!(
                "{}:{} cannot compute the layout of `{}`",
                model.header.file, st.line, st.name
            ));
            continue;
        };
        let asserts: Vec<_> =
            model.rust.layout.iter().filter(|a| a.struct_name == st.name).collect();
        s.check(asserts.iter().any(|a| a.kind == "size"), || {
            format!(
                "{}: no `size_of::<..>() == {size}` assert for `{}`",
                model.rust.types_file, st.name
            )
        });
        for a in asserts {
            let at = format!("{}:{}", model.rust.types_file, a.line);
            match a.kind.as_str() {
                "size" => s.check(a.value == size, || {
                    format!(
                        "{at}: asserts size_of `{}` == {}, the header's layout gives {size}",
                        st.name, a.value
                    )
                }),
                "align" => s.check(a.value == align, || {
                    format!(
                        "{at}: asserts align_of `{}` == {}, the header's layout gives {align}",
                        st.name, a.value
                    )
                }),
                _ => {
                    let field = a.field.clone().unwrap_or_default();
                    match offsets.iter().find(|(n, _)| *n == field) {
                        None => s.fail(format!("{at}: offset_of `{}.{field}`: the header has no such field", st.name)),
                        Some((_, off)) => s.check(a.value == *off, || {
                            format!("{at}: asserts offset_of `{}.{field}` == {}, the header's layout gives {off}", st.name, a.value)
                        }),
                    }
                }
            }
        }
    }
}
