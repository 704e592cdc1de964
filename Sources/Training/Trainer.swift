import Crypto
import Data
import Distributed
import Foundation
import Kernels
import Transformer

/// Why a run stopped with an error that names the step and the rank involved.
public struct TrainingError: Error, LocalizedError, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// How a run starts: from scratch, or from a checkpoint.
public enum ResumeMode: Equatable, Sendable {
    /// Start from step 0 (a run directory with checkpoints is refused, to not mix two runs).
    case none
    /// The newest checkpoint whose manifest verifies; from scratch when there is none.
    case auto
    /// This checkpoint directory; refused unless it verifies.
    case path(String)
}

/// What the trainer writes and how: the parts of a run that are not in the configuration file.
public struct TrainingOptions: Sendable {
    public var runDirectory: String
    public var resume: ResumeMode = .auto
    /// Fault injection for tests: this rank's gradients become NaN at these steps.
    public var nanInjection: (rank: Int, steps: Set<Int>)?
    /// Stop after this many optimizer steps of this invocation (the schedule still spans
    /// `schedule.total_steps`); used to interrupt a run deterministically.
    public var stopAfterSteps: Int?
    /// Debug mode: check every op's output for NaN/Inf (naming op and layer) and time every op.
    public var debugChecks = false
    /// Fault injection for tests: this rank stops responding at this step.
    public var hangInjection: (rank: Int, step: Int)?
    /// Fault injection for tests: this rank alone fails at this step.
    public var errorInjection: (rank: Int, step: Int)?
    /// Called when this rank sees no progress for `watchdog_seconds` (the job should be aborted).
    public var onHang: (@Sendable (_ message: String) -> Void)?
    /// When set, each rank appends the global sample indices it trains on to `<path>.rank<r>`, one
    /// line per step (`step: i j k ...`): a record of what was seen, for audits and tests.
    public var sampleLog: String?

    /// A peft adapter directory loaded onto `init_from` at the start (`swiftbert evaluate` of an adapter).
    public var adapter: String?

    public init(runDirectory: String) { self.runDirectory = runDirectory }
}

/// The state a checkpoint records besides the weights and optimizer moments.
public struct TrainerState: Codable, Equatable, Sendable {
    /// Optimizer steps completed.
    public var step: Int
    public var consumedSamples: Int
    public var epoch: Int
    public var seed: UInt64
    public var learningRate: Double
    public var worldSize: Int
    public var globalBatchSize: Int
    public var configFingerprint: String
    public var dataFingerprint: String
    public var loss: Double?
    public var consecutiveNonfiniteSteps: Int
    public var skippedSteps: Int
    /// The best value of `task.metric_for_best_model` so far, the step it was reached at, and the
    /// evaluations since (for early stopping); nil without that setting.
    public var bestMetric: Double?
    public var bestStep: Int?
    public var evaluationsWithoutImprovement: Int?
    /// A parameter-efficient run's checkpoints hold the adapter alone: the SHA-256 of the frozen base
    /// model's weights (`init_from`), checked on resume.
    public var baseModelSHA256: String?

    enum CodingKeys: String, CodingKey {
        case step, epoch, seed
        case consumedSamples = "consumed_samples"
        case learningRate = "learning_rate"
        case worldSize = "world_size"
        case globalBatchSize = "global_batch_size"
        case configFingerprint = "config_fingerprint"
        case dataFingerprint = "data_fingerprint"
        case loss
        case consecutiveNonfiniteSteps = "consecutive_nonfinite_steps"
        case skippedSteps = "skipped_steps"
        case bestMetric = "best_metric"
        case bestStep = "best_step"
        case evaluationsWithoutImprovement = "evaluations_without_improvement"
        case baseModelSHA256 = "base_model_sha256"
    }
}

/// What a finished run reports.
public struct TrainingSummary: Sendable {
    public var startStep: Int
    public var finalStep: Int
    public var lastLoss: Double?
    public var skippedSteps: Int
    public var lastCheckpoint: String?
    /// The run ended early on SIGTERM/SIGINT, after a checkpoint.
    public var stoppedBySignal: Bool
}

