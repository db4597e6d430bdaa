//! Lints for the defect classes a review found in the Swift bridge: a public declaration whose
//! signature names a non-public type; an API newer than the package's deployment target used
//! outside an `@available` / `#available` guard; an entry point whose body does not run inside
//! `guarded(...)` (autorelease pool, errors and Objective-C exceptions to a status) or at least
//! an `autoreleasepool`.

use std::collections::BTreeMap;

use super::Section;
use super::model::{Model, Version};

/// How a tracked API shows up in the parse tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// A type name (`MLComputePlan`), written as a type or as the head of `Type.member`.
    Type,
    /// A member after a dot (`.availableComputeDevices`).
    Member,
    /// A member called under `await` (the async overload of a name that also has a sync one).
    AwaitedCall,
}

/// One row of the availability table.
struct Api {
    name: &'static str,
    how: Use,
    macos: Version,
    what: &'static str,
}

/// Core ML and CoreVideo API availability on macOS, from REFERENCE.md's table and the SDK's
/// CoreML.swiftinterface / headers (docs/ffi-contract.md lists the sources).
const AVAILABILITY: &[Api] = &[
    Api { name: "MLComputePlan", how: Use::Type, macos: [14, 4, 0], what: "MLComputePlan" },
    Api { name: "MLModelStructure", how: Use::Type, macos: [14, 4, 0], what: "MLModelStructure" },
    Api {
        name: "deviceUsage",
        how: Use::Member,
        macos: [14, 4, 0],
        what: "MLComputePlan.deviceUsage(for:)",
    },
    Api {
        name: "estimatedCost",
        how: Use::Member,
        macos: [14, 4, 0],
        what: "MLComputePlan.estimatedCost(of:)",
    },
    Api {
        name: "MLOptimizationHints",
        how: Use::Type,
        macos: [14, 4, 0],
        what: "MLOptimizationHints",
    },
    Api {
        name: "optimizationHints",
        how: Use::Member,
        macos: [14, 4, 0],
        what: "MLModelConfiguration.optimizationHints",
    },
    Api {
        name: "specializationStrategy",
        how: Use::Member,
        macos: [15, 0, 0],
        what: "MLOptimizationHints.specializationStrategy",
    },
    Api { name: "MLComputeDevice", how: Use::Type, macos: [14, 0, 0], what: "MLComputeDevice" },
    Api {
        name: "availableComputeDevices",
        how: Use::Member,
        macos: [14, 0, 0],
        what: "MLModel.availableComputeDevices",
    },
    Api {
        name: "prediction",
        how: Use::AwaitedCall,
        macos: [14, 0, 0],
        what: "MLModel.prediction(from:options:) async",
    },
    Api {
        name: "compileModel",
        how: Use::AwaitedCall,
        macos: [13, 0, 0],
        what: "MLModel.compileModel(at:) async",
    },
    Api {
        name: "cpuAndNeuralEngine",
        how: Use::Member,
        macos: [13, 0, 0],
        what: "MLComputeUnits.cpuAndNeuralEngine",
    },
    Api { name: "MLModelAsset", how: Use::Type, macos: [13, 0, 0], what: "MLModelAsset" },
    Api {
        name: "functionName",
        how: Use::Member,
        macos: [15, 0, 0],
        what: "MLModelConfiguration.functionName",
    },
    Api { name: "MLState", how: Use::Type, macos: [15, 0, 0], what: "MLState" },
    Api { name: "makeState", how: Use::Member, macos: [15, 0, 0], what: "MLModel.makeState()" },
    Api { name: "MLTensor", how: Use::Type, macos: [15, 0, 0], what: "MLTensor" },
    Api {
        name: "MLSendableFeatureValue",
        how: Use::Type,
        macos: [15, 0, 0],
        what: "MLSendableFeatureValue",
    },
    Api { name: "MLShapedArray", how: Use::Type, macos: [12, 0, 0], what: "MLShapedArray" },
    Api {
        name: "float16",
        how: Use::Member,
        macos: [12, 0, 0],
        what: "MLMultiArrayDataType.float16",
    },
    Api {
        name: "outputBackings",
        how: Use::Member,
        macos: [11, 0, 0],
        what: "MLPredictionOptions.outputBackings",
    },
    Api {
        name: "CVPixelBufferCreate",
        how: Use::Type,
        macos: [10, 4, 0],
        what: "CVPixelBufferCreate",
    },
    Api {
        name: "CVPixelBufferLockBaseAddress",
        how: Use::Type,
        macos: [10, 4, 0],
        what: "CVPixelBufferLockBaseAddress",
    },
    Api {
        name: "CVPixelBufferIsPlanar",
        how: Use::Type,
        macos: [10, 4, 0],
        what: "CVPixelBufferIsPlanar",
    },
];

