import Foundation

/// Learning rate as a pure function of the optimizer step: linear warmup from 0 to the peak over
/// `warmupSteps`, then linear or cosine decay to `minRatio` x peak at `totalSteps` (or constant).
///
/// `step` counts optimizer updates already taken, so the first update uses `lr(step: 0)`, which is 0
/// with warmup. This is the convention of Hugging Face's `get_*_schedule_with_warmup` (the scheduler
/// steps after the optimizer) and of Google's BERT (`global_step` starts at 0). Past `totalSteps` the
/// rate stays at its final value.
public struct LearningRateSchedule: Equatable, Sendable {
    public var peak: Double
    public var warmupSteps: Int
    public var totalSteps: Int
    public var decay: TrainingConfig.DecayKind
    /// Final learning rate as a fraction of `peak` (linear and cosine decay).
    public var minRatio: Double

    public init(peak: Double, warmupSteps: Int, totalSteps: Int, decay: TrainingConfig.DecayKind, minRatio: Double = 0) {
        precondition(warmupSteps >= 0 && totalSteps >= warmupSteps, "schedule needs 0 <= warmupSteps <= totalSteps")
        self.peak = peak
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.decay = decay
        self.minRatio = minRatio
    }

    /// The schedule of a run configuration (`optimizer.learning_rate` and `schedule.*`).
    public init(config: TrainingConfig) {
        self.init(peak: config.optimizer.learningRate, warmupSteps: config.schedule.warmupSteps,
                  totalSteps: config.schedule.totalSteps, decay: config.schedule.decay,
                  minRatio: config.schedule.minLRRatio)
    }

    /// The learning rate for the update that follows `step` completed updates.
    public func lr(step: Int) -> Double {
        if step < warmupSteps { return peak * Double(max(step, 0)) / Double(warmupSteps) }
        if decay == .constant { return peak }
        let decaySteps = totalSteps - warmupSteps
        let progress = decaySteps > 0 ? min(1, Double(step - warmupSteps) / Double(decaySteps)) : 1
        let factor: Double
        switch decay {
        case .linear: factor = 1 - progress
        case .cosine: factor = 0.5 * (1 + cos(Double.pi * progress))
        case .constant: factor = 1
        }
        return peak * (minRatio + (1 - minRatio) * factor)
    }
}