/// Data-parallel training of one task on one rank of a job (see DESIGN.md, "One training step"):
/// the task `config.task` names, pre-training by default.
public final class Trainer {
    private let engineRun: () throws -> TrainingSummary

    /// Opens the data, checks that every rank agrees on configuration and data, and builds the model
    /// replica. A collective: every rank calls it. `log` receives rank 0's messages.
    public init(
        config: TrainingConfig, options: TrainingOptions, communicator: Communicator,
        log: @escaping (String) -> Void
    ) throws {
        let rankLog: (String) -> Void = communicator.rank == 0 ? log : { _ in }
        func engine<T: TrainingTask>(_ task: T) throws -> () throws -> TrainingSummary {
            let engine = try Engine(task: task, config: config, options: options, communicator: communicator, log: rankLog)
            return engine.run
        }
        engineRun = try engine(try config.task.make(config: config, communicator: communicator, log: rankLog))
    }

    /// Trains to `schedule.total_steps` (or `stopAfterSteps`), evaluating, logging and checkpointing
    /// on the way. A collective: every rank calls it.
    public func run() throws -> TrainingSummary { try engineRun() }

    /// The validation record of the model in `config.initFrom` (with its head, and `adapter` on it
    /// when given) on the task's validation file: the evaluation a training run makes, over every
    /// validation example. A collective: every rank calls it and gets the record.
    public static func evaluate(
        config: TrainingConfig, adapter: String? = nil, communicator: Communicator, log: @escaping (String) -> Void
    ) throws -> MetricsRecord {
        let rankLog: (String) -> Void = communicator.rank == 0 ? log : { _ in }
        var options = TrainingOptions(runDirectory: "")
        options.adapter = adapter
        func evaluate<T: TrainingTask>(_ task: T) throws -> MetricsRecord {
            let engine = try Engine(
                task: task, config: config, options: options, communicator: communicator,
                evaluationOnly: true, log: rankLog)
            _ = try engine.start(store: nil)
            return try engine.evaluate(step: 0, batches: Int.max)
        }
        return try evaluate(try config.task.make(config: config, communicator: communicator, log: rankLog))
    }
}

/// The loop every task shares, on one rank.
///
/// Every rank runs the same engine on its communicator: rank 0 initialises (or loads) the model and
/// broadcasts it, each rank computes its share of every global batch, gradients are summed in
/// buckets during backward, and rank 0 writes metrics and checkpoints.
final class Engine<T: TrainingTask> {
    let config: TrainingConfig
    let options: TrainingOptions
    let comm: Communicator
    let log: (String) -> Void

    let task: T
    let sampler: Sampler
    let layout: (microBatchSize: Int, accumulationSteps: Int)
    let replica: Replica<T>
    let schedule: LearningRateSchedule

    init(
        task: T, config: TrainingConfig, options: TrainingOptions, communicator: Communicator,
        evaluationOnly: Bool = false, log: @escaping (String) -> Void
    ) throws {
        self.task = task
        self.config = config
        self.options = options
        comm = communicator
        self.log = log
        // The same on every rank: reported once.
        layout = try communicator.collectively { try config.batchLayout(worldSize: communicator.size) }

        // Every rank must run the same configuration on the same data.
        try Engine.agree(
            comm, on: config.fingerprint + "/" + task.dataFingerprint, what: "configuration or data")

        sampler = Sampler(sampleCount: task.trainCount, globalBatchSize: config.batch.globalBatchSize, seed: config.seed)
        let sequences = layout.microBatchSize * task.sequencesPerExample
        try Replica<T>.checkMemory(task.memoryFloor(sequences: sequences), microBatchSize: sequences, sequenceLength: task.sequenceLength)
        replica = Replica(
            config: config, task: task, communicator: comm, microBatchSize: layout.microBatchSize,
            evaluationOnly: evaluationOnly)
        schedule = LearningRateSchedule(config: config)
        if options.debugChecks { replica.enableDebugChecks() }
    }

    var model: T.Model { replica.model }
    var m: UnsafeMutableBufferPointer<Float> { replica.m }
    var v: UnsafeMutableBufferPointer<Float> { replica.v }

