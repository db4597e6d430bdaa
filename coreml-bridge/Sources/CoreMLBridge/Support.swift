// Support.swift - error plumbing, the model box behind a cmb_model handle, and small helpers
// for the C structs' fixed-size arrays. Everything here runs inside an exported entry point.
import CoreML
import CoreMLBridgeC
import Foundation

/// `char **err` (and other `char **` outputs) as Swift sees them. Public because the public
/// `@_cdecl` entry points use them in their signatures.
public typealias ErrOut = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
/// A `char **` output other than the error message (a path, the OS build).
public typealias StringOut = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?

/// A failure with the status it maps to.
struct BridgeFailure: Error {
    let status: Int32
    let message: String
}

func fail(_ status: Int32, _ message: String) -> BridgeFailure {
    BridgeFailure(status: status, message: message)
}

func describeError(_ error: Error) -> String {
    let ns = error as NSError
    return "\(ns.localizedDescription) (\(ns.domain) \(ns.code))"
}

/// Runs one entry point's body inside an autorelease pool. A thrown BridgeFailure keeps its
/// status; any other Swift error gets `fallback`; an Objective-C exception becomes
/// CMB_ERR_INTERNAL. On failure *err receives a strdup'ed message (freed by cmb_string_free).
func guarded(_ err: ErrOut, _ fallback: Int32, _ body: () throws -> Void) -> Int32 {
    var status = CMB_OK
    var message: String? = nil
    var exceptionText: UnsafeMutablePointer<CChar>? = nil
    let raised = cmb_internal_catch({
        autoreleasepool {
            do {
                try body()
            } catch let failure as BridgeFailure {
                status = failure.status
                message = failure.message
            } catch {
                status = fallback
                message = describeError(error)
            }
        }
    }, &exceptionText)
    if raised != 0 {
        status = CMB_ERR_INTERNAL
        message = exceptionText.map { String(cString: $0) } ?? "Objective-C exception"
        free(exceptionText)
    }
    if status != CMB_OK {
        err?.pointee = strdup(message ?? "unknown error")
    }
    return status
}

/// What a cmb_model handle points at (retained by Unmanaged until cmb_model_free).
///
/// `@unchecked Sendable`: the detached tasks of the async prediction and the compute plan use it
/// while the C caller's thread waits. Its `let`s never change; the mutable state (cached plan,
/// prediction in flight) is behind `lock`. `model` runs one prediction at a time per handle
/// (the contract), and Core ML documents its async prediction as thread-safe.
final class ModelBox: @unchecked Sendable {
    let model: MLModel
    let url: URL
    let computeUnits: MLComputeUnits
    let inputs: [MLFeatureDescription]
    let outputs: [MLFeatureDescription]
    private let lock = NSLock()
    private var plan: [cmb_plan_op]? = nil
    private var inCall = false
    private var cancelRequested = false
    private var running: Task<Void, Never>? = nil

    init(model: MLModel, url: URL, computeUnits: MLComputeUnits) {
        self.model = model
        self.url = url
        self.computeUnits = computeUnits
        let d = model.modelDescription
        inputs = d.inputDescriptionsByName.sorted { $0.key < $1.key }.map { $0.value }
        outputs = d.outputDescriptionsByName.sorted { $0.key < $1.key }.map { $0.value }
    }

    var cachedPlan: [cmb_plan_op]? {
        lock.lock()
        defer { lock.unlock() }
        return plan
    }

    func cachePlan(_ entries: [cmb_plan_op]) {
        lock.lock()
        plan = entries
        lock.unlock()
    }

    /// Marks the start of a cmb_model_predict call (cancel requests count from here).
    func beginPrediction() {
        lock.lock()
        inCall = true
        cancelRequested = false
        running = nil
        lock.unlock()
    }

    /// Records the task running the prediction; cancels it at once when cmb_model_cancel
    /// arrived earlier in this call.
    func attach(_ task: Task<Void, Never>) {
        lock.lock()
        running = task
        let cancelNow = cancelRequested
        lock.unlock()
        if cancelNow { task.cancel() }
    }

    /// Marks the end of the call; returns whether a cancel was requested during it.
    @discardableResult
    func endPrediction() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        inCall = false
        running = nil
        return cancelRequested
    }

    /// cmb_model_cancel: cancels the prediction in flight, if any; a no-op otherwise.
    func requestCancel() {
        lock.lock()
        guard inCall else {
            lock.unlock()
            return
        }
        cancelRequested = true
        let task = running
        lock.unlock()
        task?.cancel()
    }
}

