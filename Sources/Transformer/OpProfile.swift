import Dispatch
import Foundation

/// The classes of work a training step's time is reported in (`swiftbert bench`).
public enum OpClass: String, CaseIterable, Sendable {
    /// Dense layers (Q/K/V, attention output, feed-forward, pooler, MLM transform and decoder, NSP),
    /// forward and backward, bias gradients included.
    case gemm
    /// The per-head score and context GEMMs of self-attention, forward and backward.
    case attention
    /// Masked softmax with attention dropout, forward and backward.
    case softmax
    /// LayerNorm, with the fused bias + dropout + residual in front of it.
    case layerNorm = "layer_norm"
    /// Bias + GELU (or the configured activation) and tanh, forward, recomputation and backward.
    case activation
    /// Embedding lookup and sum, its scatter-add backward, the gathers of masked rows.
    case embedding
    /// Cross-entropy over the gathered MLM positions and the NSP logits.
    case loss
    /// Gradient norm and the AdamW/LAMB update.
    case optimizer
    /// Time spent waiting for gradient all-reduces that backward did not hide.
    case communication = "communication_wait"
    /// Everything else: zeroing gradients, batch preparation, copies.
    case other
}

/// Wall-clock seconds per op class, accumulated over steps. Ops run one after another (each may use
/// several threads inside), so the classes add up to the step time.
public final class OpProfile {
    private var totals = [Double](repeating: 0, count: OpClass.allCases.count)

    public init() {}

    public subscript(_ op: OpClass) -> Double { totals[Self.index(op)] }

    public func add(_ op: OpClass, seconds: Double) { totals[Self.index(op)] += seconds }

    public func reset() { totals = totals.map { _ in 0 } }

    public var total: Double { totals.reduce(0, +) }

    /// Runs `body`, adding its wall-clock time to `op`.
    @inline(__always)
    public func measure<R>(_ op: OpClass, _ body: () throws -> R) rethrows -> R {
        let start = OpProfile.now()
        defer { add(op, seconds: OpProfile.now() - start) }
        return try body()
    }

    @inline(__always)
    public static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    private static func index(_ op: OpClass) -> Int { OpClass.allCases.firstIndex(of: op)! }
}

/// Thread time of the softmax part and of the whole body of a parallel loop over attention heads:
/// their ratio splits the loop's wall-clock time between `.softmax` and `.attention`.
final class HeadTimes: @unchecked Sendable {
    private let lock = NSLock()
    private var softmax = 0.0
    private var all = 0.0

    func add(softmax: Double, all: Double) {
        lock.lock()
        self.softmax += softmax
        self.all += all
        lock.unlock()
    }

    var softmaxShare: Double { all > 0 ? softmax / all : 0 }
}