    /// Fails on every rank, naming the ranks whose `value` differs from rank 0's.
    static func agree(_ comm: Communicator, on value: String, what: String) throws {
        let values = try comm.allGather(string: value)
        let differing = values.indices.filter { values[$0] != values[0] }
        if !differing.isEmpty {
            throw CollectiveError(
                "rank\(differing.count > 1 ? "s" : "") \(differing.map(String.init).joined(separator: ", ")) "
                    + "disagree\(differing.count > 1 ? "" : "s") with rank 0 on the \(what); every rank must be "
                    + "started with the same files")
        }
    }

    // MARK: - Start

    /// Initialises or restores the replica on every rank; returns the state to continue from.
    func start(store: CheckpointStore?) throws -> TrainerState {
        var state = TrainerState(
            step: 0, consumedSamples: 0, epoch: 0, seed: config.seed, learningRate: schedule.lr(step: 0),
            worldSize: comm.size, globalBatchSize: config.batch.globalBatchSize,
            configFingerprint: config.fingerprint, dataFingerprint: task.dataFingerprint, loss: nil,
            consecutiveNonfiniteSteps: 0, skippedSteps: 0)
        // Rank 0 decides and reads; the others receive. An error on rank 0 is sent as text so every
        // rank stops with the same message.
        var message = ""
        var resumedFrom = ""
        if comm.rank == 0 {
            do {
                if let checkpoint = try chooseCheckpoint(store: store) {
                    state = try restore(from: checkpoint)
                    resumedFrom = checkpoint
                } else if let initFrom = config.initFrom {
                    try task.checkInitFrom(initFrom)
                    let files = try PretrainedDirectory.weightFiles(in: initFrom)
                    var report = try model.loadWeights(from: files, initializationSeed: config.seed)
                    var origin = "\(initFrom)"
                    if let adapter = options.adapter {
                        try model.loadAdapter(directory: adapter)
                        // What the adapter holds was not left at its initialisation.
                        let loaded = Set(model.table.entries.filter(\.trainable).map(\.name))
                        report.initializedTensors.removeAll(where: loaded.contains)
                        origin += " with the adapter \(adapter)"
                    }
                    log("initialised from \(origin)" + (report.notice.map { ": \($0)" } ?? ""))
                    if config.peft.method != .none { state.baseModelSHA256 = try Engine.weightsDigest(files) }
                } else {
                    model.initializeParameters(seed: config.seed)
                }
            } catch {
                message = "\(error)"
            }
        }
        message = try comm.broadcast(string: message, root: 0)
        if !message.isEmpty { throw CollectiveError(message) }
        resumedFrom = try comm.broadcast(string: resumedFrom, root: 0)
        try comm.broadcast(model.parameters, root: 0)
        if !replica.moments.isEmpty { try comm.broadcast(replica.moments, root: 0) }
        let stateJSON = try comm.broadcast(
            string: String(decoding: try JSONEncoder().encode(state), as: UTF8.self), root: 0)
        state = try JSONDecoder().decode(TrainerState.self, from: Data(stateJSON.utf8))
        // One rank has nothing to agree with: hashing bert-base's 440 MB would cost 0.6 s of start-up.
        if comm.size > 1 {
            try Engine.agree(comm, on: Engine.checksum(model.parameters), what: "parameter checksum after broadcast")
        }
        if !resumedFrom.isEmpty {
            log("resumed from \(resumedFrom) at step \(state.step) (saved by \(state.worldSize) rank"
                + "\(state.worldSize == 1 ? "" : "s"), now \(comm.size))")
        }
        return state
    }

    static func checksum(_ buffer: UnsafeMutableBufferPointer<Float>) -> String {
        SHA256.hash(data: UnsafeRawBufferPointer(buffer)).map { String(format: "%02x", $0) }.joined()
    }

    // MARK: - The loop

    /// Where a run is: the trainer state and what the loop's phases share.
    struct Loop {
        var state: TrainerState
        let startStep: Int
        let lastStep: Int
        var window = Window()
        var lastCheckpoint: String?
        var checkpointedStep: Int
        /// The latest evaluation improved `task.metric_for_best_model`: checkpoint now and point `best` at it.
        var improved = false
        var stoppedBySignal = false
        var stoppedEarly = false

