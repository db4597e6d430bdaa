// Entry.swift - the exported C entry points of coreml_bridge.h (other than predict and the
// compute plan). Each one runs inside guarded(): autorelease pool, errors to status + message.
import CoreML
import CoreMLBridgeC
import CoreVideo
import Foundation

@_cdecl("cmb_abi_version")
public func cmbAbiVersion() -> UInt32 {
    autoreleasepool { UInt32(CMB_ABI_VERSION) }
}

@_cdecl("cmb_string_free")
public func cmbStringFree(_ s: UnsafeMutablePointer<CChar>?) {
    autoreleasepool { free(s) }
}

@_cdecl("cmb_os_build")
public func cmbOsBuild(_ out: StringOut, _ err: ErrOut) -> Int32 {
    guarded(err, CMB_ERR_INTERNAL) {
        guard let out = out else { throw fail(CMB_ERR_INVALID_ARGUMENT, "NULL out pointer") }
        #if os(macOS)
        let name = "macOS"
        #else
        let name = "iOS"
        #endif
        out.pointee = strdup("\(name) \(ProcessInfo.processInfo.operatingSystemVersionString)")
    }
}

@_cdecl("cmb_compute_devices")
public func cmbComputeDevices(_ outMask: UnsafeMutablePointer<UInt32>?, _ err: ErrOut) -> Int32 {
    guarded(err, CMB_ERR_INTERNAL) {
        guard let outMask = outMask else { throw fail(CMB_ERR_INVALID_ARGUMENT, "NULL out pointer") }
        guard #available(macOS 14.0, iOS 17.0, *) else {
            throw fail(CMB_ERR_UNSUPPORTED, "MLModel.availableComputeDevices needs macOS 14 / iOS 17")
        }
        var mask: UInt32 = 0
        for device in MLModel.availableComputeDevices {
            mask |= UInt32(deviceCode(device))
        }
        outMask.pointee = mask
    }
}

@available(macOS 14.0, iOS 17.0, *)
func deviceCode(_ device: MLComputeDevice) -> Int32 {
    switch device {
    case .cpu: return CMB_DEVICE_CPU
    case .gpu: return CMB_DEVICE_GPU
    case .neuralEngine: return CMB_DEVICE_NEURAL_ENGINE
    @unknown default: return 0
    }
}

@_cdecl("cmb_compile_model")
public func cmbCompileModel(
    _ modelPath: UnsafePointer<CChar>?, _ destDir: UnsafePointer<CChar>?,
    _ outPath: StringOut, _ err: ErrOut
) -> Int32 {
    guarded(err, CMB_ERR_COMPILE) {
        guard let modelPath = modelPath, let destDir = destDir, let outPath = outPath else {
            throw fail(CMB_ERR_INVALID_ARGUMENT, "NULL argument to cmb_compile_model")
        }
        let source = URL(fileURLWithPath: String(cString: modelPath))
        let dest = URL(fileURLWithPath: String(cString: destDir), isDirectory: true)
        // Compiles into a temporary folder Core ML chooses; we move it into dest_dir, and the
        // caller renames it into its cache atomically.
        let compiled: URL
        do {
            compiled = try MLModel.compileModel(at: source)
        } catch {
            throw fail(CMB_ERR_COMPILE, "cannot compile \(source.path): \(describeError(error))")
        }
        let target = dest.appendingPathComponent(compiled.lastPathComponent)
        do {
            try FileManager.default.moveItem(at: compiled, to: target)
        } catch {
            throw fail(CMB_ERR_IO, "cannot move \(compiled.path) to \(target.path): \(describeError(error))")
        }
        outPath.pointee = strdup(target.path)
    }
}

@_cdecl("cmb_model_load")
public func cmbModelLoad(
    _ compiledPath: UnsafePointer<CChar>?, _ units: Int32,
    _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: ErrOut
) -> Int32 {
    guarded(err, CMB_ERR_LOAD) {
        guard let compiledPath = compiledPath, let out = out else {
            throw fail(CMB_ERR_INVALID_ARGUMENT, "NULL argument to cmb_model_load")
        }
        let url = URL(fileURLWithPath: String(cString: compiledPath), isDirectory: true)
        let unitsValue = try computeUnits(units)
        let configuration = MLModelConfiguration()
        configuration.computeUnits = unitsValue
        let model: MLModel
        do {
            model = try MLModel(contentsOf: url, configuration: configuration)
        } catch {
            throw fail(CMB_ERR_LOAD, "cannot load \(url.path): \(describeError(error))")
        }
        let box = ModelBox(model: model, url: url, computeUnits: unitsValue)
        out.pointee = OpaquePointer(Unmanaged.passRetained(box).toOpaque())
    }
}

@_cdecl("cmb_model_free")
public func cmbModelFree(_ handle: OpaquePointer?) {
    guard let handle = handle else { return }
    // No status to report: an Objective-C exception while Core ML tears the model down is
    // stopped here and dropped rather than unwinding into the caller.
    var exceptionText: UnsafeMutablePointer<CChar>? = nil
    _ = cmb_internal_catch({
        autoreleasepool {
            Unmanaged<ModelBox>.fromOpaque(UnsafeRawPointer(handle)).release()
        }
    }, &exceptionText)
    free(exceptionText)
}

