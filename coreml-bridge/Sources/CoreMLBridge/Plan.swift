// Plan.swift - cmb_model_compute_plan: MLComputePlan (macOS 14.4 / iOS 17.4), flattened over
// every function and nested block; loaded once per handle and cached in the box.
import CoreML
import CoreMLBridgeC
import Foundation

@_cdecl("cmb_model_compute_plan")
public func cmbModelComputePlan(
    _ handle: OpaquePointer?, _ ops: UnsafeMutablePointer<cmb_plan_op>?, _ capacity: UInt32,
    _ outTotal: UnsafeMutablePointer<UInt32>?, _ err: ErrOut
) -> Int32 {
    guarded(err, CMB_ERR_INTERNAL) {
        let b = try box(handle)
        guard let outTotal = outTotal else { throw fail(CMB_ERR_INVALID_ARGUMENT, "NULL out pointer") }
        guard #available(macOS 14.4, iOS 17.4, *) else {
            throw fail(CMB_ERR_UNSUPPORTED, "MLComputePlan needs macOS 14.4 / iOS 17.4")
        }
        let plan: [cmb_plan_op]
        if let cached = b.plan {
            plan = cached
        } else {
            plan = try loadPlan(b.url, b.configuration)
            b.plan = plan
        }
        outTotal.pointee = UInt32(plan.count)
        if let ops = ops {
            for i in 0..<min(Int(capacity), plan.count) { ops[i] = plan[i] }
        }
    }
}

/// Holds the async result for the waiting (non-Swift-concurrency) caller thread.
private final class PlanSlot: @unchecked Sendable {
    var result: Result<MLComputePlan, Error>? = nil
}

@available(macOS 14.4, iOS 17.4, *)
func loadPlan(_ url: URL, _ configuration: MLModelConfiguration) throws -> [cmb_plan_op] {
    let slot = PlanSlot()
    let done = DispatchSemaphore(value: 0)
    // Callers are plain threads (never a Swift concurrency executor), so waiting is safe.
    Task.detached {
        do {
            slot.result = .success(try await MLComputePlan.load(contentsOf: url, configuration: configuration))
        } catch {
            slot.result = .failure(error)
        }
        done.signal()
    }
    done.wait()
    guard let result = slot.result else { throw fail(CMB_ERR_INTERNAL, "compute plan task ended without a result") }
    let computePlan: MLComputePlan
    do {
        computePlan = try result.get()
    } catch {
        throw fail(CMB_ERR_INTERNAL, "cannot load the compute plan: \(describeError(error))")
    }
    guard case let .program(program) = computePlan.modelStructure else {
        throw fail(CMB_ERR_UNSUPPORTED, "the model is not an ML Program; Core ML gives no per-op plan")
    }
    var entries: [cmb_plan_op] = []
    func visit(_ block: MLModelStructure.Program.Block) {
        for operation in block.operations {
            var entry = cmb_plan_op()
            withUnsafeMutableBytes(of: &entry.op_name) {
                _ = try? writeName(operation.operatorName, into: $0, truncate: true)
            }
            if let usage = computePlan.deviceUsage(for: operation) {
                entry.preferred_device = deviceCode(usage.preferred)
                entry.supported_devices = usage.supported.reduce(UInt32(0)) { $0 | UInt32(deviceCode($1)) }
            }
            entry.estimated_cost = computePlan.estimatedCost(of: operation)?.weight ?? -1
            entries.append(entry)
            operation.blocks.forEach(visit)
        }
    }
    for name in program.functions.keys.sorted() {
        if let function = program.functions[name] { visit(function.block) }
    }
    return entries
}
