// swift-tools-version:5.9
// The Core ML bridge: a dynamic library implementing include/coreml_bridge.h with @_cdecl.
// Build with `cargo xtask build-bridge` (runs `swift build -c release` and copies the dylib to
// target/coreml-bridge/, where crates/coreml-sys looks for it).
import PackageDescription

let package = Package(
    name: "CoreMLBridge",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "CoreMLBridge", type: .dynamic, targets: ["CoreMLBridge"]),
    ],
    targets: [
        // The C contract (a symlink to include/coreml_bridge.h) and a tiny Objective-C helper
        // that turns an Objective-C exception into a status instead of letting it unwind.
        .target(name: "CoreMLBridgeC", path: "Sources/CoreMLBridgeC"),
        .target(
            name: "CoreMLBridge",
            dependencies: ["CoreMLBridgeC"],
            path: "Sources/CoreMLBridge",
            linkerSettings: [
                .linkedFramework("CoreML"),
                .linkedFramework("CoreVideo"),
                .linkedFramework("Foundation"),
            ]
        ),
    ]
)