        var step: Int { state.step }
    }

    /// Trains to `schedule.total_steps` (or `stopAfterSteps`), evaluating, logging and checkpointing
    /// on the way. A collective: every rank calls it. Each step runs the phases in order: signal,
    /// train step, non-finite policy, log, evaluate, checkpoint.
    public func run() throws -> TrainingSummary {
        // What this run creates before its first step is removed if it cannot start (a bad init_from,
        // a refused resume): a failed start leaves no directories behind.
        let created = [options.runDirectory, options.runDirectory + "/checkpoints"].filter {
            comm.rank == 0 && !FileManager.default.fileExists(atPath: $0)
        }
        let store = comm.rank == 0
            ? try CheckpointStore(
                runDirectory: options.runDirectory, keepLast: config.checkpoint.keepLast,
                keepEvery: config.checkpoint.keepEvery)
            : nil
        for stale in store?.removeStaleTemporaries() ?? [] { log("removed an interrupted checkpoint write: \(stale)") }
        let watchdog = Watchdog(timeout: options.onHang == nil ? 0 : config.watchdogSeconds) { [options] message in
            options.onHang?(message)
        }
        defer { watchdog.stop() }
        let state: TrainerState
        do {
            state = try start(store: store)
        } catch {
            if let outermost = created.first { try? FileManager.default.removeItem(atPath: outermost) }
            throw error
        }
        let totalSteps = config.schedule.totalSteps
        var loop = Loop(
            state: state, startStep: state.step,
            lastStep: min(totalSteps, state.step + (options.stopAfterSteps ?? totalSteps)), checkpointedStep: state.step)
        if let bestStep = state.bestStep { store?.protectedStep = bestStep }

        let outputs = comm.rank == 0 ? try RunOutputs(config: config, runDirectory: options.runDirectory, startStep: loop.startStep) : nil
        defer { outputs?.close() }
        let table = model.table
        let trained = table.trainableCount == table.totalCount ? "\(table.totalCount.formatted()) parameters"
            : "\(table.trainableCount.formatted()) of \(table.totalCount.formatted()) parameters (\(config.peft.method.rawValue); "
                + String(format: "%.2f MB of gradients a step on the wire, %.2f%% of full fine-tuning)",
                         Double(4 * table.trainableCount) / 1e6, 100 * Double(table.trainableCount) / Double(table.totalCount))
        log("training \(trained) on \(comm.size) rank"
            + "\(comm.size == 1 ? "" : "s"): global batch \(config.batch.globalBatchSize) = \(comm.size) x "
            + "\(layout.accumulationSteps) x \(layout.microBatchSize), \(task.trainCount) training examples "
            + "(\(sampler.stepsPerEpoch) steps per epoch), steps \(loop.startStep)..<\(loop.lastStep) of \(totalSteps)")

        let prefetcher = Prefetcher<[T.Batch]>(count: max(0, loop.lastStep - loop.startStep), depth: 2) { [self, loop] index in
            try microBatches(step: loop.startStep + index)
        }
        defer { prefetcher.cancel() }
        let sampleLog = try openSampleLog()
        defer { try? sampleLog?.close() }

        while loop.step < loop.lastStep {
            if try signalPhase(&loop, store: store) { break }
            watchdog.beat("step \(loop.step + 1)")
            try injectFaults(step: loop.step + 1)
            guard let result = try stepPhase(&loop, prefetcher: prefetcher, sampleLog: sampleLog) else { break }
            try nonfinitePolicy(result, &loop)
            try logPhase(result, &loop, outputs: outputs)
            try evaluatePhase(&loop, outputs: outputs, store: store, watchdog: watchdog)
            try checkpointPhase(&loop, store: store, watchdog: watchdog)
            if loop.stoppedEarly { break }
        }
        outputs?.finish()
        if let monitor = replica.monitor, loop.step > loop.startStep { log(monitor.report(steps: loop.step - loop.startStep)) }
        return TrainingSummary(
            startStep: loop.startStep, finalStep: loop.state.step, lastLoss: loop.state.loss,
            skippedSteps: loop.state.skippedSteps, lastCheckpoint: loop.lastCheckpoint, stoppedBySignal: loop.stoppedBySignal)
    }

