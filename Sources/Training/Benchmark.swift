import Data
import Distributed
import Foundation
import Kernels
import Transformer

/// What `swiftbert bench` measured: throughput, FLOP rate against the machine's SGEMM peak, where the
/// time goes and memory against the analytic floor. Encoded as the `--json` output.
public struct BenchmarkReport: Encodable, Sendable {
    public struct Spread: Encodable, Sendable {
        public var median: Double
        public var min: Double
        public var max: Double
    }

    public var config: String
    public var parameters: Int
    public var ranks: Int
    public var threadsPerRank: Int
    public var globalBatch: Int
    public var microBatch: Int
    public var accumulationSteps: Int
    public var sequenceLength: Int
    public var maskedPerSequence: Int
    public var warmupSteps: Int
    public var steps: Int
    public var stepSeconds: [Double]
    public var tokensPerSecond: Spread
    /// Model FLOPs of one training token (forward + backward), counted from the configuration.
    public var flopsPerToken: Double
    public var achievedGFLOPS: Double
    /// Single-precision GEMM on 1024^3, every rank at once with its threads, summed over ranks; the
    /// best of a measurement before and one after the timed steps.
    public var sgemmPeakGFLOPS: Double
    public var mfu: Double
    /// FLOPs this implementation's GEMMs execute per token: the model FLOPs less the last layer's
    /// rows no loss reads (`executedFlopsPerToken`).
    public var executedFlopsPerToken: Double
    /// Executed FLOP rate against the SGEMM peak (hardware FLOPs utilisation).
    public var hfu: Double
    /// Seconds per step by op class on rank 0 (the classes add up to the step).
    public var breakdown: [String: Double]
    /// Largest resident set of any rank.
    public var peakRSSBytes: Int
    /// 16 bytes per parameter (weights, gradients, two Adam moments) + `activationFloorBytes`, per rank.
    public var memoryFloorBytes: Int
    /// The float32 tensors backward must read, per rank's micro-batch (`activationFloorBytes(...)`).
    public var activationFloorBytes: Int
    /// What this implementation allocates for activations and scratch, per rank.
    public var activationBufferBytes: Int
    public var openBLASCore: String

    enum CodingKeys: String, CodingKey {
        case config, parameters, ranks, steps, breakdown, mfu, hfu
        case executedFlopsPerToken = "executed_flops_per_token"
        case threadsPerRank = "threads_per_rank"
        case globalBatch = "global_batch"
        case microBatch = "micro_batch"
        case accumulationSteps = "accumulation_steps"
        case sequenceLength = "sequence_length"
        case maskedPerSequence = "masked_per_sequence"
        case warmupSteps = "warmup_steps"
        case stepSeconds = "step_seconds"
        case tokensPerSecond = "tokens_per_second"
        case flopsPerToken = "flops_per_token"
        case achievedGFLOPS = "achieved_gflops"
        case sgemmPeakGFLOPS = "sgemm_peak_gflops"
        case peakRSSBytes = "peak_rss_bytes"
        case memoryFloorBytes = "memory_floor_bytes"
        case activationFloorBytes = "activation_floor_bytes"
        case activationBufferBytes = "activation_buffer_bytes"
        case openBLASCore = "openblas_core"
    }
}

/// Times full training steps (forward, backward, all-reduce, optimizer) of the trainer's own step on
/// synthetic batches: every sequence full length, `masked_lm_prob` of its tokens masked (as Google's
/// data has them), random ids, labels and NSP classes. A collective: every rank calls `run`.
public final class Benchmark {
    let config: TrainingConfig
    let configName: String
    let comm: Communicator
    let threadsPerRank: Int
    let replica: Replica<PreTrainingTask>
    let layout: (microBatchSize: Int, accumulationSteps: Int)
    let maskedPerSequence: Int

    public init(config: TrainingConfig, configName: String, communicator: Communicator, threadsPerRank: Int) throws {
        self.config = config
        self.configName = configName
        comm = communicator
        self.threadsPerRank = threadsPerRank
        layout = try config.batchLayout(worldSize: communicator.size)
        let T = config.batch.sequenceLength
        if T > config.model.maxPositionEmbeddings {
            throw ConfigError(
                source: "config", keyPath: "batch.sequence_length",
                message: "is \(T), longer than model.max_position_embeddings (\(config.model.maxPositionEmbeddings))")
        }
        maskedPerSequence = MaskingSettings(
            maskedLMProbability: config.data.maskedLMProbability,
            maxPredictionsPerSequence: config.data.maxPredictionsPerSequence
        ).predictionCount(sequenceLength: T)
        let task = PreTrainingTask(syntheticDataFor: config, sequenceLength: T)
        try Replica<PreTrainingTask>.checkMemory(
            task.memoryFloor(sequences: layout.microBatchSize), microBatchSize: layout.microBatchSize, sequenceLength: T)
        replica = Replica(config: config, task: task, communicator: communicator, microBatchSize: layout.microBatchSize)
        replica.model.initializeParameters(seed: config.seed)
    }

