import Crypto
import Data
import Distributed
import Foundation
import Transformer

/// Checkpoints of a run: what goes into one, and how a run continues from one.
///
/// A checkpoint is a Hugging Face model directory (config.json, model.safetensors, vocab.txt,
/// tokenizer.json, tokenizer_config.json), or for a parameter-efficient run a peft adapter directory
/// (adapter_config.json, adapter_model.safetensors; config.json names the head and labels), plus
/// `optimizer.safetensors` (Adam moments of the trainable parameters, flat, in the parameter
/// layout), `training_config.json` (the resolved run configuration) and `trainer_state.json` (the
/// manifest `CheckpointStore` writes last: trainer state and SHA-256 of every file).
extension Trainer {
    static let optimizerFile = "optimizer.safetensors"
    public static var optimizerFileName: String { optimizerFile }
    public static var trainingConfigFileName: String { trainingConfigFile }
    static let trainingConfigFile = "training_config.json"
}

extension Engine {
    /// Writes a checkpoint of `state` from rank 0; the other ranks wait for the commit, and every
    /// rank stops with rank 0's error if it fails. A collective.
    func checkpoint(state: TrainerState, store: CheckpointStore?) throws -> String? {
        var outcome = ""
        if comm.rank == 0, let store {
            do {
                let started = Date()
                let checkpoint = try store.commit(step: state.step, state: state) { directory in
                    if let base = config.initFrom, model.hasAdapter {
                        try model.saveAdapter(to: directory, baseModel: base)
                        // The head and labels, for the commands that run the adapter.
                        try model.writeConfig(toDirectory: directory)
                    } else {
                        try model.savePretrained(to: directory)
                    }
                    try task.writeTokenizer(to: directory)
                    try SafetensorsWriter.write(
                        [(name: "exp_avg", shape: [model.table.trainableCount], data: UnsafeBufferPointer(m)),
                         (name: "exp_avg_sq", shape: [model.table.trainableCount], data: UnsafeBufferPointer(v))],
                        metadata: ["format": "swiftbert", "step": "\(state.step)"],
                        to: (directory as NSString).appendingPathComponent(Trainer.optimizerFile))
                    try config.writeResolved(to: (directory as NSString).appendingPathComponent(Trainer.trainingConfigFile))
                }
                log(String(format: "checkpoint %@ written in %.2f s", checkpoint.path, Date().timeIntervalSince(started)))
                outcome = "ok:" + checkpoint.path
            } catch {
                outcome = "error:\(error)"
            }
        }
        outcome = try comm.broadcast(string: outcome, root: 0)
        if outcome.hasPrefix("error:") {
            throw CollectiveError(String(outcome.dropFirst("error:".count))
                + " (the previous checkpoint is intact; free space or fix permissions, then resume)")
        }
        return outcome.hasPrefix("ok:") ? String(outcome.dropFirst(3)) : nil
    }

    /// Rank 0's choice of the checkpoint to continue from, or nil to start from scratch.
    func chooseCheckpoint(store: CheckpointStore?) throws -> String? {
        switch options.resume {
        case .none:
            if let existing = store?.list().first {
                throw TrainingError(
                    "\(options.runDirectory) already holds checkpoints (newest \(existing.path)); resume with "
                        + "--resume auto, or train into a new --out directory")
            }
            return nil
        case .path(let path):
            try CheckpointStore.verify(path)
            return path
        case .auto:
            guard let store else { return nil }
            let (checkpoint, _, rejected) = store.newestVerified()
            for (bad, error) in rejected {
                log("warning: skipping checkpoint \(bad.path): \(error)")
            }
            return checkpoint?.path
        }
    }

    /// Loads weights, optimizer moments and trainer state from a verified checkpoint (rank 0), after
    /// checking that it belongs to this run.
    func restore(from path: String) throws -> TrainerState {
        let manifest = try CheckpointStore.verify(path)
        let state = try manifest.decodeState(TrainerState.self)
        let savedConfigPath = (path as NSString).appendingPathComponent(Trainer.trainingConfigFile)
        let saved = try TrainingConfig.load(contentsOfFile: savedConfigPath)
        let differences = config.resumeDifferences(from: saved)
        if !differences.isEmpty {
            throw TrainingError(
                "cannot resume from \(path): the configuration changed in \(differences.joined(separator: ", ")); "
                    + "these settings must stay as they were (start a new run directory to change them)")
        }
        if config.schedule.totalSteps < state.step {
            throw ConfigError(
                source: "config", keyPath: "schedule.total_steps",
                message: "is \(config.schedule.totalSteps) but \(path) is at step \(state.step); set it to at least "
                    + "\(state.step) to continue this run")
        }
        let changes = config.resumableChanges(from: saved)
        if !changes.isEmpty {
            var notice = "resuming with changed settings: \(changes.joined(separator: ", "))"
            if config.schedule.totalSteps != saved.schedule.totalSteps {
                let before = LearningRateSchedule(config: saved).lr(step: state.step)
                let after = schedule.lr(step: state.step)
                notice += String(
                    format: "; the learning rate at step %d is %.3g on the new schedule (%.3g on the old one) and "
                        + "follows the new schedule to step %d", state.step, after, before, config.schedule.totalSteps)
            }
            log(notice)
        }
        if state.dataFingerprint != task.dataFingerprint {
            throw TrainingError(
                "cannot resume from \(path): it was trained on other data (manifest fingerprint "
                    + "\(state.dataFingerprint.prefix(12))..., now \(task.dataFingerprint.prefix(12))...); use the same "
                    + "data directory contents")
        }
        if let base = config.initFrom, model.hasAdapter {
            try restoreAdapter(from: path, base: base, state: state)
        } else {
            let weights = try SafetensorsFile(contentsOfFile: (path as NSString).appendingPathComponent(PretrainedDirectory.weightsFile))
            _ = try model.loadWeights(from: [weights], initializationSeed: config.seed)
        }
        let optimizerPath = (path as NSString).appendingPathComponent(Trainer.optimizerFile)
        let moments = try SafetensorsFile(contentsOfFile: optimizerPath)
        for (name, buffer) in [("exp_avg", m), ("exp_avg_sq", v)] {
            let values = try moments.floats(name)
            guard values.count == buffer.count else {
                throw TrainingError("\(optimizerPath): \(name) holds \(values.count) values, the model trains \(buffer.count) parameters")
            }
            _ = buffer.initialize(from: values)
        }
        return state
    }

    /// A parameter-efficient checkpoint: the frozen base from `init_from`, which must be the model the
    /// run started from, then the adapter.
    func restoreAdapter(from path: String, base: String, state: TrainerState) throws {
        let files = try PretrainedDirectory.weightFiles(in: base)
        let digest = try Engine.weightsDigest(files)
        if let expected = state.baseModelSHA256, digest != expected {
            throw TrainingError(
                "cannot resume from \(path): init_from \(base) is not the base model the adapter was trained on (its "
                    + "weights' SHA-256 is \(digest.prefix(12))..., the run started from \(expected.prefix(12))...); point "
                    + "init_from at that model")
        }
        _ = try model.loadWeights(from: files, initializationSeed: config.seed)
        try model.loadAdapter(directory: path)
    }

    /// SHA-256 of a model's weight files, in order (one file's digest, or the digest of their digests).
    static func weightsDigest(_ files: [SafetensorsFile]) throws -> String {
        let digests = try files.map { try CheckpointStore.sha256(ofFile: $0.path, fsync: false).sha256 }
        guard digests.count > 1 else { return digests[0] }
        return SHA256.hash(data: Data(digests.joined(separator: "\n").utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
