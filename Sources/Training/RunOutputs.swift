import Foundation

/// What rank 0 of a run writes besides checkpoints: the resolved `config.json`, `metrics.jsonl`,
/// TensorBoard events and the console's progress line. Only rank 0 has one.
final class RunOutputs {
    let metrics: MetricsLog
    let tensorBoard: TensorBoardWriter
    var progress: ProgressLine

    /// Opens the outputs of `runDirectory`; a resumed run drops the records after `startStep`.
    init(config: TrainingConfig, runDirectory: String, startStep: Int) throws {
        try config.writeResolved(to: (runDirectory as NSString).appendingPathComponent("config.json"))
        metrics = try MetricsLog(
            path: (runDirectory as NSString).appendingPathComponent("metrics.jsonl"), keepingStepsThrough: startStep)
        tensorBoard = try TensorBoardWriter(directory: runDirectory)
        // Under mpirun a rank's stdout is a pseudo-terminal even when the job's output is piped.
        let launched = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil
        progress = ProgressLine(
            totalSteps: config.schedule.totalSteps, isTerminal: isatty(STDOUT_FILENO) != 0 && !launched)
    }

    /// A training record: to the files and the progress line.
    func training(_ record: MetricsRecord) throws {
        try metrics.append(record)
        try tensorBoard.add(record)
        progress.update(
            step: record.step, loss: record.loss, learningRate: record.learningRate,
            tokensPerSecond: record.tokensPerSecond)
    }

    /// A validation record: to the files and a console line.
    func validation(_ record: MetricsRecord) throws {
        try metrics.append(record)
        try tensorBoard.add(record)
        progress.message("step \(record.step) validation: " + record.summary)
    }

    func finish() { progress.finish() }

    func close() {
        metrics.close()
        tensorBoard.close()
    }
}
