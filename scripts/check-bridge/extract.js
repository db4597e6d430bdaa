// extract.js - parses the Core ML bridge's three descriptions of one C ABI with tree-sitter and
// prints a single JSON model on stdout for `cargo xtask check-bridge`, which compares them:
//   - every Swift file under coreml-bridge/Sources (tree-sitter-swift): parse errors, @_cdecl
//     functions with normalized parameter/return types, type declarations and their access,
//     public declarations and the type names in their signatures, uses of availability-tracked
//     APIs with the @available/#available guard around each use, CMB_* names used;
//   - coreml-bridge/include/coreml_bridge.h (tree-sitter-c): #defines, structs, prototypes;
//   - crates/coreml-sys/src/{types,loader}.rs (tree-sitter-rust): consts, #[repr(C)] structs,
//     extern "C" fn type aliases, layout asserts, and which alias each symbol is resolved as;
//   - coreml-bridge/Package.swift: the macOS deployment target.
// Usage: node extract.js ROOT   (ROOT = a workspace root, or a copy of its relevant parts)
// Types are normalized to one vocabulary: i8 u8 i32 u32 i64 u64 f32 f64 char void bool, a struct
// name (cmb_tensor), "*mut T" / "*const T" / "*? opaque" (Swift's OpaquePointer, whose pointee
// and constness Swift does not keep), and "[T; N]" with N resolved to a number when known.
'use strict';

const fs = require('fs');
const path = require('path');
const Parser = require('tree-sitter');

const root = process.argv[2];
if (!root) {
  process.stderr.write('usage: node extract.js WORKSPACE_ROOT\n');
  process.exit(2);
}

function parser(lang) {
  const p = new Parser();
  p.setLanguage(require(lang));
  return p;
}
const swiftParser = parser('tree-sitter-swift');
const cParser = parser('tree-sitter-c');
const rustParser = parser('tree-sitter-rust');

function read(rel) {
  const file = path.join(root, rel);
  if (!fs.existsSync(file)) throw new Error(`missing file ${file}`);
  return fs.readFileSync(file, 'utf8');
}

function walk(node, visit) {
  visit(node);
  for (let i = 0; i < node.childCount; i++) walk(node.child(i), visit);
}

function line(node) {
  return node.startPosition.row + 1;
}

function parseErrors(tree, rel) {
  const errors = [];
  walk(tree.rootNode, (n) => {
    if (n.type === 'ERROR' || n.isMissing) {
      const what = n.isMissing ? `missing ${n.type}` : 'syntax error';
      const text = n.text.split('\n')[0].slice(0, 60);
      errors.push({ file: rel, line: line(n), column: n.startPosition.column + 1, what, text });
    }
  });
  return errors;
}

// ---------------------------------------------------------------- Swift

const SWIFT_SCALARS = {
  Int8: 'i8', UInt8: 'u8', Int16: 'i16', UInt16: 'u16', Int32: 'i32', UInt32: 'u32',
  Int64: 'i64', UInt64: 'u64', Int: 'isize', UInt: 'usize', Float: 'f32', Double: 'f64',
  CChar: 'char', CInt: 'i32', CUnsignedInt: 'u32', CLong: 'isize', Bool: 'bool', Void: 'void',
  '()': 'void', CFloat: 'f32', CDouble: 'f64',
};

function normalizeSwiftType(text, aliases, depth = 0) {
  let t = text.trim();
  if (depth > 20) return `unresolved(${t})`;
  while (t.endsWith('?') || t.endsWith('!')) t = t.slice(0, -1).trim();
  if (t.startsWith('(') && t.endsWith(')') && t !== '()') t = t.slice(1, -1).trim();
  const generic = /^(UnsafeMutablePointer|UnsafePointer)\s*<(.*)>$/s.exec(t);
  if (generic) {
    const inner = normalizeSwiftType(generic[2], aliases, depth + 1);
    return `${generic[1] === 'UnsafePointer' ? '*const' : '*mut'} ${inner}`;
  }
  if (t === 'UnsafeMutableRawPointer') return '*mut void';
  if (t === 'UnsafeRawPointer') return '*const void';
  if (t === 'OpaquePointer') return '*? opaque';
  if (SWIFT_SCALARS[t]) return SWIFT_SCALARS[t];
  if (aliases[t]) return normalizeSwiftType(aliases[t].type, aliases, depth + 1);
  return t;
}