    /// Every rank learns of a signal any rank received, at the same step boundary; the run then
    /// checkpoints and stops. Returns whether to stop.
    func signalPhase(_ loop: inout Loop, store: CheckpointStore?) throws -> Bool {
        guard try comm.allReduceSum(Int64(StopSignal.requested ? 1 : 0)) > 0 else { return false }
        loop.stoppedBySignal = true
        log("stop requested by a signal: checkpointing at step \(loop.step), then exiting")
        if loop.step > loop.startStep && loop.checkpointedStep != loop.step {
            loop.lastCheckpoint = try checkpoint(state: loop.state, store: store)
        }
        return true
    }

    /// The fault injections of the tests (`--inject-hang`, `--inject-error`) for step `step`.
    func injectFaults(step: Int) throws {
        if let hang = options.hangInjection, hang.rank == comm.rank, hang.step == step {
            while true { Thread.sleep(forTimeInterval: 3600) }
        }
        if let failure = options.errorInjection, failure.rank == comm.rank, failure.step == step {
            throw TrainingError("step \(step): failure injected on rank \(comm.rank) (--inject-error)")
        }
    }

    /// One optimizer step over this rank's micro-batches; nil when the data ran out.
    func stepPhase(
        _ loop: inout Loop, prefetcher: Prefetcher<[T.Batch]>, sampleLog: FileHandle?
    ) throws -> Replica<T>.StepResult? {
        let step = loop.step
        let stepStart = Date()
        guard let batches = try prefetcher.next() else { return nil }
        loop.window.dataWait += Date().timeIntervalSince(stepStart)
        let injectNaN = options.nanInjection.map { $0.rank == comm.rank && $0.steps.contains(step + 1) } ?? false
        let examples = sampler.batchSize(step: step % sampler.stepsPerEpoch)
        let result = try replica.step(
            step, batches: batches, globalExamples: examples, learningRate: schedule.lr(step: step),
            appliedUpdates: loop.state.step - loop.state.skippedSteps, injectNaN: injectNaN)
        if let sampleLog {
            let indices = batches.flatMap(\.exampleIndices).map(String.init).joined(separator: " ")
            sampleLog.write(Data("\(step + 1): \(indices)\n".utf8))
        }
        loop.window.commWait += result.commWait
        loop.state.step = step + 1
        loop.state.epoch = (step + 1) / sampler.stepsPerEpoch
        loop.state.consumedSamples += examples
        loop.state.learningRate = result.learningRate
        loop.window.add(result, seconds: Date().timeIntervalSince(stepStart))
        return result
    }

    /// A step with non-finite loss or gradients was skipped on every rank; too many in a row stop the run.
    func nonfinitePolicy(_ result: Replica<T>.StepResult, _ loop: inout Loop) throws {
        guard result.skipped else {
            loop.state.consecutiveNonfiniteSteps = 0
            loop.state.loss = result.sums.loss
            return
        }
        loop.state.consecutiveNonfiniteSteps += 1
        loop.state.skippedSteps += 1
        log("step \(loop.step): non-finite loss or gradients (from rank \(result.nonfiniteRanks)); step skipped "
            + "on every rank (\(loop.state.consecutiveNonfiniteSteps) in a row)")
        if loop.state.consecutiveNonfiniteSteps >= config.maxConsecutiveNonfiniteSteps {
            throw CollectiveError(
                "stopping at step \(loop.step): \(loop.state.consecutiveNonfiniteSteps) steps in a row had non-finite "
                    + "loss or gradients, last from rank \(result.nonfiniteRanks) (max_consecutive_nonfinite_steps "
                    + "= \(config.maxConsecutiveNonfiniteSteps)); lower the learning rate or check the data")
        }
    }

