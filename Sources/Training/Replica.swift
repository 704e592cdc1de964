import Data
import Distributed
import Foundation
import Transformer

/// One rank's model replica with its optimizer moments and gradient reducer: forward and backward
/// over the rank's micro-batches, the gradient all-reduce, the checks and the update of one global
/// step. The trainer and the benchmark run the same step through it.
final class Replica<T: TrainingTask> {
    let config: TrainingConfig
    let comm: Communicator
    let task: T
    let model: T.Model
    let optimizer: Optimizer
    /// Made at the first step: an evaluation-only replica has no gradients to reduce.
    private(set) lazy var reducer: GradientReducer = {
        let bucketElements = max(1, Int(config.allreduceBucketMB * 1_048_576 / 4))
        let table = model.table
        var boundaries = table.entries.compactMap { table.gradientRange(of: $0)?.lowerBound }
        boundaries.append(table.trainableCount)
        return GradientReducer(
            communicator: comm, gradients: model.gradients, boundaries: boundaries, bucketElements: bucketElements)
    }()
    /// Adam's first and second moments, one flat buffer laid out as `[m, v]` (empty when evaluating only).
    let moments: UnsafeMutableBufferPointer<Float>
    /// Set in the debug mode.
    var monitor: OpMonitor?
    /// When set, the step's time is added to it by op class (`swiftbert bench`).
    var profile: OpProfile? {
        didSet { model.profile = profile }
    }

    /// `evaluationOnly`: a replica that never steps, without optimizer moments and, where the task
    /// allows, with an inference model (`swiftbert evaluate`, bert-base shape, 128 texts of 128
    /// tokens: 16.6 s and 1.3 GB resident against 25.7 s and 4.7 GB with a training replica).
    init(config: TrainingConfig, task: T, communicator: Communicator, microBatchSize: Int, evaluationOnly: Bool = false) {
        self.config = config
        self.task = task
        comm = communicator
        model = task.makeModel(microBatchSize: microBatchSize, inferenceOnly: evaluationOnly)
        let table = model.table
        optimizer = Optimizer(
            settings: config.optimizer,
            tensors: table.entries.compactMap { entry in table.gradientRange(of: entry).map { ($0, entry.decays) } })
        moments = .allocate(capacity: evaluationOnly ? 0 : 2 * table.trainableCount)
        moments.initialize(repeating: 0)
    }

    deinit { moments.deallocate() }

    /// Refuses a model or micro-batch that cannot fit in this machine's memory, before anything is
    /// allocated.
    static func checkMemory(_ floor: MemoryFloor, microBatchSize: Int, sequenceLength: Int) throws {
        let parameters = Double(floor.parameters)
        let needed = floor.bytesPerParameter * parameters + floor.activationBytes
        let available = Double(ProcessInfo.processInfo.physicalMemory)
        guard needed > available else { return }
        func gigabytes(_ bytes: Double) -> String { String(format: "%.1f GB", bytes / 1e9) }
        let modelAloneFits = floor.bytesPerParameter * parameters < available / 2
        throw ConfigError(
            source: "config", keyPath: modelAloneFits ? "batch.micro_batch_size" : "model",
            message: "a rank needs at least \(gigabytes(needed)) (\(floor.parameters.formatted()) parameters at "
                + "\(Int(floor.bytesPerParameter)) bytes each, plus the activations of a micro-batch of \(microBatchSize) x "
                + "\(sequenceLength)) but this machine has \(gigabytes(available)); use a smaller model or batch.micro_batch_size")
    }

