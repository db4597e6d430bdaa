// Entry.swift - the exported C entry points of coreml_bridge.h (other than predict and the
// compute plan). Each one runs inside guarded(): autorelease pool, errors to status + message.
import CoreML
import CoreMLBridgeC
import Foundation

@_cdecl("cmb_abi_version")
public func cmbAbiVersion() -> UInt32 {
    UInt32(CMB_ABI_VERSION)
}

@_cdecl("cmb_string_free")
public func cmbStringFree(_ s: UnsafeMutablePointer<CChar>?) {
    free(s)
}

@_cdecl("cmb_os_build")
public func cmbOsBuild(_ out: ErrOut, _ err: ErrOut) -> Int32 {
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
    _ outPath: ErrOut, _ err: ErrOut
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
        let configuration = MLModelConfiguration()
        configuration.computeUnits = try computeUnits(units)
        let model: MLModel
        do {
            model = try MLModel(contentsOf: url, configuration: configuration)
        } catch {
            throw fail(CMB_ERR_LOAD, "cannot load \(url.path): \(describeError(error))")
        }
        let box = ModelBox(model: model, url: url, configuration: configuration)
        out.pointee = OpaquePointer(Unmanaged.passRetained(box).toOpaque())
    }
}

@_cdecl("cmb_model_free")
public func cmbModelFree(_ handle: OpaquePointer?) {
    guard let handle = handle else { return }
    autoreleasepool {
        Unmanaged<ModelBox>.fromOpaque(UnsafeRawPointer(handle)).release()
    }
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
        out.pointee = try describe(list[Int(index)])
    }
}

func describe(_ f: MLFeatureDescription) throws -> cmb_feature_desc {
    var d = cmb_feature_desc()
    try withUnsafeMutableBytes(of: &d.name) { try writeName(f.name, into: $0, truncate: false) }
    d.dtype = -1
    d.image_format = -1
    switch f.type {
    case .multiArray:
        d.kind = CMB_FEATURE_MULTIARRAY
        if let c = f.multiArrayConstraint {
            d.dtype = dtypeCode(c.dataType)
            let shape = c.shape.map { $0.intValue }
            guard shape.count <= Int(CMB_MAX_RANK) else {
                throw fail(CMB_ERR_UNSUPPORTED, "feature `\(f.name)` has rank \(shape.count)")
            }
            d.rank = UInt32(shape.count)
            withUnsafeMutableBytes(of: &d.shape) { writeInt64s(shape, into: $0) }
            d.flexible = c.shapeConstraint.type == .unspecified ? 0 : 1
        }
    case .image:
        d.kind = CMB_FEATURE_IMAGE
        d.dtype = CMB_DTYPE_U8
        if let c = f.imageConstraint {
            let format = c.pixelFormatType
            let channels: Int
            if format == kCVPixelFormatType_OneComponent8 {
                d.image_format = CMB_IMAGE_GRAY
                channels = 1
            } else if format == kCVPixelFormatType_32BGRA || format == kCVPixelFormatType_32ARGB {
                d.image_format = CMB_IMAGE_RGB
                channels = 3
            } else {
                channels = 3  // image_format stays -1: a format the bridge cannot fill
            }
            d.image_width = Int64(c.pixelsWide)
            d.image_height = Int64(c.pixelsHigh)
            d.image_pixel_format = UInt32(format)
            d.rank = 3
            withUnsafeMutableBytes(of: &d.shape) {
                writeInt64s([c.pixelsHigh, c.pixelsWide, channels], into: $0)
            }
        }
    default:
        d.kind = CMB_FEATURE_OTHER
    }
    return d
}