    /// Every `logging.every_steps` steps (and at the last), rank 0 writes the window's record.
    func logPhase(_ result: Replica<T>.StepResult, _ loop: inout Loop, outputs: RunOutputs?) throws {
        guard loop.step % config.logging.everySteps == 0 || loop.step == loop.lastStep else { return }
        var record = loop.window.record(step: loop.step, learningRate: result.learningRate)
        record.allReduceBytes = comm.size > 1 ? Double(4 * model.table.trainableCount) : 0
        record.peakMemoryBytes = Double(Benchmark.peakResidentBytes())
        try outputs?.training(record)
        loop.window = Window()
    }

    /// Every `logging.eval_every_steps` steps (and at the end of the schedule): the validation
    /// record, the best checkpoint's bookkeeping and early stopping. eval_every_steps 0 turns
    /// evaluation off, the final one included.
    func evaluatePhase(_ loop: inout Loop, outputs: RunOutputs?, store: CheckpointStore?, watchdog: Watchdog) throws {
        let every = config.logging.evalEverySteps
        guard task.validationCount > 0, every > 0, loop.step % every == 0 || loop.step == config.schedule.totalSteps
        else { return }
        watchdog.beat("evaluation at step \(loop.step)")
        let record = try evaluate(step: loop.step, batches: config.logging.evalBatches)
        try outputs?.validation(record)
        guard let metric = config.task.metricForBestModel else { return }
        // Every rank holds the same record, so every rank decides the same.
        loop.improved = try track(metric, in: record, state: &loop.state)
        if loop.improved { store?.protectedStep = loop.step }
        let patience = config.task.earlyStoppingPatience
        if patience > 0, loop.state.evaluationsWithoutImprovement ?? 0 >= patience {
            log("early stopping at step \(loop.step): \(metric) did not improve on \(loop.state.bestMetric ?? .nan) (step "
                + "\(loop.state.bestStep ?? 0)) in \(patience) evaluations")
            loop.stoppedEarly = true
        }
    }

    /// Every `checkpoint.every_steps` steps, at the last step, at a new best and before stopping early.
    func checkpointPhase(_ loop: inout Loop, store: CheckpointStore?, watchdog: Watchdog) throws {
        let due = loop.step % config.checkpoint.everySteps == 0 || loop.step == loop.lastStep
        guard due || loop.improved || loop.stoppedEarly else { return }
        watchdog.beat("checkpoint at step \(loop.step)")
        loop.lastCheckpoint = try checkpoint(state: loop.state, store: store)
        loop.checkpointedStep = loop.step
        if loop.improved, let store {
            try store.pointBest(to: loop.step)
            log("best \(config.task.metricForBestModel!) so far: \(loop.state.bestMetric!) at step \(loop.step), in "
                + "\(store.bestPath)")
        }
        loop.improved = false
    }

    /// `--sample-log`: this rank's file, appended to.
    func openSampleLog() throws -> FileHandle? {
        try options.sampleLog.map { path -> FileHandle in
            let file = "\(path).rank\(comm.rank)"
            if !FileManager.default.fileExists(atPath: file) { _ = FileManager.default.createFile(atPath: file, contents: nil) }
            guard let handle = FileHandle(forWritingAtPath: file) else {
                throw TrainingError("cannot write the sample log \(file)")
            }
            handle.seekToEndOfFile()
            return handle
        }
    }

    /// Records `metric` of a validation record in the state; returns whether it is the best so far
    /// (higher is better, lower for losses).
    func track(_ metric: String, in record: MetricsRecord, state: inout TrainerState) throws -> Bool {
        guard let field = record.fields.first(where: { $0.name == metric }) else {
            throw CollectiveError(
                "task.metric_for_best_model is \"\(metric)\", which is not a validation metric of this task; use one of "
                    + record.fields.filter { $0.value != nil }.map(\.name).joined(separator: ", "))
        }
        guard let value = field.value, value.isFinite else { return false }
        let lowerIsBetter = metric.contains("loss") || metric == "mse"
        let improved = state.bestMetric.map { lowerIsBetter ? value < $0 : value > $0 } ?? true
        if improved {
            state.bestMetric = value
            state.bestStep = record.step
            state.evaluationsWithoutImprovement = 0
        } else {
            state.evaluationsWithoutImprovement = (state.evaluationsWithoutImprovement ?? 0) + 1
        }
        return improved
    }

