// Plan.swift - cmb_model_compute_plan: MLComputePlan (macOS 14.4 / iOS 17.4) for the function
// the model runs, flattened over nested blocks; built once per handle (bounded wait) and cached.
import CoreML
import CoreMLBridgeC
import Foundation

@_cdecl("cmb_model_compute_plan")
public func cmbModelComputePlan(
    _ handle: OpaquePointer?, _ timeoutMs: UInt32, _ ops: UnsafeMutablePointer<cmb_plan_op>?,
    _ capacity: UInt32, _ outTotal: UnsafeMutablePointer<UInt32>?, _ err: ErrOut
) -> Int32 {
    guarded(err, CMB_ERR_INTERNAL) {
        let b = try box(handle)
        guard let outTotal = outTotal else { throw fail(CMB_ERR_INVALID_ARGUMENT, "NULL out pointer") }
        guard timeoutMs > 0 else { throw fail(CMB_ERR_INVALID_ARGUMENT, "timeout_ms must be above 0") }
        guard #available(macOS 14.4, iOS 17.4, *) else {
            throw fail(CMB_ERR_UNSUPPORTED, "MLComputePlan needs macOS 14.4 / iOS 17.4")
        }
        let plan: [cmb_plan_op]
        if let cached = b.cachedPlan {
            plan = cached
        } else {
            plan = try loadPlan(b, timeoutMs: timeoutMs)
            b.cachePlan(plan)
        }
        outTotal.pointee = UInt32(plan.count)
        if let ops = ops {
            for i in 0..<min(Int(capacity), plan.count) { ops[i] = plan[i] }
        }
    }
}

/// Why a plan could not be flattened (thrown inside the task, mapped to a status outside).
private struct PlanRefusal: Error {
    let status: Int32
    let message: String
}

/// Loads the plan in a detached task and waits at most `timeoutMs`. Only Sendable values
/// cross into the task (URL, compute units, input names); the non-Sendable MLComputePlan and
/// MLModelConfiguration live and die inside it, and only plain C structs come back.
@available(macOS 14.4, iOS 17.4, *)
func loadPlan(_ b: ModelBox, timeoutMs: UInt32) throws -> [cmb_plan_op] {
    let url = b.url
    let units = b.computeUnits
    let inputNames = Set(b.inputs.map { $0.name })
    var functionName: String? = nil
    if #available(macOS 15.0, iOS 18.0, *) {
        functionName = b.model.configuration.functionName
    }
    let wanted = functionName
    let slot = AsyncSlot<[cmb_plan_op]>()
    let task = Task.detached(priority: .userInitiated) {
        do {
            let configuration = MLModelConfiguration()
            configuration.computeUnits = units
            let plan = try await MLComputePlan.load(contentsOf: url, configuration: configuration)
            try Task.checkCancellation()
            let entries = try flatten(plan, function: wanted, inputNames: inputNames)
            slot.finish(.success(entries))
        } catch {
            slot.finish(.failure(error))
        }
    }
    guard let result = slot.wait(milliseconds: timeoutMs) else {
        task.cancel()
        throw fail(CMB_ERR_TIMEOUT, "the compute plan was not ready within \(timeoutMs) ms; nothing cached, try again later")
    }
    do {
        return try result.get()
    } catch let refusal as PlanRefusal {
        throw fail(refusal.status, refusal.message)
    } catch {
        throw fail(CMB_ERR_INTERNAL, "cannot load the compute plan: \(describeError(error))")
    }
}

/// The function that runs: the configured one; else the only one; else the one whose inputs
/// are the model's inputs (preferring "main" when several share them).
@available(macOS 14.4, iOS 17.4, *)
func runningFunction(
    _ program: MLModelStructure.Program, function: String?, inputNames: Set<String>
) throws -> MLModelStructure.Program.Function {
    let names = program.functions.keys.sorted()
    if let name = function {
        guard let f = program.functions[name] else {
            throw PlanRefusal(status: CMB_ERR_UNSUPPORTED,
                              message: "the plan has no function `\(name)` (it has \(names))")
        }
        return f
    }
    if names.count == 1, let only = program.functions[names[0]] { return only }
    let matching = names.filter { name in
        Set(program.functions[name]?.inputs.map { $0.name } ?? []) == inputNames
    }
    if matching.count == 1, let f = program.functions[matching[0]] { return f }
    if matching.contains("main"), let f = program.functions["main"] { return f }
    throw PlanRefusal(status: CMB_ERR_UNSUPPORTED,
                      message: "cannot tell which of the functions \(names) the model runs; no plan rather than a guess")
}

@available(macOS 14.4, iOS 17.4, *)
func flatten(_ plan: MLComputePlan, function: String?, inputNames: Set<String>) throws -> [cmb_plan_op] {
    guard case let .program(program) = plan.modelStructure else {
        throw PlanRefusal(status: CMB_ERR_UNSUPPORTED,
                          message: "the model is not an ML Program; Core ML gives no per-op plan")
    }
    let f = try runningFunction(program, function: function, inputNames: inputNames)
    var entries: [cmb_plan_op] = []
    func visit(_ block: MLModelStructure.Program.Block) {
        for operation in block.operations {
            var entry = cmb_plan_op()
            withUnsafeMutableBytes(of: &entry.op_name) {
                _ = try? writeName(operation.operatorName, into: $0, truncate: true)
            }
            if let usage = plan.deviceUsage(for: operation) {
                entry.preferred_device = deviceCode(usage.preferred)
                entry.supported_devices = usage.supported.reduce(UInt32(0)) { $0 | UInt32(deviceCode($1)) }
            }
            entry.estimated_cost = plan.estimatedCost(of: operation)?.weight ?? -1
            entries.append(entry)
            operation.blocks.forEach(visit)
        }
    }
    visit(f.block)
    return entries
}
