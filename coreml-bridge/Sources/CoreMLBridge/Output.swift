// Output.swift - copying one prediction output into the caller's dense buffer: multi-arrays
// (reading the array's strides, widening f16/float64 to f32 on request) and images (u8
// [height, width, channels] out of the CVPixelBuffer). An output too big for its buffer gets
// its shape written and bytes_written 0, and the caller is told to size the buffer and rerun.
import CoreML
import CoreMLBridgeC
import CoreVideo
import Foundation

/// Copies one output. Returns nil when done, or a message when the buffer is too small (the
/// descriptor then holds the output's rank and shape, bytes_written 0).
func copyOutput(_ result: MLFeatureProvider, into slot: UnsafeMutablePointer<cmb_tensor>) throws -> String? {
    let name = try tensorName(slot.pointee)
    guard let value = result.featureValue(for: name) else {
        throw fail(CMB_ERR_OUTPUT, "the model produced no output `\(name)`")
    }
    if let array = value.multiArrayValue { return try copyArray(array, name, slot) }
    if let image = value.imageBufferValue { return try copyImage(image, name, slot) }
    throw fail(CMB_ERR_OUTPUT, "output `\(name)` is neither a multi-array nor an image")
}

/// Writes rank, shape and dense strides; returns the element count.
private func writeShape(_ shape: [Int], _ slot: UnsafeMutablePointer<cmb_tensor>) -> Int {
    slot.pointee.rank = UInt32(shape.count)
    var dense = [Int](repeating: 1, count: shape.count)
    for d in stride(from: shape.count - 2, through: 0, by: -1) { dense[d] = dense[d + 1] * shape[d + 1] }
    withUnsafeMutableBytes(of: &slot.pointee.shape) { writeInt64s(shape, into: $0) }
    withUnsafeMutableBytes(of: &slot.pointee.strides) { writeInt64s(dense, into: $0) }
    slot.pointee.bytes_written = 0
    return shape.reduce(1, *)
}

private func tooSmall(_ name: String, _ shape: [Int], _ need: Int, _ have: UInt64) -> String {
    "output `\(name)` of shape \(shape) needs \(need) bytes; the buffer holds \(have)"
}

private func copyArray(_ array: MLMultiArray, _ name: String, _ slot: UnsafeMutablePointer<cmb_tensor>) throws -> String? {
    let shape = array.shape.map { $0.intValue }
    let strides = array.strides.map { $0.intValue }
    guard shape.count <= Int(CMB_MAX_RANK) else { throw fail(CMB_ERR_OUTPUT, "output `\(name)` has rank \(shape.count)") }
    let want = slot.pointee.dtype
    let size = elementSize(want)
    let count = writeShape(shape, slot)
    guard UInt64(count * size) <= slot.pointee.bytes else {
        return tooSmall(name, shape, count * size, slot.pointee.bytes)
    }
    guard let dst = slot.pointee.data else { throw fail(CMB_ERR_INVALID_ARGUMENT, "output `\(name)`: NULL data") }
    let have = array.dataType
    let src = array.dataPointer
    let offset = { (i: [Int]) -> Int in zip(i, strides).reduce(0) { $0 + $1.0 * $1.1 } }
    var flat = 0
    switch (have, want) {
    case (.float32, CMB_DTYPE_F32), (.int32, CMB_DTYPE_I32):
        forEachIndex(shape) { i in
            (dst + flat * 4).copyMemory(from: src + offset(i) * 4, byteCount: 4)
            flat += 1
        }
    case (.float16, CMB_DTYPE_F16):
        forEachIndex(shape) { i in
            (dst + flat * 2).copyMemory(from: src + offset(i) * 2, byteCount: 2)
            flat += 1
        }
    case (.float16, CMB_DTYPE_F32):
        let s = src.assumingMemoryBound(to: UInt16.self)
        let d = dst.assumingMemoryBound(to: Float.self)
        forEachIndex(shape) { i in
            d[flat] = halfToFloat(s[offset(i)])
            flat += 1
        }
    case (.double, CMB_DTYPE_F32):
        let s = src.assumingMemoryBound(to: Double.self)
        let d = dst.assumingMemoryBound(to: Float.self)
        forEachIndex(shape) { i in
            d[flat] = Float(s[offset(i)])
            flat += 1
        }
    default:
        throw fail(CMB_ERR_OUTPUT, "output `\(name)` has element type \(have.rawValue), not deliverable as dtype code \(want)")
    }
    slot.pointee.bytes_written = UInt64(count * size)
    return nil
}

/// Image outputs: u8 [height, width, 3] in R, G, B order for 32BGRA / 32ARGB buffers, or
/// [height, width, 1] for OneComponent8. Other (planar, float) formats are refused.
private func copyImage(_ buffer: CVPixelBuffer, _ name: String, _ slot: UnsafeMutablePointer<cmb_tensor>) throws -> String? {
    let format = CVPixelBufferGetPixelFormatType(buffer)
    guard !CVPixelBufferIsPlanar(buffer), let layout = imageLayout(format) else {
        throw fail(CMB_ERR_OUTPUT, "image output `\(name)` has pixel format \(format), which the bridge cannot read")
    }
    guard slot.pointee.dtype == CMB_DTYPE_U8 else {
        throw fail(CMB_ERR_OUTPUT, "image output `\(name)` is delivered as u8 (dtype code \(CMB_DTYPE_U8)), not code \(slot.pointee.dtype)")
    }
    let width = CVPixelBufferGetWidth(buffer), height = CVPixelBufferGetHeight(buffer)
    let shape = [height, width, layout.channels]
    let count = writeShape(shape, slot)
    guard UInt64(count) <= slot.pointee.bytes else {
        return tooSmall(name, shape, count, slot.pointee.bytes)
    }
    guard let dst = slot.pointee.data?.assumingMemoryBound(to: UInt8.self) else {
        throw fail(CMB_ERR_INVALID_ARGUMENT, "output `\(name)`: NULL data")
    }
    guard CVPixelBufferLockBaseAddress(buffer, .readOnly) == kCVReturnSuccess else {
        throw fail(CMB_ERR_INTERNAL, "cannot lock the pixel buffer of output `\(name)`")
    }
    defer { CVPixelBufferUnlockBaseAddress(buffer, .readOnly) }
    guard let base = CVPixelBufferGetBaseAddress(buffer) else {
        throw fail(CMB_ERR_INTERNAL, "the pixel buffer of output `\(name)` has no base address")
    }
    let rowBytes = CVPixelBufferGetBytesPerRow(buffer)
    let src = base.assumingMemoryBound(to: UInt8.self)
    // Byte offsets of R, G, B inside one 4-byte pixel.
    let rgb: (Int, Int, Int) = format == kCVPixelFormatType_32BGRA ? (2, 1, 0) : (1, 2, 3)
    for y in 0..<height {
        let row = src + y * rowBytes
        let out = dst + y * width * layout.channels
        for x in 0..<width {
            if layout.channels == 1 {
                out[x] = row[x]
            } else {
                let p = row + 4 * x
                out[3 * x] = p[rgb.0]
                out[3 * x + 1] = p[rgb.1]
                out[3 * x + 2] = p[rgb.2]
            }
        }
    }
    slot.pointee.bytes_written = UInt64(count)
    return nil
}