    /// Model FLOPs per training token: 3x the forward's multiply-adds x 2 (backward computes two
    /// products per forward product). Dense layers per token; attention scores and context 2 x T x C
    /// each; the MLM transform and decoder only at the masked share of tokens; pooler and NSP once per
    /// sequence. Element-wise work is not counted (it is small in FLOPs, not in time).
    public static func flopsPerToken(_ model: BertConfig, sequenceLength T: Int, maskedPerSequence P: Int) -> Double {
        let C = Double(model.hiddenSize), I = Double(model.intermediateSize), V = Double(model.vocabSize)
        let L = Double(model.hiddenLayerCount), K = Double(model.nspClassCount), t = Double(T)
        let layer = 2 * (4 * C * C + 2 * C * I) + 2 * 2 * t * C
        let mlm = Double(P) / t * 2 * (C * C + C * V)
        let nsp = K > 0 ? 2 * (C * C + C * K) / t : 0
        return 3 * (L * layer + mlm + nsp)
    }

    /// The FLOPs per token the GEMMs of a training step execute: `flopsPerToken` with the last layer
    /// computed only at the [CLS] and masked rows (`BertForPreTraining.computesLastLayerAtLossRowsOnly`):
    /// its key and value projections stay on every token; its queries, scores, context, attention
    /// output and feed-forward block run on 1 + P rows of every T.
    public static func executedFlopsPerToken(_ model: BertConfig, sequenceLength T: Int, maskedPerSequence P: Int) -> Double {
        let C = Double(model.hiddenSize), I = Double(model.intermediateSize), t = Double(T)
        let kept = min(Double(1 + P), t) / t
        let everyRow = 2 * (4 * C * C + 2 * C * I) + 2 * 2 * t * C
        let lastLayer = 2 * 2 * C * C + kept * (2 * (2 * C * C + 2 * C * I) + 2 * 2 * t * C)
        return flopsPerToken(model, sequenceLength: T, maskedPerSequence: P) - 3 * (everyRow - lastLayer)
    }

    /// Bytes of the activations a post-LN BERT layer's backward needs, stored once in float32, for B
    /// sequences of T tokens: per layer Q/K/V (3NC), attention probabilities (B NH T^2), context (NC),
    /// input and output of both LayerNorms (4NC) and the feed-forward pre-activation (NI); the
    /// embedding LayerNorm's input and output (2NC). Per-row statistics, dropout masks and the MLM
    /// head's few rows are left out: the floor is what any implementation keeps, at least.
    public static func activationFloorBytes(_ model: BertConfig, sequences B: Int, length T: Int) -> Int {
        Int(activationFloor(model, sequences: B, length: T))
    }

    /// `activationFloorBytes` in floating point, which cannot overflow for any configuration.
    static func activationFloor(_ model: BertConfig, sequences B: Int, length T: Int) -> Double {
        let B = Double(B), T = Double(T), N = B * T
        let C = Double(model.hiddenSize), I = Double(model.intermediateSize), NH = Double(model.attentionHeadCount)
        let layer = 8 * N * C + N * I + B * NH * T * T
        return 4 * (Double(model.hiddenLayerCount) * layer + 2 * N * C)
    }

