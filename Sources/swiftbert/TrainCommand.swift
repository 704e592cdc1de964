import ArgumentParser
import Distributed
import Foundation
import Kernels
import Training

/// `swiftbert train`: the same code path standalone, under mpirun, and in the debug mode.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pre-train or fine-tune BERT, or train GPT-2, data-parallel over MPI ranks.",
        discussion: """
            Standalone it runs as one rank; under `mpirun -np N` as N ranks on any number of hosts. \
            The configuration's global batch is split over the ranks (micro-batches and gradient \
            accumulation adapt), so results do not depend on the number of ranks. Rank 0 writes \
            metrics.jsonl, TensorBoard events and checkpoints into the run directory. task.type picks             what trains: BERT pre-training (MLM + NSP, the default), a BERT fine-tuning head on labelled             files, or causal_lm (GPT-2 on `prepare --objective causal_lm` data, or instruction tuning on             prompt/response lines).

            Examples:
              swiftbert train --config configs/bert-tiny.json --data data/kjv --out runs/tiny
              mpirun -np 2 swiftbert train --config configs/bert-mini.json --data data/kjv --out runs/mini
              swiftbert train --config configs/debug.json --data data/kjv --debug --ranks 2
              swiftbert train --config configs/gpt2-debug.json --data data/kjv-gpt2 --out runs/gpt2
              swiftbert train --out runs/tiny --set schedule.total_steps=4000   # continue runs/tiny, longer

            Resuming continues the data order, masking, dropout and learning-rate schedule exactly. \
            schedule.total_steps and the logging, evaluation and checkpoint cadence may change on resume \
            (a notice says what changed); settings that would rewrite the steps already taken (model, \
            batch, optimizer, schedule shape, seed, data) are refused, naming the key.
            """)

    @Option(help: "Run configuration (JSON): model (Hugging Face BertConfig keys, or GPT2Config keys for causal_lm), batch, optimizer, schedule, ... (default: the config.json of the --out run directory, to continue it).")
    var config: String?

    @Option(help: "Prepared data directory (from `swiftbert prepare`); overrides data.directory.")
    var data: String?

    @Option(help: "Run directory for metrics, TensorBoard events and checkpoints (default: runs/<config name>).")
    var out: String?

    @Option(help: "auto: continue from the newest verified checkpoint in the run directory; none: start fresh; or a checkpoint directory.")
    var resume = "auto"

    @Option(name: .customLong("set"), help: "Override a configuration value, e.g. --set optimizer.learning_rate=5e-4 (repeatable).")
    var overrides: [String] = []

    @Option(help: "Stop after this many steps of this invocation, with a checkpoint (the schedule still spans schedule.total_steps).")
    var steps: Int?

    @Flag(help: "Single-process debug mode: in-process ranks (threads) instead of MPI processes, deterministic.")
    var debug = false

    @Option(help: "Ranks in the debug mode.")
    var ranks = 1

    @Option(help: "Append the sample indices each rank trains on to FILE.rank<r>, one line per step.")
    var sampleLog: String?

    @Option(help: ArgumentHelp("Make RANK's gradients NaN at the given steps: RANK:STEP[,STEP...] (tests the guards).", visibility: .hidden))
    var injectNan: String?

    @Option(help: ArgumentHelp("Make RANK stop responding at STEP: RANK:STEP (tests the watchdog).", visibility: .hidden))
    var injectHang: String?

    @Option(help: ArgumentHelp("Make RANK alone fail with an error at STEP: RANK:STEP (tests error reporting).", visibility: .hidden))
    var injectError: String?

    func validate() throws {
        guard let configPath else {
            throw ValidationError("give --config FILE (see configs/), or --out RUN of an existing run to continue it")
        }
        guard FileManager.default.fileExists(atPath: configPath) else {
            throw ValidationError(config == nil
                ? "\(configPath) does not exist: --out \(out!) is not a run directory yet; give --config FILE"
                : "configuration file \(configPath) does not exist; see configs/ for examples")
        }
        if ranks < 1 { throw ValidationError("--ranks must be at least 1") }
        if ranks > 1 && !debug { throw ValidationError("--ranks applies to the --debug mode; use mpirun -np N otherwise") }
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1") }
        if let injectNan, parseInjection(injectNan) == nil {
            throw ValidationError("--inject-nan takes RANK:STEP[,STEP...], got \(injectNan)")
        }
        for (name, value) in [("--inject-hang", injectHang), ("--inject-error", injectError)] {
            if let value, parseInjection(value)?.steps.count != 1 {
                throw ValidationError("\(name) takes RANK:STEP, got \(value)")
            }
        }
    }

    /// `--config`, or the resolved configuration a run directory holds.
    private var configPath: String? {
        config ?? out.map { ($0 as NSString).appendingPathComponent("config.json") }
    }

    private func parseInjection(_ text: String) -> (rank: Int, steps: Set<Int>)? {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let rank = Int(parts[0]) else { return nil }
        let steps = parts[1].split(separator: ",").compactMap { Int($0) }
        return steps.isEmpty ? nil : (rank, Set(steps))
    }

    func run() throws {
        var overrides = overrides
        if let data { overrides.append("data.directory=\(data)") }
        let configPath = configPath!
        let runConfig = try Self.loadConfiguration(configPath, overrides: overrides)
        let name = ((configPath as NSString).lastPathComponent as NSString).deletingPathExtension
        var options = TrainingOptions(runDirectory: out ?? "runs/\(name)")
        switch resume {
        case "auto": options.resume = .auto
        case "none": options.resume = .none
        default: options.resume = .path(resume)
        }
        options.stopAfterSteps = steps
        options.sampleLog = sampleLog
        options.debugChecks = debug
        options.nanInjection = injectNan.flatMap(parseInjection)
        if let hang = injectHang.flatMap(parseInjection), let step = hang.steps.first {
            options.hangInjection = (hang.rank, step)
        }
        if let failure = injectError.flatMap(parseInjection), let step = failure.steps.first {
            options.errorInjection = (failure.rank, step)
        }

        StopSignal.install()
        if debug {
            try runInProcess(runConfig, options)
        } else {
            try runMPI(runConfig, options)
        }
    }

    /// The configuration file with `--set` overrides applied; an error is reported once, by rank 0 (every
    /// rank reads the same file), before MPI starts.
    static func loadConfiguration(_ path: String, overrides: [String]) throws -> TrainingConfig {
        do {
            return try TrainingConfig.load(contentsOfFile: path, overrides: overrides)
        } catch {
            if launcherRank == 0 { Console.standalone.fail("\(error)") }
            throw ExitCode.failure
        }
    }

    /// The rank the launcher gave this process, known before MPI starts (0 standalone).
    static var launcherRank: Int {
        let env = ProcessInfo.processInfo.environment
        return Int(env["OMPI_COMM_WORLD_RANK"] ?? env["PMIX_RANK"] ?? env["SLURM_PROCID"] ?? "0") ?? 0
    }

    private func runMPI(_ config: TrainingConfig, _ options: TrainingOptions) throws {
        try runOnRanks(announce: true) { comm, console in
            var options = options
            options.onHang = { message in
                console.fail(message)
                comm.abort(code: 1)
            }
            let summary = try train(config, options, comm, console)
            try comm.barrier()
            report(summary, options, config, console)
        }
    }

    private func runInProcess(_ config: TrainingConfig, _ options: TrainingOptions) throws {
        let world = InProcessWorld(size: ranks, timeout: config.watchdogSeconds > 0 ? config.watchdogSeconds : nil)
        // One process: BLAS and element-wise threads are shared by the rank threads.
        let threads = max(1, CPUFeatures.onlineCoreCount / ranks)
        BLASRuntime.setThreadCount(threads)
        Parallel.workerCount = threads
        let console = Console.standalone
        console.say("debug mode: \(ranks) in-process rank\(ranks == 1 ? "" : "s"), \(threads) thread\(threads == 1 ? "" : "s") each")
        let summaries = SummaryBox()
        do {
            try world.run { comm in
                do {
                    let summary = try train(config, options, comm, Console(rank: comm.rank, size: comm.size))
                    if comm.rank == 0 { summaries.value = summary }
                } catch let error where !(error is PeerFailure || error is CommunicatorError) {
                    throw RankFailure(rank: comm.rank, error: error)
                }
            }
        } catch let failure as RankFailure {
            // As under MPI: a collective error once, any other with the rank that raised it.
            let reporter = failure.error is CollectiveError ? console : Console(rank: failure.rank, size: ranks)
            reporter.fail("\(failure.error)")
            throw ExitCode.failure
        } catch {
            console.fail("\(error)")
            throw ExitCode.failure
        }
        if let summary = summaries.value { report(summary, options, config, console) }
    }

    private final class SummaryBox: @unchecked Sendable { var value: TrainingSummary? }

    /// An error of one in-process rank, with the rank, which its message may not name.
    private struct RankFailure: Error, CustomStringConvertible {
        let rank: Int
        let error: Error
        var description: String { "\(error)" }
    }

    private func train(_ config: TrainingConfig, _ options: TrainingOptions, _ comm: Communicator, _ console: Console) throws -> TrainingSummary {
        let trainer = try Trainer(config: config, options: options, communicator: comm) { console.say($0) }
        return try trainer.run()
    }

    private func report(_ summary: TrainingSummary, _ options: TrainingOptions, _ config: TrainingConfig, _ console: Console) {
        let loss = summary.lastLoss.map { String(format: "%.4f", $0) } ?? "n/a"
        if summary.stoppedBySignal {
            console.say("stopped by a signal at step \(summary.finalStep); continue with: swiftbert train ... --resume auto")
        }
        console.say("""
            finished at step \(summary.finalStep) (started at \(summary.startStep)), last loss \(loss)\
            \(summary.skippedSteps > 0 ? ", \(summary.skippedSteps) steps skipped (non-finite)" : "")
            run directory: \(options.runDirectory)
              metrics:     \(options.runDirectory)/metrics.jsonl (one JSON object per line)
              tensorboard: tensorboard --logdir \(options.runDirectory)
              checkpoint:  \(summary.lastCheckpoint ?? "none") (\(config.peft.method == .none
                ? "a Hugging Face model directory" : "a peft adapter on \(config.initFrom ?? "its base")"))
            next: \(next(summary, options, config))
            """)
    }

    /// The command that uses what the run wrote.
    private func next(_ summary: TrainingSummary, _ options: TrainingOptions, _ config: TrainingConfig) -> String {
        let checkpoint = summary.lastCheckpoint ?? "<checkpoint>"
        if config.peft.method != .none && config.task.kind == .causalLM {
            return "swiftbert generate --model \(checkpoint) \"In the beginning\" (the adapter merged into its base at load)"
        }
        if config.peft.method != .none {
            return "swiftbert merge --adapter \(checkpoint) --out <directory> (a plain Hugging Face model)"
                + (config.task.kind == .pretraining ? "" : "; swiftbert evaluate --model \(checkpoint) --data <labelled file>")
        }
        switch config.task.kind {
        case .pretraining: return "swiftbert fill-mask --model \(checkpoint) \"the lord is my [MASK].\""
        case .causalLM: return "swiftbert generate --model \(checkpoint) \"In the beginning\""
        default: break
        }
        let best = (options.runDirectory as NSString).appendingPathComponent("best")
        let model = FileManager.default.fileExists(atPath: best) ? best : checkpoint
        return "swiftbert evaluate --model \(model) --data <labelled file>; swiftbert predict --model \(model) --input <file>"
    }
}