    var m: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(rebasing: moments[0..<model.table.trainableCount]) }
    var v: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(rebasing: moments[model.table.trainableCount...]) }
    /// The trainable parameters, laid out like the gradients.
    var trainableParameters: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(rebasing: model.parameters[model.table.trainableRange])
    }

    /// Turns on the debug mode's per-op checks and timings.
    func enableDebugChecks() {
        let monitor = OpMonitor(table: model.table)
        self.monitor = monitor
        model.forwardProbe = { op, layer, output in monitor.forward(op, layer, output) }
    }

    struct StepResult {
        var sums: T.Sums
        var gradNorm: Double
        var learningRate: Double
        var commWait: Double
        var skipped: Bool
        var nonfiniteRanks: String
        /// Tokens of the step over all ranks (`TaskBatch.throughputTokens`).
        var tokens: Int
    }

    /// Forward and backward over this rank's micro-batches of global step `step` (0-based, keys
    /// dropout), gradient reduction, checks and the update. `globalExamples` is the step's batch
    /// size over all ranks; `appliedUpdates` the updates made so far (Adam's bias correction);
    /// `injectNaN` poisons this rank's gradients (fault-injection tests).
    func step(
        _ step: Int, batches: [T.Batch], globalExamples: Int, learningRate: Double, appliedUpdates: Int,
        injectNaN: Bool = false
    ) throws -> StepResult {
        precondition(moments.count == 2 * model.table.trainableCount, "an evaluation-only replica does not step")
        let normalizers = try task.normalizers(batches, globalExamples: globalExamples, averagedOver: 1, comm: comm)

        let zeroStart = OpProfile.now()
        model.zeroGradients()
        profile?.add(.other, seconds: OpProfile.now() - zeroStart)
        reducer.beginStep()
        // Reductions started during backward use the gradient buffer and involve the other ranks: they
        // complete before this function returns, also when it throws.
        var reductionFinished = comm.size == 1
        defer { if !reductionFinished { _ = try? reducer.finish() } }
        var sums = T.Sums()
        let reduce = comm.size > 1 ? reducer : nil
        for (index, batch) in batches.enumerated() {
            let isLast = index == batches.count - 1
            var onGradientsReady: ((Range<Int>) -> Void)? = isLast ? reduce.map { reducer in { reducer.markReady($0) } } : nil
            if let monitor {
                let next = onGradientsReady
                let gradients = model.gradients
                onGradientsReady = { range in
                    monitor.gradients(range, gradients)
                    next?(range)
                }
                monitor.restart()
            }
            let options = PassOptions(
                training: true, computeGradients: true, dropoutSeed: config.seed, dropoutStep: UInt64(step),
                onGradientsReady: onGradientsReady)
            sums += task.pass(model, batch, normalizers, options).sums
        }
        if let failure = monitor?.failure {
            throw TrainingError("step \(step + 1), rank \(comm.rank): \(failure) (debug mode)")
        }
        if injectNaN {
            model.gradients[0] = .nan
            var values = sums.values
            values[0] = .nan
            sums = T.Sums(values: values)
        }
        let locallyFinite = sums.isFinite
        // The sums, whether this rank's loss is finite, and the tokens: one all-reduce.
        var values = sums.values + [locallyFinite ? 0 : 1, Double(batches.reduce(0) { $0 + $1.throughputTokens })]
        var commWait = 0.0
        if comm.size > 1 {
            reductionFinished = true
            let start = OpProfile.now()
            commWait = try reducer.finish().waitSeconds
            try comm.allReduceSum(&values)
            profile?.add(.communication, seconds: OpProfile.now() - start)
        }
        let tokens = Int(values.removeLast())
        let nonfinite = values.removeLast()
        sums = T.Sums(values: values)
        var nonfiniteRanks = ""
        if nonfinite > 0 {
            let flags = try comm.allGather(Int64(locallyFinite ? 0 : 1))
            nonfiniteRanks = flags.indices.filter { flags[$0] != 0 }.map(String.init).joined(separator: ", ")
        }

        let optimizerStart = OpProfile.now()
        let statistics = Optimizer.gradientStatistics(UnsafeBufferPointer(model.gradients))
        let skipped = !statistics.isFinite || nonfinite > 0
        if !skipped {
            let scale = Optimizer.clipScale(norm: statistics.norm, maxNorm: config.optimizer.maxGradNorm)
            optimizer.step(
                parameters: trainableParameters, gradients: model.gradients, m: m, v: v,
                learningRate: learningRate, step: appliedUpdates + 1, gradientScale: scale)
        }
        profile?.add(.optimizer, seconds: OpProfile.now() - optimizerStart)
        if skipped && nonfiniteRanks.isEmpty { nonfiniteRanks = "unknown (gradients after the all-reduce)" }
        return StepResult(
            sums: sums, gradNorm: statistics.norm, learningRate: learningRate, commWait: commWait, skipped: skipped,
            nonfiniteRanks: nonfiniteRanks, tokens: tokens)
    }
}