fn show(v: Version) -> String {
    if v[2] == 0 { format!("{}.{}", v[0], v[1]) } else { format!("{}.{}.{}", v[0], v[1], v[2]) }
}

/// A public declaration (top level, or a member of a public type) whose signature names a type
/// this module declares with less than public access: "cannot be declared public because its
/// parameter uses an internal type".
pub(crate) fn public_types(model: &Model, s: &mut Section) {
    let declared: BTreeMap<&str, &str> =
        model.swift.type_decls.iter().map(|t| (t.name.as_str(), t.visibility.as_str())).collect();
    for d in &model.swift.public_decls {
        for t in &d.types {
            if let Some(vis) = declared.get(t.as_str()) {
                s.check(*vis == "public", || {
                    let decl = model.swift.type_decls.iter().find(|x| &x.name == t);
                    let at = decl.map(|x| format!(" ({}:{})", x.file, x.line)).unwrap_or_default();
                    format!(
                        "{}:{} public {} `{}` uses the {vis} type `{t}`{at}: make `{t}` public or the {} non-public",
                        d.file, d.line, d.kind, d.name, d.kind
                    )
                });
            }
        }
    }
}

/// Every use of a tracked API (the table above, plus this module's own `@available`
/// declarations) sits where the deployment target or an enclosing guard covers its version.
pub(crate) fn availability(model: &Model, s: &mut Section) {
    let Some(target) = model.package.macos_deployment_target else {
        s.fail(format!(
            "{}: no `.macOS(.vN)` platform found; the deployment target is unknown",
            model.package.file
        ));
        return;
    };
    for u in &model.swift.api_uses {
        let tracked = AVAILABILITY.iter().find(|a| {
            a.name == u.name
                && match a.how {
                    Use::Type => u.kind == "type",
                    Use::Member => u.kind == "member",
                    Use::AwaitedCall => u.kind == "member" && u.awaited,
                }
        });
        let (need, what) = match tracked {
            Some(a) => (a.macos, a.what.to_string()),
            None => match model.swift.available_decls.iter().find(|d| d.name == u.name) {
                Some(d) if u.kind == "identifier" || u.kind == "type" => {
                    (d.macos, format!("{} (declared @available(macOS {}))", d.name, show(d.macos)))
                }
                _ => continue,
            },
        };
        let have = match u.guard {
            Some(g) if g > target => g,
            _ => target,
        };
        s.check(need <= have, || {
            format!(
                "{}:{} uses `{what}` (macOS {}) {}; the deployment target is macOS {}: wrap it in \
                 `if #available(macOS {}, *)` or mark the declaration `@available(macOS {}, *)`",
                u.file,
                u.line,
                show(need),
                match u.guard {
                    Some(g) => format!("under a guard for macOS {} only", show(g)),
                    None => "outside any @available/#available guard".to_string(),
                },
                show(target),
                show(need),
                show(need)
            )
        });
    }
}

/// Every `@_cdecl` body runs inside `guarded(...)` or `autoreleasepool`, so no Swift error or
/// Objective-C exception crosses the boundary and autoreleased objects never leak into the
/// caller's thread (which has no pool).
pub(crate) fn entry_points(model: &Model, s: &mut Section) {
    for c in &model.swift.cdecls {
        s.check(c.wrapped, || {
            format!(
                "{}:{} entry point `{}` does not run its body inside guarded(...) or autoreleasepool",
                c.file, c.line, c.symbol
            )
        });
    }
}