    /// This rank's micro-batches of global step `step`.
    func microBatches(step: Int) throws -> [T.Batch] {
        let epoch = step / sampler.stepsPerEpoch
        let global = sampler.globalBatch(epoch: epoch, step: step % sampler.stepsPerEpoch)
        let share = Array(sampler.share(of: global, rank: comm.rank, worldSize: comm.size))
        return try task.batches(.train, global: global, share: share, microBatchSize: layout.microBatchSize, epoch: epoch)
    }

    // MARK: - Evaluation

    /// The task's loss and metrics over the first `limit` global batches of the validation
    /// split (fixed order; for pre-training also fixed masking), summed across ranks. The same
    /// micro-batch loop as training, without dropout or gradients.
    func evaluate(step: Int, batches limit: Int) throws -> MetricsRecord {
        let evalSampler = Sampler(
            sampleCount: task.validationCount, globalBatchSize: config.batch.globalBatchSize, seed: config.seed)
        let batches = min(limit, evalSampler.stepsPerEpoch)
        var sums = T.Sums()
        var outputs: [(index: Int, output: T.Output)] = []
        for batchIndex in 0..<batches {
            let global = evalSampler.globalBatch(epoch: 0, step: batchIndex)
            let share = Array(evalSampler.share(of: global, rank: comm.rank, worldSize: comm.size))
            let micro = try task.batches(.validation, global: global, share: share, microBatchSize: layout.microBatchSize, epoch: 0)
            let normalizers = try task.normalizers(micro, globalExamples: global.count, averagedOver: batches, comm: comm)
            for batch in micro {
                let result = task.pass(model, batch, normalizers, PassOptions(training: false, computeGradients: false))
                sums += result.sums
                outputs += zip(batch.exampleIndices, result.outputs).map { ($0, $1) }
            }
        }
        sums = try sums.allReduced(comm)
        var record = MetricsRecord(step: step, split: .validation)
        sums.fill(&record, steps: 1)
        let metrics = try task.validationMetrics(sums, outputs: try gather(outputs))
        record.taskFields.removeAll { field in metrics.contains { $0.name == field.name } }
        record.taskFields += metrics
        return record
    }

    /// Every rank's outputs, on every rank, in example order.
    func gather(_ outputs: [(index: Int, output: T.Output)]) throws -> [T.Output] {
        let encoder = JSONEncoder()
        let mine = try outputs.map { String(decoding: try encoder.encode($0.output), as: UTF8.self) }
        let indices = outputs.map { String($0.index) }.joined(separator: " ")
        let texts = try comm.allGather(string: indices + "\n" + mine.joined(separator: "\n"))
        var all: [(index: Int, output: T.Output)] = []
        let decoder = JSONDecoder()
        for text in texts {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            let rankIndices = lines[0].split(separator: " ").compactMap { Int($0) }
            for (index, line) in zip(rankIndices, lines.dropFirst()) {
                all.append((index, try decoder.decode(T.Output.self, from: Data(line.utf8))))
            }
        }
        return all.sorted { $0.index < $1.index }.map(\.output)
    }

    // MARK: - Metrics window

    /// Sums over the steps since the last metrics record.
    struct Window {
        var steps = 0
        var sums = T.Sums()
        var gradNorm = 0.0
        var seconds = 0.0, commWait = 0.0, dataWait = 0.0
        var tokens = 0

        mutating func add(_ result: Replica<T>.StepResult, seconds: Double) {
            self.seconds += seconds
            tokens += result.tokens
            guard !result.skipped else { return }
            steps += 1
            sums += result.sums
            gradNorm = result.gradNorm
        }

        func record(step: Int, learningRate: Double) -> MetricsRecord {
            var record = MetricsRecord(
                step: step, split: .train, learningRate: learningRate, gradNorm: gradNorm,
                tokensPerSecond: seconds > 0 ? Double(tokens) / seconds : nil,
                timeCompute: max(0, seconds - commWait - dataWait), timeCommWait: commWait, timeDataWait: dataWait)
            sums.fill(&record, steps: steps)
            return record
        }
    }
}
