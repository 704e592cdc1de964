import ArgumentParser
import Distributed
import Foundation
import Kernels
import Training
import Transformer

/// `swiftbert bench`: the trainer's step, timed, with the numbers that say how good it is.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time full training steps and report tokens/s, MFU against SGEMM, a time breakdown and memory.",
        discussion: """
            Runs the trainer's own step (forward, backward, gradient all-reduce, optimizer) on \
            synthetic full-length batches with the configuration's masking rate, after warm-up \
            steps. Reports tokens/s (median, min, max over the timed steps), model FLOPs per token \
            counted from the configuration (MLM head on the masked positions only), the achieved \
            GFLOP/s against single-precision GEMM measured on all ranks at once in the same run \
            (MFU), the same for the FLOPs actually executed (the last layer runs only at [CLS] and \
            the masked rows), seconds per step by op class, and peak resident memory against the floor of 16 \
            bytes per parameter plus the activations backward needs. Standalone or under mpirun; \
            the global batch is split over the ranks as in training. Compare with PyTorch on the \
            same shapes: scripts/peer_bench.py (README, "Performance").

            Examples:
              swiftbert bench --config configs/bert-mini.json --batch 32
              launch/local.sh bench --config configs/bert-mini.json --batch 32 --json
            """)

    @Option(help: "Run configuration (JSON); its model, batch and optimizer sections are used.")
    var config: String

    @Option(help: "Timed steps.")
    var steps = 20

    @Option(help: "Untimed steps first (allocation, caches, OpenBLAS thread start-up).")
    var warmup = 3

    @Option(help: "Global batch in sequences, each rank's share in one micro-batch (default: the configuration's batch section).")
    var batch: Int?

    @Option(help: "Sequences per micro-batch, with gradient accumulation over the rest of a rank's share.")
    var microBatch: Int?

    @Option(help: "Sequence length (default: the configuration's batch.sequence_length).")
    var seqLen: Int?

    @Option(name: .customLong("set"), help: "Override a configuration value, e.g. --set model.num_hidden_layers=2 (repeatable).")
    var overrides: [String] = []

    @Flag(help: "Print the report as one JSON object.")
    var json = false

    func validate() throws {
        guard FileManager.default.fileExists(atPath: config) else {
            throw ValidationError("configuration file \(config) does not exist; see configs/ for examples")
        }
        if steps < 1 { throw ValidationError("--steps must be at least 1") }
        if warmup < 0 { throw ValidationError("--warmup cannot be negative") }
        if let batch, batch < 1 { throw ValidationError("--batch must be at least 1") }
        if let microBatch, microBatch < 1 { throw ValidationError("--micro-batch must be at least 1") }
        if let seqLen, seqLen < 2 { throw ValidationError("--seq-len must be at least 2") }
    }

    func run() throws {
        var overrides = overrides
        if let batch { overrides += ["batch.global_batch_size=\(batch)", "batch.micro_batch_size=\(microBatch ?? batch)"] }
        if batch == nil, let microBatch { overrides.append("batch.micro_batch_size=\(microBatch)") }
        if let seqLen { overrides.append("batch.sequence_length=\(seqLen)") }
        let runConfig = try Train.loadConfiguration(config, overrides: overrides)
        try runOnRanks(announce: !json) { comm, console in
            // A configuration error is the same on every rank: reported once.
            let benchmark = try comm.collectively {
                try Benchmark(
                    config: runConfig, configName: config, communicator: comm, threadsPerRank: BLASRuntime.threadCount)
            }
            let report = try benchmark.run(warmup: warmup, steps: steps) { line in
                if json {
                    if comm.rank == 0 { FileHandle.standardError.write(Data("bench: \(line)\n".utf8)) }
                } else {
                    console.say("  \(line)")
                }
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                console.say(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                console.say(Self.text(report))
            }
        }
    }

    static func text(_ r: BenchmarkReport) -> String {
        func mb(_ bytes: Int) -> String { String(format: "%.0f MB", Double(bytes) / 1e6) }
        let stepMedian = r.stepSeconds.sorted()[r.stepSeconds.count / 2]
        var lines = [
            "\(r.config): \(r.parameters.formatted()) parameters, \(r.ranks) rank\(r.ranks == 1 ? "" : "s") x "
                + "\(r.threadsPerRank) thread\(r.threadsPerRank == 1 ? "" : "s"), global batch \(r.globalBatch) x "
                + "\(r.sequenceLength) (\(r.ranks) x \(r.accumulationSteps) x \(r.microBatch)), "
                + "\(r.maskedPerSequence) masked per sequence, \(r.steps) steps after \(r.warmupSteps) warm-up",
            String(format: "tokens/s: median %.0f (min %.0f, max %.0f); step %.3f s",
                   r.tokensPerSecond.median, r.tokensPerSecond.min, r.tokensPerSecond.max, stepMedian),
            String(format: "model FLOPs per token: %.2f M (forward + backward, MLM head on masked positions) -> %.1f GFLOP/s",
                   r.flopsPerToken / 1e6, r.achievedGFLOPS),
            String(format: "executed FLOPs per token: %.2f M (last layer only at [CLS] and the masked rows) -> %.1f GFLOP/s",
                   r.executedFlopsPerToken / 1e6, r.executedFlopsPerToken * r.tokensPerSecond.median / 1e9),
            String(format: "SGEMM 1024^3 on all ranks at once (OpenBLAS %@): %.1f GFLOP/s -> MFU %.1f%%, executed %.1f%%",
                   r.openBLASCore, r.sgemmPeakGFLOPS, 100 * r.mfu, 100 * r.hfu),
            "time per step by op class (rank 0):",
        ]
        let total = r.breakdown.values.reduce(0, +)
        for op in OpClass.allCases {
            let seconds = r.breakdown[op.rawValue] ?? 0
            lines.append("  " + op.rawValue.padding(toLength: 20, withPad: " ", startingAt: 0)
                + String(format: " %9.1f ms %6.1f%%", seconds * 1000, 100 * seconds / max(total, 1e-12)))
        }
        lines.append(
            "memory: peak resident \(mb(r.peakRSSBytes)) (largest rank) = "
                + String(format: "%.2fx", Double(r.peakRSSBytes) / Double(r.memoryFloorBytes))
                + " the floor of \(mb(r.memoryFloorBytes)): 16 B x \(r.parameters.formatted()) parameters + "
                + "\(mb(r.activationFloorBytes)) activations backward needs (buffers allocated: \(mb(r.activationBufferBytes)))")
        return lines.joined(separator: "\n")
    }
}