/// Hands a value that is not `Sendable` (an Objective-C object, a raw pointer) to one detached
/// task while the creating thread blocks until that task has finished with it. Nothing else
/// touches the value meanwhile, which is what makes the unchecked conformance true.
struct Handoff<T>: @unchecked Sendable {
    let value: T
}

/// The result of one detached task, for a C caller's thread that blocks until it arrives.
/// Callers are plain threads (Rust), never a Swift concurrency executor, so blocking cannot
/// starve the cooperative pool.
final class AsyncSlot<T>: @unchecked Sendable {
    private let lock = NSLock()
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<T, Error>? = nil

    func finish(_ value: Result<T, Error>) {
        lock.lock()
        result = value
        lock.unlock()
        done.signal()
    }

    /// Waits until the task finished (nil only if it ended without a result).
    func wait() -> Result<T, Error>? {
        done.wait()
        return take()
    }

    /// Waits at most `milliseconds`; nil when the time ran out.
    func wait(milliseconds: UInt32) -> Result<T, Error>? {
        if done.wait(timeout: .now() + .milliseconds(Int(milliseconds))) == .timedOut { return nil }
        return take()
    }

    private func take() -> Result<T, Error>? {
        lock.lock()
        defer { lock.unlock() }
        return result
    }
}

func box(_ handle: OpaquePointer?) throws -> ModelBox {
    guard let handle = handle else { throw fail(CMB_ERR_INVALID_ARGUMENT, "NULL model handle") }
    return Unmanaged<ModelBox>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
}

/// Writes `text` NUL-terminated into a fixed char array; fails when it does not fit.
func writeName(_ text: String, into raw: UnsafeMutableRawBufferPointer, truncate: Bool) throws {
    var bytes = Array(text.utf8)
    if bytes.count >= raw.count {
        guard truncate else {
            throw fail(CMB_ERR_INVALID_ARGUMENT, "name `\(text)` is longer than \(raw.count - 1) bytes")
        }
        bytes = Array(bytes.prefix(raw.count - 1))
    }
    raw.copyBytes(from: bytes)
    raw[bytes.count] = 0
}

func writeInt64s(_ values: [Int], into raw: UnsafeMutableRawBufferPointer) {
    let p = raw.bindMemory(to: Int64.self)
    for i in 0..<p.count { p[i] = i < values.count ? Int64(values[i]) : 0 }
}

func readInt64s(_ raw: UnsafeRawBufferPointer, count: Int) -> [Int] {
    let p = raw.bindMemory(to: Int64.self)
    return (0..<min(count, p.count)).map { Int(p[$0]) }
}

func computeUnits(_ code: Int32) throws -> MLComputeUnits {
    switch code {
    case CMB_COMPUTE_ALL: return .all
    case CMB_COMPUTE_CPU_ONLY: return .cpuOnly
    case CMB_COMPUTE_CPU_AND_GPU: return .cpuAndGPU
    case CMB_COMPUTE_CPU_AND_NEURAL_ENGINE: return .cpuAndNeuralEngine
    default: throw fail(CMB_ERR_INVALID_ARGUMENT, "unknown compute units code \(code)")
    }
}

/// The ABI dtype code a multi-array type crosses as (float64 crosses as f32, converted).
func dtypeCode(_ t: MLMultiArrayDataType) -> Int32 {
    switch t {
    case .float32: return CMB_DTYPE_F32
    case .float16: return CMB_DTYPE_F16
    case .int32: return CMB_DTYPE_I32
    case .double: return CMB_DTYPE_F32
    default: return -1
    }
}

func elementSize(_ code: Int32) -> Int {
    switch code {
    case CMB_DTYPE_F32, CMB_DTYPE_I32: return 4
    case CMB_DTYPE_F16: return 2
    case CMB_DTYPE_I64: return 8
    default: return 1
    }
}

/// IEEE half to float, exact (no rounding needed when widening). Avoids Swift's Float16,
/// which is unavailable on Intel Macs.
func halfToFloat(_ h: UInt16) -> Float {
    let sign: UInt32 = UInt32(h & 0x8000) << 16
    let exponent = Int((h >> 10) & 0x1f)
    let mantissa = UInt32(h & 0x3ff)
    if exponent == 0 {
        let magnitude = Float(mantissa) * Float(bitPattern: 0x3380_0000)  // 2^-24
        return sign != 0 ? -magnitude : magnitude
    }
    if exponent == 31 {
        return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13))
    }
    return Float(bitPattern: sign | (UInt32(exponent + 112) << 23) | (mantissa << 13))
}