function modifiersOf(node) {
  for (let i = 0; i < node.namedChildCount; i++) {
    const c = node.namedChild(i);
    if (c.type === 'modifiers') return c;
  }
  return null;
}

function visibility(node) {
  const mods = modifiersOf(node);
  if (mods) {
    for (let i = 0; i < mods.namedChildCount; i++) {
      const c = mods.namedChild(i);
      if (c.type === 'visibility_modifier') {
        const v = c.text.split('(')[0].trim();
        if (v === 'open') return 'public';
        return v;
      }
    }
  }
  return 'internal';
}

function attributes(node) {
  const mods = modifiersOf(node);
  const out = [];
  if (!mods) return out;
  for (let i = 0; i < mods.namedChildCount; i++) {
    const c = mods.namedChild(i);
    if (c.type === 'attribute') out.push(c.text);
  }
  return out;
}

// "macOS 14.4" inside @available(...) / #available(...) -> [14, 4]
function macosVersion(text) {
  const m = /\bmacOS\s+(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(text);
  if (!m) return null;
  return [Number(m[1]), Number(m[2] || 0), Number(m[3] || 0)];
}

function maxVersion(a, b) {
  if (!a) return b;
  if (!b) return a;
  for (let i = 0; i < 3; i++) {
    if (a[i] !== b[i]) return a[i] > b[i] ? a : b;
  }
  return a;
}

function declName(node) {
  const n = node.childForFieldName('name');
  if (n) return n.text;
  for (let i = 0; i < node.namedChildCount; i++) {
    const c = node.namedChild(i);
    if (c.type === 'type_identifier' || c.type === 'simple_identifier') return c.text;
  }
  return '?';
}

// The signature part of a declaration: everything but its body.
function signatureTypeNames(node) {
  const names = new Set();
  const bodyTypes = new Set(['function_body', 'class_body', 'enum_class_body', 'protocol_body',
    'computed_property', 'statements', 'lambda_literal']);
  const skipValue = node.type === 'property_declaration' ? node.childForFieldName('value') : null;
  (function visit(n) {
    if (bodyTypes.has(n.type)) return;
    if (skipValue && n.id === skipValue.id) return;
    if (n.type === 'type_identifier') names.add(n.text);
    for (let i = 0; i < n.namedChildCount; i++) visit(n.namedChild(i));
  })(node);
  return [...names];
}

const TYPE_DECLS = new Set(['class_declaration', 'protocol_declaration', 'typealias_declaration']);
const MEMBER_DECLS = new Set(['function_declaration', 'property_declaration', 'init_declaration',
  'subscript_declaration', 'typealias_declaration', 'class_declaration', 'protocol_declaration']);

function enclosingTypeDecl(node) {
  for (let p = node.parent; p; p = p.parent) {
    if (p.type === 'class_declaration' || p.type === 'protocol_declaration') return p;
  }
  return null;
}

// The guard level (macOS version) that the context around `node` guarantees.
function guardLevel(node) {
  let level = null;
  let child = node;
  for (let p = node.parent; p; child = p, p = p.parent) {
    for (const a of attributes(p)) {
      if (/^@available\s*\(/.test(a)) level = maxVersion(level, macosVersion(a));
    }
    if (p.type === 'if_statement') {
      // then-branch: the first `statements` child; guarded by #available conditions of p
      let thenBlock = null;
      for (let i = 0; i < p.namedChildCount; i++) {
        if (p.namedChild(i).type === 'statements') { thenBlock = p.namedChild(i); break; }
      }
      if (thenBlock && thenBlock.id === child.id) {
        for (let i = 0; i < p.namedChildCount; i++) {
          const c = p.namedChild(i);
          if (c.type === 'availability_condition' && c.text.startsWith('#available')) {
            level = maxVersion(level, macosVersion(c.text));
          }
        }
      }
    }
    if (p.type === 'statements') {
      // `guard #available(...) else { ... }` guards the statements after it in this block
      for (let i = 0; i < p.namedChildCount; i++) {
        const s = p.namedChild(i);
        if (s.id === child.id) break;
        if (s.type !== 'guard_statement') continue;
        for (let j = 0; j < s.namedChildCount; j++) {
          const c = s.namedChild(j);
          if (c.type === 'availability_condition' && c.text.startsWith('#available')) {
            level = maxVersion(level, macosVersion(c.text));
          }
        }
      }
    }
  }
  return level;
}

function insideAwait(node) {
  for (let p = node.parent; p; p = p.parent) {
    if (p.type === 'await_expression') return true;
    if (p.type === 'statements' || p.type === 'function_body' || p.type === 'lambda_literal') return false;
  }
  return false;
}

function extractSwift() {
  const sourcesDir = path.join(root, 'coreml-bridge', 'Sources');
  const files = [];
  (function collect(dir) {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) collect(full);
      else if (e.name.endsWith('.swift')) files.push(full);
    }
  })(sourcesDir);
  const trees = files.map((f) => {
    const rel = path.relative(root, f);
    return { rel, tree: swiftParser.parse(fs.readFileSync(f, 'utf8')) };
  });

  const aliases = {};
  const typeDecls = [];
  for (const { rel, tree } of trees) {
    walk(tree.rootNode, (n) => {
      if (n.type === 'typealias_declaration') {
        const value = n.childForFieldName('value');
        aliases[declName(n)] = { type: value ? value.text : '', visibility: visibility(n) };
      }
      if (TYPE_DECLS.has(n.type)) {
        typeDecls.push({ name: declName(n), visibility: visibility(n), file: rel, line: line(n) });
      }
    });
  }

  // Declarations of this module marked @available(macOS N): their uses need a guard as well.
  const availableDecls = [];
  for (const { rel, tree } of trees) {
    walk(tree.rootNode, (n) => {
      if (n.type !== 'function_declaration' && n.type !== 'class_declaration') return;
      for (const a of attributes(n)) {
        const v = /^@available\s*\(/.test(a) ? macosVersion(a) : null;
        if (v) availableDecls.push({ name: declName(n), macos: v, file: rel, line: line(n) });
      }
    });
  }
  const availableNames = new Set(availableDecls.map((d) => d.name));

  const errors = [];
  const cdecls = [];
  const publicDecls = [];
  const apiUses = [];
  const cmbNames = new Set();
  for (const { rel, tree } of trees) {
    errors.push(...parseErrors(tree, rel));
    walk(tree.rootNode, (n) => {
      if (n.type === 'function_declaration') {
        const cdecl = attributes(n).map((a) => /^@_cdecl\s*\(\s*"([^"]*)"\s*\)/.exec(a)).find(Boolean);
        if (cdecl) {
          const body = n.childForFieldName('body');
          const header = n.text.slice(0, body ? body.startIndex - n.startIndex : undefined);
          const params = [];
          for (let i = 0; i < n.namedChildCount; i++) {
            const c = n.namedChild(i);
            if (c.type !== 'parameter') continue;
            const colon = c.text.indexOf(':');
            const typeText = c.text.slice(colon + 1).trim();
            const names = c.text.slice(0, colon).trim().split(/\s+/);
            params.push({ name: names[names.length - 1], swift: typeText, type: normalizeSwiftType(typeText, aliases) });
          }
          const close = header.lastIndexOf(')');
          const arrow = header.indexOf('->', close);
          const retText = arrow >= 0 ? header.slice(arrow + 2).trim() : 'Void';
          // Wrapped: the body's statements all run inside guarded(...) or autoreleasepool {...}.
          const bodyText = body ? body.text : '';
          const wrapped = /\b(guarded\s*\(|autoreleasepool\s*[({])/.test(bodyText);
          cdecls.push({
            symbol: cdecl[1], swift_name: declName(n), file: rel, line: line(n), wrapped,
            visibility: visibility(n), params, ret: normalizeSwiftType(retText, aliases), ret_swift: retText,
          });
        }
      }
      if (MEMBER_DECLS.has(n.type) && visibility(n) === 'public') {
        const owner = enclosingTypeDecl(n);
        // a public member of a non-public type is not public API; Swift does not check it
        if (!owner || visibility(owner) === 'public') {
          publicDecls.push({ kind: n.type.replace('_declaration', ''), name: declName(n), file: rel, line: line(n), types: signatureTypeNames(n) });
        }
      }
      if (n.type === 'type_identifier' || n.type === 'simple_identifier') {
        if (/^CMB_[A-Z0-9_]+$/.test(n.text)) cmbNames.add(n.text);
        const parent = n.parent;
        const isMember = parent && parent.type === 'navigation_suffix';
        const isType = n.type === 'type_identifier' || (!isMember && /^[A-Z]/.test(n.text));
        let call = false;
        if (isMember) {
          // `.name(` : the suffix belongs to a navigation_expression that is called
          const nav = parent.parent;
          call = !!(nav && nav.parent && nav.parent.type === 'call_expression' && nav.parent.namedChild(0).id === nav.id);
        }
        apiUses.push({
          name: n.text, kind: isMember ? 'member' : isType ? 'type' : 'identifier',
          awaited: call && insideAwait(n), file: rel, line: line(n), guard: guardLevel(n),
        });
      }
    });
  }
  // Keep only names the availability table could care about (capitalised types, members).
  const uses = apiUses.filter((u) => u.kind !== 'identifier' || availableNames.has(u.name));
  return {
    files: trees.map((t) => t.rel), errors, cdecls, aliases, type_decls: typeDecls,
    public_decls: publicDecls, api_uses: uses, available_decls: availableDecls, cmb_names: [...cmbNames].sort(),
  };
}

// ---------------------------------------------------------------- C header

const C_SCALARS = {
  int8_t: 'i8', uint8_t: 'u8', int16_t: 'i16', uint16_t: 'u16', int32_t: 'i32', uint32_t: 'u32',
  int64_t: 'i64', uint64_t: 'u64', double: 'f64', float: 'f32', char: 'char', void: 'void',
  int: 'i32', 'unsigned int': 'u32', bool: 'bool', _Bool: 'bool', size_t: 'usize',
};

function stripComment(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '').trim();
}

// base type + declarator chain -> normalized type and the declared name
function cDeclarator(baseConst, baseText, decl) {
  let t = C_SCALARS[baseText] || baseText;
  let pointeeConst = baseConst;
  let name = null;
  let arraySize = null;
  let d = decl;
  const pointers = [];
  while (d) {
    if (d.type === 'pointer_declarator') {
      let selfConst = false;
      for (let i = 0; i < d.namedChildCount; i++) {
        if (d.namedChild(i).type === 'type_qualifier' && d.namedChild(i).text === 'const') selfConst = true;
      }
      pointers.push(selfConst);
      d = d.childForFieldName('declarator');
    } else if (d.type === 'array_declarator') {
      arraySize = d.childForFieldName('size') ? d.childForFieldName('size').text : '';
      d = d.childForFieldName('declarator');
    } else {
      name = d.text;
      d = null;
    }
  }
  // pointers[] is outermost first; the innermost pointer points at the (maybe const) base.
  for (let i = pointers.length - 1; i >= 0; i--) {
    t = `${pointeeConst ? '*const' : '*mut'} ${t}`;
    pointeeConst = pointers[i];
  }
  if (arraySize !== null) t = `[${t}; ${arraySize}]`;
  return { name, type: t };
}

function cBase(node) {
  let isConst = false;
  for (let i = 0; i < node.namedChildCount; i++) {
    const c = node.namedChild(i);
    if (c.type === 'type_qualifier' && c.text === 'const') isConst = true;
  }
  const typeNode = node.childForFieldName('type');
  let text = typeNode ? typeNode.text : 'int';
  if (typeNode && typeNode.type === 'sized_type_specifier') text = typeNode.text.replace(/\s+/g, ' ');
  return { isConst, text };
}

function extractHeader() {
  const rel = path.join('coreml-bridge', 'include', 'coreml_bridge.h');
  // tree-sitter-c cannot pair `#ifdef __cplusplus / extern "C" { / #endif` with the closing
  // `}` in a second #ifdef (it reports a missing #endif); those guards carry no ABI, so they
  // are blanked out (line numbers kept) before parsing.
  const text = read(rel).replace(/#ifdef __cplusplus[\s\S]*?#endif/g, (m) => m.replace(/[^\n]/g, ' '));
  const tree = cParser.parse(text);
  const defines = [];
  const structs = [];
  const opaque = [];
  const functions = [];
  walk(tree.rootNode, (n) => {
    if (n.type === 'preproc_def') {
      const value = n.childForFieldName('value');
      defines.push({ name: n.childForFieldName('name').text, value: value ? stripComment(value.text) : '', line: line(n) });
    }
    if (n.type === 'struct_specifier') {
      const name = n.childForFieldName('name');
      const body = n.childForFieldName('body');
      if (!name) return;
      if (!body) {
        opaque.push(name.text);
        return;
      }
      const fields = [];
      for (let i = 0; i < body.namedChildCount; i++) {
        const f = body.namedChild(i);
        if (f.type !== 'field_declaration') continue;
        const base = cBase(f);
        const d = cDeclarator(base.isConst, base.text, f.childForFieldName('declarator'));
        fields.push({ name: d.name, type: d.type, line: line(f) });
      }
      structs.push({ name: name.text, fields, line: line(n) });
    }
    if (n.type === 'declaration') {
      const declarator = n.childForFieldName('declarator');
      // a prototype: [pointer_declarator ->] function_declarator
      let d = declarator;
      let retPointers = 0;
      while (d && d.type === 'pointer_declarator') { retPointers++; d = d.childForFieldName('declarator'); }
      if (!d || d.type !== 'function_declarator') return;
      const base = cBase(n);
      let ret = C_SCALARS[base.text] || base.text;
      for (let i = 0; i < retPointers; i++) ret = `${base.isConst && i === 0 ? '*const' : '*mut'} ${ret}`;
      const params = [];
      const list = d.childForFieldName('parameters');
      for (let i = 0; i < list.namedChildCount; i++) {
        const p = list.namedChild(i);
        if (p.type !== 'parameter_declaration') continue;
        const pb = cBase(p);
        const pd = cDeclarator(pb.isConst, pb.text, p.childForFieldName('declarator'));
        if (pd.type === 'void' && !pd.name) continue; // f(void)
        params.push({ name: pd.name, type: pd.type });
      }
      functions.push({ name: d.childForFieldName('declarator').text, params, ret, line: line(n) });
    }
  });
  return { file: rel, errors: parseErrors(tree, rel), defines, structs, opaque, functions };
}

// ---------------------------------------------------------------- Rust (coreml-sys)

const RUST_SCALARS = {
  i8: 'i8', u8: 'u8', i16: 'i16', u16: 'u16', i32: 'i32', u32: 'u32', i64: 'i64', u64: 'u64',
  f32: 'f32', f64: 'f64', isize: 'isize', usize: 'usize', bool: 'bool', c_char: 'char',
  c_void: 'void', c_int: 'i32', c_uint: 'u32', '()': 'void',
};

function snake(name) {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}

function normalizeRustType(node) {
  if (!node) return 'void';
  switch (node.type) {
    case 'pointer_type': {
      const mutable = node.text.replace(/\s+/g, ' ').startsWith('*mut');
      return `${mutable ? '*mut' : '*const'} ${normalizeRustType(node.childForFieldName('type'))}`;
    }
    case 'array_type':
      return `[${normalizeRustType(node.childForFieldName('element'))}; ${node.childForFieldName('length').text}]`;
    case 'primitive_type':
    case 'type_identifier':
      return RUST_SCALARS[node.text] || (/^Cmb[A-Z]/.test(node.text) ? snake(node.text) : node.text);
    case 'scoped_type_identifier': {
      const last = node.childForFieldName('name').text;
      return RUST_SCALARS[last] || last;
    }
    case 'unit_type':
      return 'void';
    default:
      return node.text;
  }
}

function extractRust() {
  const typesRel = path.join('crates', 'coreml-sys', 'src', 'types.rs');
  const loaderRel = path.join('crates', 'coreml-sys', 'src', 'loader.rs');
  const typesText = read(typesRel);
  const types = rustParser.parse(typesText);
  const loader = rustParser.parse(read(loaderRel));
  const consts = [];
  const structs = [];
  const fnTypes = [];
  const layout = [];
  const items = types.rootNode;
  let pendingAttrs = [];
  for (let i = 0; i < items.namedChildCount; i++) {
    const n = items.namedChild(i);
    if (n.type === 'attribute_item') { pendingAttrs.push(n.text); continue; }
    if (n.type === 'line_comment' || n.type === 'block_comment') continue;
    const attrs = pendingAttrs;
    pendingAttrs = [];
    if (n.type === 'const_item') {
      const name = n.childForFieldName('name').text;
      if (name === '_') {
        const t = n.text;
        let m;
        const size = /size_of::<(\w+)>\(\)\s*==\s*(\d+)/g;
        while ((m = size.exec(t))) layout.push({ kind: 'size', struct: snake(m[1]), value: Number(m[2]), line: line(n) });
        const align = /align_of::<(\w+)>\(\)\s*==\s*(\d+)/g;
        while ((m = align.exec(t))) layout.push({ kind: 'align', struct: snake(m[1]), value: Number(m[2]), line: line(n) });
        const off = /offset_of!\(\s*(\w+)\s*,\s*(\w+)\s*\)\s*==\s*(\d+)/g;
        while ((m = off.exec(t))) layout.push({ kind: 'offset', struct: snake(m[1]), field: m[2], value: Number(m[3]), line: line(n) });
        continue;
      }
      consts.push({ name, type: n.childForFieldName('type').text, value: n.childForFieldName('value').text.replace(/_/g, ''), line: line(n) });
    }
    if (n.type === 'struct_item') {
      const reprC = attrs.some((a) => /repr\s*\(\s*C/.test(a));
      const fields = [];
      const body = n.childForFieldName('body');
      if (body && body.type === 'field_declaration_list') {
        for (let j = 0; j < body.namedChildCount; j++) {
          const f = body.namedChild(j);
          if (f.type !== 'field_declaration') continue;
          fields.push({ name: f.childForFieldName('name').text, type: normalizeRustType(f.childForFieldName('type')), line: line(f) });
        }
      }
      structs.push({ name: snake(declNameRust(n)), rust_name: declNameRust(n), repr_c: reprC, fields, line: line(n) });
    }
    if (n.type === 'type_item') {
      const ty = n.childForFieldName('type');
      if (!ty || ty.type !== 'function_type') continue;
      const params = [];
      const ps = ty.childForFieldName('parameters');
      for (let j = 0; j < ps.namedChildCount; j++) {
        const p = ps.namedChild(j);
        const t = p.type === 'parameter' ? p.childForFieldName('type') : p;
        params.push({ type: normalizeRustType(t) });
      }
      fnTypes.push({
        alias: n.childForFieldName('name').text,
        extern_c: /extern\s+"C"/.test(ty.text), unsafe: /^unsafe\b/.test(ty.text.trim()),
        params, ret: normalizeRustType(ty.childForFieldName('return_type')), line: line(n),
      });
    }
  }
  const resolves = [];
  walk(loader.rootNode, (n) => {
    if (n.type !== 'call_expression') return;
    const f = n.childForFieldName('function');
    if (!f || f.type !== 'generic_function' || f.childForFieldName('function').text !== 'resolve') return;
    const alias = f.childForFieldName('type_arguments').namedChild(0).text;
    const args = n.childForFieldName('arguments');
    let symbol = null;
    for (let i = 0; i < args.namedChildCount; i++) {
      const a = args.namedChild(i);
      if (a.type === 'string_literal') symbol = a.text.slice(1, -1);
    }
    resolves.push({ alias, symbol, line: line(n) });
  });
  return {
    types_file: typesRel, loader_file: loaderRel,
    errors: [...parseErrors(types, typesRel), ...parseErrors(loader, loaderRel)],
    consts, structs, fn_types: fnTypes, layout, resolves,
  };
}

function declNameRust(n) {
  return n.childForFieldName('name').text;
}

// ---------------------------------------------------------------- Package.swift

function extractPackage() {
  const rel = path.join('coreml-bridge', 'Package.swift');
  const text = read(rel);
  const tree = swiftParser.parse(text);
  const m = /\.macOS\s*\(\s*(?:\.v(\d+)(?:_(\d+))?|"(\d+)(?:\.(\d+))?")\s*\)/.exec(text);
  const target = m ? [Number(m[1] || m[3]), Number(m[2] || m[4] || 0), 0] : null;
  return { file: rel, errors: parseErrors(tree, rel), macos_deployment_target: target };
}

const model = { swift: extractSwift(), header: extractHeader(), rust: extractRust(), package: extractPackage() };
process.stdout.write(JSON.stringify(model));
