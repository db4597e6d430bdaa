// Predict.swift - cmb_model_predict and cmb_model_cancel: inputs as MLMultiArrays over caller
// memory (or CVPixelBuffers for image features), the async prediction on macOS 14+ (cancellable)
// or the synchronous one on macOS 13; outputs are copied out by Output.swift.
import CoreML
import CoreMLBridgeC
import CoreVideo
import Foundation

@_cdecl("cmb_model_predict")
public func cmbModelPredict(
    _ handle: OpaquePointer?, _ inputs: UnsafePointer<cmb_tensor>?, _ nInputs: UInt32,
    _ outputs: UnsafeMutablePointer<cmb_tensor>?, _ nOutputs: UInt32, _ err: ErrOut
) -> Int32 {
    guarded(err, CMB_ERR_PREDICT) {
        let b = try box(handle)
        guard nInputs == 0 || inputs != nil, nOutputs == 0 || outputs != nil else {
            throw fail(CMB_ERR_INVALID_ARGUMENT, "NULL tensor array")
        }
        b.beginPrediction()
        defer { b.endPrediction() }
        var features: [String: Any] = [:]
        for i in 0..<Int(nInputs) {
            guard let t = inputs?[i] else { continue }
            let (name, value) = try inputValue(t, b)
            features[name] = value
        }
        let provider = try MLDictionaryFeatureProvider(dictionary: features)
        let result: MLFeatureProvider
        if #available(macOS 14.0, iOS 17.0, *) {
            result = try predictAsync(b, provider)
        } else {
            do {
                result = try b.model.prediction(from: provider)
            } catch {
                throw fail(CMB_ERR_PREDICT, "prediction failed: \(describeError(error))")
            }
        }
        var tooSmall: [String] = []
        for j in 0..<Int(nOutputs) {
            guard let slot = outputs?.advanced(by: j) else { continue }
            if let need = try copyOutput(result, into: slot) { tooSmall.append(need) }
        }
        guard tooSmall.isEmpty else {
            throw fail(CMB_ERR_OUTPUT, tooSmall.joined(separator: "; ")
                + " (shape written to the descriptor: size the buffer from it and run again)")
        }
        // Core ML has finished with the caller's input memory: the prediction returned.
    }
}

@_cdecl("cmb_model_cancel")
public func cmbModelCancel(_ handle: OpaquePointer?, _ err: ErrOut) -> Int32 {
    guarded(err, CMB_ERR_INTERNAL) {
        let b = try box(handle)
        guard #available(macOS 14.0, iOS 17.0, *) else {
            throw fail(CMB_ERR_UNSUPPORTED,
                       "a synchronous Core ML prediction cannot be stopped before macOS 14 / iOS 17")
        }
        b.requestCancel()
    }
}

/// Runs the async prediction in a detached task and blocks this (C caller's) thread until it
/// has finished, so the caller's input memory is never read after cmb_model_predict returns.
/// cmb_model_cancel cancels the task; Core ML then stops at its next cancellation check.
@available(macOS 14.0, iOS 17.0, *)
func predictAsync(_ b: ModelBox, _ provider: MLFeatureProvider) throws -> MLFeatureProvider {
    let input = Handoff(value: provider)
    let slot = AsyncSlot<Handoff<MLFeatureProvider>>()
    let task = Task.detached(priority: .userInitiated) {
        do {
            let output = try await b.model.prediction(from: input.value, options: MLPredictionOptions())
            slot.finish(.success(Handoff(value: output)))
        } catch {
            slot.finish(.failure(error))
        }
    }
    b.attach(task)
    guard let result = slot.wait() else {
        throw fail(CMB_ERR_INTERNAL, "the prediction task ended without a result")
    }
    do {
        return try result.get().value
    } catch {
        if error is CancellationError || task.isCancelled {
            throw fail(CMB_ERR_CANCELLED, "the prediction was cancelled (cmb_model_cancel)")
        }
        throw fail(CMB_ERR_PREDICT, "prediction failed: \(describeError(error))")
    }
}

func tensorName(_ t: cmb_tensor) throws -> String {
    guard let p = t.name else { throw fail(CMB_ERR_INVALID_ARGUMENT, "tensor without a name") }
    return String(cString: p)
}

func inputValue(_ t: cmb_tensor, _ b: ModelBox) throws -> (String, MLFeatureValue) {
    let name = try tensorName(t)
    guard let desc = b.inputs.first(where: { $0.name == name }) else {
        throw fail(CMB_ERR_INVALID_ARGUMENT, "the model has no input `\(name)`")
    }
    guard t.rank <= UInt32(CMB_MAX_RANK), let data = t.data else {
        throw fail(CMB_ERR_INVALID_ARGUMENT, "input `\(name)`: bad rank or NULL data")
    }
    let rank = Int(t.rank)
    let shape = withUnsafeBytes(of: t.shape) { readInt64s($0, count: rank) }
    let strides = withUnsafeBytes(of: t.strides) { readInt64s($0, count: rank) }
    // Largest element offset + 1 must fit the caller's bytes.
    let span = zip(shape, strides).reduce(1) { $0 + ($1.0 - 1) * $1.1 }
    guard shape.allSatisfy({ $0 > 0 }), strides.allSatisfy({ $0 >= 0 }),
          UInt64(span * elementSize(t.dtype)) <= t.bytes else {
        throw fail(CMB_ERR_INVALID_ARGUMENT, "input `\(name)`: shape/strides exceed \(t.bytes) bytes")
    }
    switch desc.type {
    case .multiArray:
        guard let c = desc.multiArrayConstraint else {
            throw fail(CMB_ERR_INVALID_ARGUMENT, "input `\(name)` has no multi-array constraint")
        }
        let array = try inputArray(name, t, data, shape, strides, c.dataType)
        return (name, MLFeatureValue(multiArray: array))
    case .image:
        guard let c = desc.imageConstraint else {
            throw fail(CMB_ERR_INVALID_ARGUMENT, "input `\(name)` has no image constraint")
        }
        let buffer = try pixelBuffer(name, t, data, shape, strides, c)
        return (name, MLFeatureValue(pixelBuffer: buffer))
    default:
        throw fail(CMB_ERR_UNSUPPORTED, "input `\(name)` is neither a multi-array nor an image")
    }
}

