//! The JSON model `scripts/check-bridge/extract.js` prints: what tree-sitter found in the Swift
//! sources, the C header, coreml-sys and Package.swift, with types already normalized.

use serde::Deserialize;

/// A macOS version as `[major, minor, patch]`.
pub(crate) type Version = [u32; 3];

#[derive(Debug, Deserialize)]
pub(crate) struct Model {
    pub swift: Swift,
    pub header: Header,
    pub rust: Rust,
    pub package: Package,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ParseError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub what: String,
    pub text: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Swift {
    pub files: Vec<String>,
    pub errors: Vec<ParseError>,
    pub cdecls: Vec<Cdecl>,
    pub type_decls: Vec<TypeDecl>,
    pub public_decls: Vec<PublicDecl>,
    pub api_uses: Vec<ApiUse>,
    pub available_decls: Vec<AvailableDecl>,
    pub cmb_names: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Cdecl {
    pub symbol: String,
    pub swift_name: String,
    pub file: String,
    pub line: u32,
    pub visibility: String,
    pub wrapped: bool,
    pub params: Vec<SwiftParam>,
    pub ret: String,
    pub ret_swift: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SwiftParam {
    pub name: String,
    pub swift: String,
    #[serde(rename = "type")]
    pub ty: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TypeDecl {
    pub name: String,
    pub visibility: String,
    pub file: String,
    pub line: u32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PublicDecl {
    pub kind: String,
    pub name: String,
    pub file: String,
    pub line: u32,
    pub types: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApiUse {
    pub name: String,
    pub kind: String,
    pub awaited: bool,
    pub file: String,
    pub line: u32,
    pub guard: Option<Version>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AvailableDecl {
    pub name: String,
    pub macos: Version,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    pub file: String,
    pub errors: Vec<ParseError>,
    pub defines: Vec<Define>,
    pub structs: Vec<CStruct>,
    pub opaque: Vec<String>,
    pub functions: Vec<CFunction>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Define {
    pub name: String,
    pub value: String,
    pub line: u32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub line: u32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CStruct {
    pub name: String,
    pub fields: Vec<Field>,
    pub line: u32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CParam {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub ty: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CFunction {
    pub name: String,
    pub params: Vec<CParam>,
    pub ret: String,
    pub line: u32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Rust {
    pub types_file: String,
    pub loader_file: String,
    pub errors: Vec<ParseError>,
    pub consts: Vec<RustConst>,
    pub structs: Vec<RustStruct>,
    pub fn_types: Vec<FnType>,
    pub layout: Vec<LayoutAssert>,
    pub resolves: Vec<Resolve>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RustConst {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub value: String,
    pub line: u32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RustStruct {
    pub name: String,
    pub rust_name: String,
    pub repr_c: bool,
    pub fields: Vec<Field>,
    pub line: u32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FnType {
    pub alias: String,
    pub extern_c: bool,
    #[serde(rename = "unsafe")]
    pub is_unsafe: bool,
    pub params: Vec<RustParam>,
    pub ret: String,
    pub line: u32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RustParam {
    #[serde(rename = "type")]
    pub ty: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LayoutAssert {
    pub kind: String,
    #[serde(rename = "struct")]
    pub struct_name: String,
    pub field: Option<String>,
    pub value: u64,
    pub line: u32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Resolve {
    pub alias: String,
    pub symbol: Option<String>,
    pub line: u32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Package {
    pub file: String,
    pub errors: Vec<ParseError>,
    pub macos_deployment_target: Option<Version>,
}