    /// Runs `warmup` untimed steps, then `steps` timed ones; every rank returns the same report.
    public func run(warmup: Int, steps: Int, progress: (String) -> Void) throws -> BenchmarkReport {
        let T = config.batch.sequenceLength
        let global = config.batch.globalBatchSize
        let batches = (0..<layout.accumulationSteps).map { syntheticBatch(micro: $0) }
        let peakBefore = try sgemmPeak()

        let profile = OpProfile()
        var stepSeconds: [Double] = []
        for step in 0..<(warmup + steps) {
            if step == warmup {
                profile.reset()
                replica.profile = profile
            }
            try comm.barrier()
            let accounted = profile.total
            let start = OpProfile.now()
            _ = try replica.step(step, batches: batches, globalExamples: global, learningRate: 1e-4, appliedUpdates: step)
            let seconds = OpProfile.now() - start
            if step >= warmup {
                stepSeconds.append(seconds)
                profile.add(.other, seconds: max(0, seconds - (profile.total - accounted)))
            }
            progress(String(format: "%@ step %d/%d: %.3f s", step < warmup ? "warm-up" : "timed",
                            step < warmup ? step + 1 : step - warmup + 1, step < warmup ? warmup : steps, seconds))
        }
        replica.profile = nil
        let peak = max(peakBefore, try sgemmPeak())

        // Rank 0's times decide (all ranks wait for each other in every step's all-reduce).
        var times = stepSeconds
        try comm.broadcast(&times, root: 0)
        var shares = OpClass.allCases.map { profile[$0] / Double(steps) }
        try comm.broadcast(&shares, root: 0)
        let rss = try comm.allGather(Int64(Benchmark.peakResidentBytes()))

        let tokens = times.map { Double(global * T) / $0 }.sorted()
        let flops = Benchmark.flopsPerToken(config.model, sequenceLength: T, maskedPerSequence: maskedPerSequence)
        let executed = Benchmark.executedFlopsPerToken(
            config.model, sequenceLength: T, maskedPerSequence: maskedPerSequence)
        let median = tokens[tokens.count / 2]
        let model = replica.model
        let activationFloor = Benchmark.activationFloorBytes(config.model, sequences: layout.microBatchSize, length: T)
        return BenchmarkReport(
            config: configName, parameters: model.table.totalCount, ranks: comm.size, threadsPerRank: threadsPerRank,
            globalBatch: global, microBatch: layout.microBatchSize, accumulationSteps: layout.accumulationSteps,
            sequenceLength: T, maskedPerSequence: maskedPerSequence, warmupSteps: warmup, steps: steps,
            stepSeconds: times, tokensPerSecond: .init(median: median, min: tokens.first!, max: tokens.last!),
            flopsPerToken: flops, achievedGFLOPS: flops * median / 1e9, sgemmPeakGFLOPS: peak,
            mfu: flops * median / 1e9 / peak, executedFlopsPerToken: executed, hfu: executed * median / 1e9 / peak,
            breakdown: Dictionary(uniqueKeysWithValues: zip(OpClass.allCases.map(\.rawValue), shares)),
            peakRSSBytes: Int(rss.max()!), memoryFloorBytes: 16 * model.table.totalCount + activationFloor,
            activationFloorBytes: activationFloor, activationBufferBytes: model.activationByteCount,
            openBLASCore: BLASRuntime.coreName)
    }

    /// Micro-batch `micro` of this rank: full-length sequences, segment A then B, `maskedPerSequence`
    /// distinct masked positions after [CLS], deterministic in (seed, rank, micro).
    func syntheticBatch(micro: Int) -> PretrainingBatch {
        let B = layout.microBatchSize, T = config.batch.sequenceLength, V = config.model.vocabSize
        let P = maskedPerSequence
        let random = Philox(seed: config.seed, UInt64(comm.rank), UInt64(micro))
        var counter: UInt64 = 0
        func next(_ bound: Int) -> Int32 {
            counter += 1
            return Int32(random.integer(below: bound, at: counter))
        }
        // Ids above the special and unused tokens of BERT's vocabulary, when it is that large.
        let low = V > 2_000 ? 999 : 0
        var inputIDs = (0..<(B * T)).map { _ in Int32(low) + next(V - low) }
        let tokenTypeIDs = (0..<(B * T)).map { Int32($0 % T < T / 2 ? 0 : 1) }
        var positions: [Int32] = []
        var labels: [Int32] = []
        for b in 0..<B {
            var chosen = Set<Int32>()
            while chosen.count < min(P, T - 1) { chosen.insert(1 + next(T - 1)) }
            for t in chosen.sorted() {
                let flat = Int32(b * T) + t
                positions.append(flat)
                labels.append(inputIDs[Int(flat)])
                inputIDs[Int(flat)] = Int32(min(103, V - 1))  // [MASK] in BERT's vocabulary
            }
        }
        let K = max(1, config.model.nspClassCount)
        let first = (comm.rank * layout.accumulationSteps + micro) * B
        return PretrainingBatch(
            sequenceCount: B, sequenceLength: T, inputIDs: inputIDs, tokenTypeIDs: tokenTypeIDs,
            attentionMask: Array(repeating: 1, count: B * T), maskedPositions: positions, maskedLabels: labels,
            nspLabels: (0..<B).map { _ in next(K) }, sampleIndices: Array(first..<(first + B)))
    }

    /// The machine's SGEMM rate in this layout: every rank multiplies 1024^3 at the same time with its
    /// own threads; the sum over ranks.
    func sgemmPeak() throws -> Double {
        try comm.barrier()
        return try comm.allReduceSum(GEMMCheck.measureGFLOPS(size: 1024))
    }

    /// The process's peak resident set size (Linux reports kilobytes).
    static func peakResidentBytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024
    }
}