func inputArray(
    _ name: String, _ t: cmb_tensor, _ data: UnsafeMutableRawPointer,
    _ shape: [Int], _ strides: [Int], _ declared: MLMultiArrayDataType
) throws -> MLMultiArray {
    let nsShape = shape.map { NSNumber(value: $0) }
    if declared == .double && t.dtype == CMB_DTYPE_F32 {
        // Float64 inputs: one converting copy (the only input that is not borrowed).
        let array = try MLMultiArray(shape: nsShape, dataType: .double)
        let dst = array.dataPointer.assumingMemoryBound(to: Double.self)
        let src = data.assumingMemoryBound(to: Float.self)
        let dense = array.strides.map { $0.intValue }
        forEachIndex(shape) { index in
            let s = zip(index, strides).reduce(0) { $0 + $1.0 * $1.1 }
            let d = zip(index, dense).reduce(0) { $0 + $1.0 * $1.1 }
            dst[d] = Double(src[s])
        }
        return array
    }
    let type: MLMultiArrayDataType
    switch t.dtype {
    case CMB_DTYPE_F32: type = .float32
    case CMB_DTYPE_F16: type = .float16
    case CMB_DTYPE_I32: type = .int32
    default: throw fail(CMB_ERR_UNSUPPORTED, "input `\(name)`: dtype code \(t.dtype) cannot cross")
    }
    guard type == declared else {
        throw fail(CMB_ERR_INVALID_ARGUMENT, "input `\(name)`: the model declares another element type")
    }
    // Borrowed: the caller keeps `data` alive until this call returns; nothing to free.
    return try MLMultiArray(
        dataPointer: data, shape: nsShape, dataType: type,
        strides: strides.map { NSNumber(value: $0) }, deallocator: { _ in })
}

/// Calls body with every index of `shape`, last dimension fastest.
func forEachIndex(_ shape: [Int], _ body: ([Int]) -> Void) {
    let count = shape.reduce(1, *)
    guard count > 0 else { return }
    var index = [Int](repeating: 0, count: shape.count)
    for _ in 0..<count {
        body(index)
        var d = shape.count - 1
        while d >= 0 {
            index[d] += 1
            if index[d] < shape[d] { break }
            index[d] = 0
            d -= 1
        }
    }
}

/// Builds the pixel buffer the image constraint asks for from u8 [height, width, channels].
func pixelBuffer(
    _ name: String, _ t: cmb_tensor, _ data: UnsafeMutableRawPointer,
    _ shape: [Int], _ strides: [Int], _ c: MLImageConstraint
) throws -> CVPixelBuffer {
    let width = c.pixelsWide, height = c.pixelsHigh, format = c.pixelFormatType
    let gray = format == kCVPixelFormatType_OneComponent8
    let channels = gray ? 1 : 3
    guard t.dtype == CMB_DTYPE_U8, shape == [height, width, channels] else {
        throw fail(CMB_ERR_INVALID_ARGUMENT,
                   "image input `\(name)` must be u8 [\(height), \(width), \(channels)], got \(shape)")
    }
    var made: CVPixelBuffer?
    let status = CVPixelBufferCreate(kCFAllocatorDefault, width, height, format, nil, &made)
    guard status == kCVReturnSuccess, let buffer = made else {
        throw fail(CMB_ERR_INTERNAL, "CVPixelBufferCreate failed for `\(name)` (status \(status))")
    }
    CVPixelBufferLockBaseAddress(buffer, [])
    defer { CVPixelBufferUnlockBaseAddress(buffer, []) }
    guard let base = CVPixelBufferGetBaseAddress(buffer) else {
        throw fail(CMB_ERR_INTERNAL, "pixel buffer for `\(name)` has no base address")
    }
    let rowBytes = CVPixelBufferGetBytesPerRow(buffer)
    let src = data.assumingMemoryBound(to: UInt8.self)
    let dst = base.assumingMemoryBound(to: UInt8.self)
    for y in 0..<height {
        for x in 0..<width {
            let p = src + y * strides[0] + x * strides[1]
            let row = dst + y * rowBytes
            if gray {
                row[x] = p[0]
            } else if format == kCVPixelFormatType_32BGRA {
                row[4 * x] = p[2 * strides[2]]
                row[4 * x + 1] = p[strides[2]]
                row[4 * x + 2] = p[0]
                row[4 * x + 3] = 255
            } else if format == kCVPixelFormatType_32ARGB {
                row[4 * x] = 255
                row[4 * x + 1] = p[0]
                row[4 * x + 2] = p[strides[2]]
                row[4 * x + 3] = p[2 * strides[2]]
            } else {
                throw fail(CMB_ERR_UNSUPPORTED, "image input `\(name)`: pixel format \(format) not supported")
            }
        }
    }
    return buffer
}

