//! Each check proves itself: the real tree passes, and a copy with one thing broken fails
//! with a message naming it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

use std::path::Path;

use super::{check_tree, workspace_root};

/// Copies a folder, following symlinks (the C target's header is a symlink to include/).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let src = entry.path();
        let dst = to.join(entry.file_name());
        if src.is_dir() {
            if entry.file_name() == ".build" {
                continue;
            }
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A temporary copy of the parts check-bridge reads.
fn copy_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace_root();
    copy_dir(&root.join("coreml-bridge"), &dir.path().join("coreml-bridge"));
    copy_dir(&root.join("crates/coreml-sys/src"), &dir.path().join("crates/coreml-sys/src"));
    dir
}

/// Replaces `from` (which must occur exactly once) by `to` in one file of the copy.
fn edit(root: &Path, file: &str, from: &str, to: &str) {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches(from).count(), 1, "`{from}` must occur once in {file}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

/// Breaks a copy with `edits`, runs every check, and returns the failures (asserting that the
/// only failing section is the one whose title contains `section`).
fn failures_after(edits: &[(&str, &str, &str)], section: &str) -> Vec<String> {
    let dir = copy_tree();
    for (file, from, to) in edits {
        edit(dir.path(), file, from, to);
    }
    let report = check_tree(dir.path()).unwrap();
    let failing: Vec<&str> =
        report.sections.iter().filter(|s| !s.failures.is_empty()).map(|s| s.title).collect();
    assert!(!failing.is_empty(), "the broken copy passed every check");
    assert!(
        failing.iter().all(|t| t.contains(section)),
        "failing sections {failing:?}, expected only `{section}`"
    );
    report.failures().into_iter().map(String::from).collect()
}

fn assert_named(failures: &[String], needles: &[&str]) {
    assert!(
        failures.iter().any(|f| needles.iter().all(|n| f.contains(n))),
        "no failure names all of {needles:?}: {failures:#?}"
    );
}

const PLAN: &str = "coreml-bridge/Sources/CoreMLBridge/Plan.swift";
const PREDICT: &str = "coreml-bridge/Sources/CoreMLBridge/Predict.swift";
const SUPPORT: &str = "coreml-bridge/Sources/CoreMLBridge/Support.swift";
const HEADER: &str = "coreml-bridge/include/coreml_bridge.h";
const TYPES: &str = "crates/coreml-sys/src/types.rs";
const LOADER: &str = "crates/coreml-sys/src/loader.rs";

#[test]
fn the_real_tree_passes_every_check() {
    let report = check_tree(&workspace_root()).unwrap();
    assert!(report.failures().is_empty(), "{:#?}", report.failures());
    // every section really checked something
    for s in &report.sections {
        assert!(s.checked > 0, "section `{}` checked nothing", s.title);
    }
}

#[test]
fn a_swift_syntax_error_fails_naming_file_and_line() {
    let f = failures_after(
        &[(PLAN, "    visit(f.block)\n", "    visit(f.block\n")],
        "Swift sources parse",
    );
    assert_named(&f, &["Plan.swift:"]);
}

#[test]
fn a_swift_parameter_of_another_width_fails() {
    let f = failures_after(
        &[(PLAN, "    _ capacity: UInt32, _ outTotal", "    _ capacity: UInt64, _ outTotal")],
        "@_cdecl signatures",
    );
    assert_named(&f, &["cmb_model_compute_plan", "parameter 4", "u64", "u32"]);
}

#[test]
fn a_swift_parameter_of_another_signedness_fails() {
    let f = failures_after(
        &[(
            PLAN,
            "_ handle: OpaquePointer?, _ timeoutMs: UInt32,",
            "_ handle: OpaquePointer?, _ timeoutMs: Int32,",
        )],
        "@_cdecl signatures",
    );
    assert_named(&f, &["cmb_model_compute_plan", "parameter 2", "i32"]);
}

#[test]
fn a_swift_pointer_that_lost_its_const_fails() {
    let f = failures_after(
        &[(
            PREDICT,
            "_ inputs: UnsafePointer<cmb_tensor>?",
            "_ inputs: UnsafeMutablePointer<cmb_tensor>?",
        )],
        "@_cdecl signatures",
    );
    assert_named(&f, &["cmb_model_predict", "parameter 2", "*mut cmb_tensor", "*const cmb_tensor"]);
}

#[test]
fn a_missing_cdecl_fails_naming_the_symbol() {
    let f = failures_after(
        &[(PREDICT, "@_cdecl(\"cmb_model_cancel\")", "@_cdecl(\"cmb_model_stop\")")],
        "same symbols",
    );
    assert_named(&f, &["cmb_model_cancel", "no Swift function"]);
    assert_named(&f, &["cmb_model_stop", "does not declare it"]);
}

#[test]
fn a_header_change_not_mirrored_in_swift_and_rust_fails_on_both() {
    let f = failures_after(
        &[(
            HEADER,
            "uint32_t capacity, uint32_t *out_total",
            "uint64_t capacity, uint32_t *out_total",
        )],
        "match the header",
    );
    assert_named(&f, &["Plan.swift", "cmb_model_compute_plan", "parameter 4", "u64"]);
    assert_named(&f, &["ComputePlanFn", "parameter 4", "u64"]);
}

#[test]
fn a_rust_fn_type_drift_fails() {
    let f = failures_after(
        &[(
            TYPES,
            "pub type ComputeDevicesFn = unsafe extern \"C\" fn(*mut u32,",
            "pub type ComputeDevicesFn = unsafe extern \"C\" fn(*mut i32,",
        )],
        "coreml-sys fn types",
    );
    assert_named(&f, &["ComputeDevicesFn", "cmb_compute_devices", "*mut i32", "*mut u32"]);
}

#[test]
fn a_rust_symbol_resolved_under_another_name_fails() {
    let f =
        failures_after(&[(LOADER, "\"cmb_model_cancel\"", "\"cmb_model_abort\"")], "same symbols");
    assert_named(&f, &["cmb_model_cancel", "never resolves it"]);
}

#[test]
fn a_constant_drift_fails_naming_it() {
    let f = failures_after(
        &[(TYPES, "pub const CMB_ERR_TIMEOUT: i32 = 10;", "pub const CMB_ERR_TIMEOUT: i32 = 11;")],
        "constants",
    );
    assert_named(&f, &["CMB_ERR_TIMEOUT", "10", "11"]);
}

#[test]
fn a_swift_use_of_an_undefined_constant_fails() {
    let f = failures_after(
        &[(PREDICT, "fail(CMB_ERR_CANCELLED,", "fail(CMB_ERR_ABORTED,")],
        "constants",
    );
    assert_named(&f, &["CMB_ERR_ABORTED"]);
}

#[test]
fn a_struct_field_drift_fails_naming_the_field() {
    let f = failures_after(
        &[(
            TYPES,
            "    /// Outputs: bytes written by the bridge.\n    pub bytes_written: u64,",
            "    /// Outputs: bytes written by the bridge.\n    pub bytes_written: u32,",
        )],
        "struct fields",
    );
    assert_named(&f, &["CmbTensor", "bytes_written: u32", "bytes_written: u64"]);
}

#[test]
fn a_header_layout_change_fails_the_layout_asserts() {
    // One field made wider in both the header and the Rust mirror: the fields agree, but the
    // size and offsets pinned in coreml-sys no longer match the header's layout.
    let f = failures_after(
        &[
            (
                HEADER,
                "    uint32_t rank;                  /* number of valid entries in shape and strides */",
                "    uint64_t rank;                  /* number of valid entries in shape and strides */",
            ),
            (
                TYPES,
                "    /// Valid entries in `shape` and `strides`.\n    pub rank: u32,",
                "    /// Valid entries in `shape` and `strides`.\n    pub rank: u64,",
            ),
        ],
        "struct layout",
    );
    assert_named(&f, &["size_of `cmb_tensor` == 168", "176"]);
}

#[test]
fn a_public_signature_with_an_internal_type_fails() {
    let f = failures_after(
        &[(SUPPORT, "public typealias ErrOut =", "typealias ErrOut =")],
        "public declarations",
    );
    assert_named(&f, &["public function `cmbOsBuild`", "internal type `ErrOut`"]);
}

#[test]
fn a_stored_compute_plan_without_availability_fails() {
    let f = failures_after(
        &[(
            PLAN,
            "/// Why a plan could not be flattened",
            "final class PlanSlot {\n    var result: Result<MLComputePlan, Error>? = nil\n}\n\n/// Why a plan could not be flattened",
        )],
        "newer APIs",
    );
    assert_named(&f, &["Plan.swift", "MLComputePlan", "macOS 14.4", "outside any"]);
}

#[test]
fn an_async_prediction_under_a_too_old_guard_fails() {
    let f = failures_after(
        &[(
            PREDICT,
            "@available(macOS 14.0, iOS 17.0, *)\nfunc predictAsync",
            "@available(macOS 13.0, iOS 16.0, *)\nfunc predictAsync",
        )],
        "newer APIs",
    );
    assert_named(
        &f,
        &["Predict.swift", "MLModel.prediction(from:options:) async", "guard for macOS 13.0"],
    );
}

#[test]
fn calling_an_available_function_without_a_guard_fails() {
    let f = failures_after(
        &[(
            PREDICT,
            "        if #available(macOS 14.0, iOS 17.0, *) {\n            result = try predictAsync(b, provider)",
            "        if true {\n            result = try predictAsync(b, provider)",
        )],
        "newer APIs",
    );
    assert_named(&f, &["Predict.swift", "predictAsync", "macOS 14.0"]);
}

#[test]
fn an_entry_point_outside_guarded_fails() {
    let f = failures_after(
        &[(
            PREDICT,
            "public func cmbModelCancel(_ handle: OpaquePointer?, _ err: ErrOut) -> Int32 {\n    guarded(err, CMB_ERR_INTERNAL) {",
            "public func cmbModelCancel(_ handle: OpaquePointer?, _ err: ErrOut) -> Int32 {\n    run(err, CMB_ERR_INTERNAL) {",
        )],
        "entry point",
    );
    assert_named(&f, &["cmb_model_cancel", "guarded(...)"]);
}