@_cdecl("cmb_model_feature_count")
public func cmbModelFeatureCount(
    _ handle: OpaquePointer?, _ io: Int32, _ outCount: UnsafeMutablePointer<UInt32>?, _ err: ErrOut
) -> Int32 {
    guarded(err, CMB_ERR_INTERNAL) {
        let b = try box(handle)
        guard let outCount = outCount else { throw fail(CMB_ERR_INVALID_ARGUMENT, "NULL out pointer") }
        switch io {
        case CMB_IO_INPUT: outCount.pointee = UInt32(b.inputs.count)
        case CMB_IO_OUTPUT: outCount.pointee = UInt32(b.outputs.count)
        default: throw fail(CMB_ERR_INVALID_ARGUMENT, "io must be CMB_IO_INPUT or CMB_IO_OUTPUT")
        }
    }
}

@_cdecl("cmb_model_feature_describe")
public func cmbModelFeatureDescribe(
    _ handle: OpaquePointer?, _ io: Int32, _ index: UInt32,
    _ out: UnsafeMutablePointer<cmb_feature_desc>?, _ err: ErrOut
) -> Int32 {
    guarded(err, CMB_ERR_INTERNAL) {
        let b = try box(handle)
        guard let out = out else { throw fail(CMB_ERR_INVALID_ARGUMENT, "NULL out pointer") }
        let list: [MLFeatureDescription]
        switch io {
        case CMB_IO_INPUT: list = b.inputs
        case CMB_IO_OUTPUT: list = b.outputs
        default: throw fail(CMB_ERR_INVALID_ARGUMENT, "io must be CMB_IO_INPUT or CMB_IO_OUTPUT")
        }
        guard Int(index) < list.count else {
            throw fail(CMB_ERR_INVALID_ARGUMENT, "feature index \(index) out of range (\(list.count))")
        }
        out.pointee = try describe(list[Int(index)], output: io == CMB_IO_OUTPUT)
    }
}

/// Fills a description. An output the bridge cannot deliver becomes CMB_FEATURE_OTHER (the
/// caller leaves it out of the schema); an input keeps its kind with dtype / image_format -1 so
/// the caller can say why the model cannot be fed (header, ABI 2).
func describe(_ f: MLFeatureDescription, output: Bool) throws -> cmb_feature_desc {
    var d = cmb_feature_desc()
    try withUnsafeMutableBytes(of: &d.name) { try writeName(f.name, into: $0, truncate: false) }
    d.dtype = -1
    d.image_format = -1
    switch f.type {
    case .multiArray:
        d.kind = CMB_FEATURE_MULTIARRAY
        guard let c = f.multiArrayConstraint else { break }
        d.dtype = dtypeCode(c.dataType)
        let shape = c.shape.map { $0.intValue }
        if shape.count > Int(CMB_MAX_RANK) {
            if output { return other(d) }
            throw fail(CMB_ERR_UNSUPPORTED, "input `\(f.name)` has rank \(shape.count), above \(CMB_MAX_RANK)")
        }
        if output && d.dtype < 0 { return other(d) }
        d.rank = UInt32(shape.count)
        withUnsafeMutableBytes(of: &d.shape) { writeInt64s(shape, into: $0) }
        // An empty declared shape means "any shape": flexible, sized from the result.
        d.flexible = c.shapeConstraint.type == .unspecified && !shape.isEmpty ? 0 : 1
    case .image:
        d.kind = CMB_FEATURE_IMAGE
        d.dtype = CMB_DTYPE_U8
        guard let c = f.imageConstraint else { break }
        let format = c.pixelFormatType
        guard let layout = imageLayout(format) else {
            if output { return other(d) }
            d.image_pixel_format = UInt32(format)
            break  // image_format stays -1: a pixel format the bridge cannot fill
        }
        d.image_format = layout.code
        d.image_width = Int64(c.pixelsWide)
        d.image_height = Int64(c.pixelsHigh)
        d.image_pixel_format = UInt32(format)
        d.rank = 3
        withUnsafeMutableBytes(of: &d.shape) {
            writeInt64s([c.pixelsHigh, c.pixelsWide, layout.channels], into: $0)
        }
        d.flexible = c.sizeConstraint.type == .unspecified ? 0 : 1
    default:
        d.kind = CMB_FEATURE_OTHER
    }
    return d
}

/// The same description marked as a kind the bridge cannot pass (name kept).
private func other(_ d: cmb_feature_desc) -> cmb_feature_desc {
    var o = cmb_feature_desc()
    o.name = d.name
    o.kind = CMB_FEATURE_OTHER
    o.dtype = -1
    o.image_format = -1
    return o
}

/// The ABI layout and channel count for a CoreVideo pixel format the bridge can fill and read.
func imageLayout(_ format: OSType) -> (code: Int32, channels: Int)? {
    switch format {
    case kCVPixelFormatType_OneComponent8: return (CMB_IMAGE_GRAY, 1)
    case kCVPixelFormatType_32BGRA, kCVPixelFormatType_32ARGB: return (CMB_IMAGE_RGB, 3)
    default: return nil
    }
}
