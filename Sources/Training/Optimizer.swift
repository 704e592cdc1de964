import Foundation
import Kernels

/// Sum of squares and finiteness of a gradient buffer, from one pass over it.
public struct GradientStatistics: Equatable, Sendable {
    /// Sum of g^2 over the buffer, accumulated in Double.
    public var sumOfSquares: Double
    /// False when any element is NaN or +-Inf.
    public var isFinite: Bool
    /// Global L2 norm. Infinite when the squares overflow Float (|g| > 1.8e19) even if every g is finite.
    public var norm: Double { sumOfSquares.squareRoot() }
}

/// AdamW (decoupled weight decay, as in BERT) and LAMB (You et al. 2019) over flat buffers.
///
/// Parameters, gradients and the two moment buffers share one layout; `tensors` lists the flat range of
/// every tensor and whether it takes weight decay (not LayerNorm weights and biases). The work is cut
/// into fixed segments of at most `segmentSize` elements that never straddle a tensor, and every sum is
/// combined segment by segment in a fixed order: results do not depend on the number of threads.
///
/// Update, per element, with g scaled by `gradientScale` (clipping):
///
///     m = beta1 m + (1 - beta1) g            v = beta2 v + (1 - beta2) g^2
///     m^ = m / (1 - beta1^t), v^ = v / (1 - beta2^t)   (without bias correction m^ = m, v^ = v)
///     u = m^ / (sqrt(v^) + epsilon) + weightDecay w     (decay only where the tensor decays)
///     AdamW: w -= lr u
///     LAMB:  w -= lr r u,  r = ||w|| / ||u|| per tensor, r = 1 when either norm is 0
///
/// With bias correction AdamW equals `torch.optim.AdamW`; without, Google BERT's AdamWeightDecayOptimizer.
public final class Optimizer {
    public enum Kind: String, Sendable { case adamw, lamb }

    public let kind: Kind
    public let beta1: Double
    public let beta2: Double
    public let epsilon: Double
    public let weightDecay: Double
    public let biasCorrection: Bool
    /// The tensors' flat ranges (sorted, disjoint) and decay flags, as given.
    public let tensors: [(range: Range<Int>, decays: Bool)]
    /// One past the last element any tensor covers: buffers must hold at least this many floats.
    public let requiredCount: Int

    /// Longest run of elements processed as one unit (and one partial sum).
    public static let segmentSize = 65_536

    private struct Segment { var start: Int; var count: Int; var tensor: Int; var decays: Bool }
    private let segments: [Segment]
    /// LAMB: per segment (sum w^2, sum u^2); per tensor the step multiplier lr * r.
    private let segmentSums: UnsafeMutablePointer<Double>
    private let tensorStep: UnsafeMutablePointer<Float>

    /// - Parameter tensors: flat ranges, sorted and disjoint (gaps are left untouched), with decay flags.
    public init(kind: Kind, beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-6,
                weightDecay: Double = 0.01, biasCorrection: Bool = true, tensors: [(range: Range<Int>, decays: Bool)]) {
        for (a, b) in zip(tensors, tensors.dropFirst()) {
            precondition(a.range.upperBound <= b.range.lowerBound, "optimizer tensor ranges must be sorted and disjoint")
        }
        self.kind = kind
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.biasCorrection = biasCorrection
        self.tensors = tensors
        requiredCount = tensors.last?.range.upperBound ?? 0
        var segments: [Segment] = []
        for (index, tensor) in tensors.enumerated() {
            var start = tensor.range.lowerBound
            while start < tensor.range.upperBound {
                let count = min(Optimizer.segmentSize, tensor.range.upperBound - start)
                segments.append(Segment(start: start, count: count, tensor: index, decays: tensor.decays))
                start += count
            }
        }
        self.segments = segments
        segmentSums = .allocate(capacity: 2 * max(segments.count, 1))
        tensorStep = .allocate(capacity: max(tensors.count, 1))
    }

    /// The optimizer a run configuration asks for.
    public convenience init(settings: TrainingConfig.OptimizerSettings, tensors: [(range: Range<Int>, decays: Bool)]) {
        self.init(kind: settings.name == .lamb ? .lamb : .adamw, beta1: settings.beta1, beta2: settings.beta2,
                  epsilon: settings.epsilon, weightDecay: settings.weightDecay,
                  biasCorrection: settings.biasCorrection, tensors: tensors)
    }

    deinit {
        segmentSums.deallocate()
        tensorStep.deallocate()
    }

    /// One update of `parameters`, `m` and `v` from `gradients` (read only, multiplied by `gradientScale`).
    /// - Parameters:
    ///   - learningRate: this update's rate, e.g. `schedule.lr(step: t - 1)`.
    ///   - step: the 1-based number t of this update, for bias correction.
    public func step(parameters: UnsafeMutableBufferPointer<Float>, gradients: UnsafeMutableBufferPointer<Float>,
                     m: UnsafeMutableBufferPointer<Float>, v: UnsafeMutableBufferPointer<Float>,
                     learningRate: Double, step t: Int, gradientScale: Float = 1) {
        precondition(parameters.count >= requiredCount && gradients.count >= requiredCount
                     && m.count >= requiredCount && v.count >= requiredCount,
                     "optimizer buffers hold fewer than \(requiredCount) floats")
        precondition(t >= 1, "optimizer step numbers start at 1")
        let w = parameters.baseAddress!, g = UnsafePointer(gradients.baseAddress!)
        let m = m.baseAddress!, v = v.baseAddress!
        let mScale = Float(biasCorrection ? 1 / (1 - pow(beta1, Double(t))) : 1)
        let vScale = Float(biasCorrection ? 1 / (1 - pow(beta2, Double(t))) : 1)
        // The complements are taken in Double: 1 - Float(0.999) is 1.3e-5 (relative) away from 0.001.
        let b1 = Float(beta1), b2 = Float(beta2), c1 = Float(1 - beta1), c2 = Float(1 - beta2)
        let eps = Float(epsilon), wd = Float(weightDecay)
        let segments = self.segments

        switch kind {
        case .adamw:
            let lr = Float(learningRate)
            forEachSegment { s in
                let seg = segments[s]
                adamwUpdate(w + seg.start, m + seg.start, v + seg.start, g + seg.start, count: seg.count,
                            learningRate: lr, beta1: b1, oneMinusBeta1: c1, beta2: b2, oneMinusBeta2: c2, epsilon: eps, weightDecay: seg.decays ? wd : 0,
                            gradientScale: gradientScale, mScale: mScale, vScale: vScale)
            }
        case .lamb:
            let sums = segmentSums
            forEachSegment { s in
                let seg = segments[s]
                let (ww, uu) = lambMoments(m + seg.start, v + seg.start, w + seg.start, g + seg.start, count: seg.count,
                                           beta1: b1, oneMinusBeta1: c1, beta2: b2, oneMinusBeta2: c2, epsilon: eps, weightDecay: seg.decays ? wd : 0,
                                           gradientScale: gradientScale, mScale: mScale, vScale: vScale)
                sums[2 * s] = ww
                sums[2 * s + 1] = uu
            }
            // Trust ratio per tensor; segments of one tensor are consecutive and summed in order.
            var s = 0
            for tensor in tensors.indices {
                var ww = 0.0, uu = 0.0
                while s < segments.count, segments[s].tensor == tensor {
                    ww += sums[2 * s]
                    uu += sums[2 * s + 1]
                    s += 1
                }
                let ratio = ww > 0 && uu > 0 ? (ww / uu).squareRoot() : 1
                tensorStep[tensor] = Float(learningRate * ratio)
            }
            let steps = tensorStep
            forEachSegment { s in
                let seg = segments[s]
                lambApply(w + seg.start, m + seg.start, v + seg.start, count: seg.count, step: steps[seg.tensor],
                          epsilon: eps, weightDecay: seg.decays ? wd : 0, mScale: mScale, vScale: vScale)
            }
        }
    }

    /// Runs `body(segmentIndex)` for every segment, spread over `Parallel.workerCount` threads when the
    /// buffers are large enough to pay for it.
    private func forEachSegment(_ body: (Int) -> Void) {
        let count = segments.count
        let elementsPerSegment = max(1, requiredCount / max(count, 1))
        Parallel.forEachChunk(count, minimumChunk: max(1, 32_768 / elementsPerSegment)) { range in
            for s in range { body(s) }
        }
    }

    // MARK: - Gradient checks and clipping

    /// Sum of squares (for the global norm) and NaN/Inf detection over a gradient buffer, in one pass,
    /// multi-threaded. Partial sums are taken over fixed blocks and added in order, so the result does
    /// not depend on the thread count.
    public static func gradientStatistics(_ gradients: UnsafeBufferPointer<Float>) -> GradientStatistics {
        let n = gradients.count
        guard n > 0, let g = gradients.baseAddress else { return GradientStatistics(sumOfSquares: 0, isFinite: true) }
        let blocks = (n + segmentSize - 1) / segmentSize
        var partial = [Double](repeating: 0, count: blocks)
        var finite = [Bool](repeating: true, count: blocks)
        partial.withUnsafeMutableBufferPointer { partial in
            finite.withUnsafeMutableBufferPointer { finite in
                Parallel.forEachChunk(blocks, minimumChunk: max(1, 32_768 / segmentSize)) { range in
                    for block in range {
                        let start = block * segmentSize
                        let (sum, ok) = sumOfSquares(g + start, count: min(segmentSize, n - start))
                        partial[block] = sum
                        finite[block] = ok
                    }
                }
            }
        }
        return GradientStatistics(sumOfSquares: partial.reduce(0, +), isFinite: !finite.contains(false))
    }

    /// The factor `torch.nn.utils.clip_grad_norm_` multiplies gradients by: max / (norm + 1e-6), at most 1.
    /// 1 when `maxNorm` is 0 (clipping disabled) or the norm is not finite.
    public static func clipScale(norm: Double, maxNorm: Double) -> Float {
        guard maxNorm > 0, norm.isFinite else { return 1 }
        return Float(min(1, maxNorm / (norm + 1e-6)))
    }

    /// Multiplies a buffer by `factor` in place (e.g. clipping applied to the gradients themselves).
    public static func scale(_ buffer: UnsafeMutableBufferPointer<Float>, by factor: Float) {
        guard let p = buffer.baseAddress else { return }
        Parallel.forEachChunk(buffer.count) { range in
            var i = range.lowerBound
            let f = SIMD16<Float>(repeating: factor)
            while i + 16 <= range.upperBound {
                store16(load16(p + i) * f, p + i)
                i += 16
            }
            while i < range.upperBound { p[i] *= factor; i += 1 }
        }
    }
}

// MARK: - Kernels

@inline(__always) private func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}

@inline(__always) private func load16(_ p: UnsafeMutablePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}

@inline(__always) private func store16(_ x: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: x, as: SIMD16<Float>.self)
}

// `squareRoot()` on SIMD16 compiles to one vsqrtps only because the Training target is built with
// -Xcc -fno-math-errno (see Package.swift); otherwise it is 16 scalar libm-style square roots.

/// AdamW on one run of elements. w, m, v, g are (n); weightDecay is 0 for tensors that do not decay.
private func adamwUpdate(_ w: UnsafeMutablePointer<Float>, _ m: UnsafeMutablePointer<Float>,
                         _ v: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, count n: Int,
                         learningRate: Float, beta1: Float, oneMinusBeta1: Float, beta2: Float,
                         oneMinusBeta2: Float, epsilon: Float, weightDecay: Float,
                         gradientScale: Float, mScale: Float, vScale: Float) {
    let b1 = SIMD16<Float>(repeating: beta1), c1 = SIMD16<Float>(repeating: oneMinusBeta1)
    let b2 = SIMD16<Float>(repeating: beta2), c2 = SIMD16<Float>(repeating: oneMinusBeta2)
    let eps = SIMD16<Float>(repeating: epsilon), wd = SIMD16<Float>(repeating: weightDecay)
    let lr = SIMD16<Float>(repeating: learningRate), gs = SIMD16<Float>(repeating: gradientScale)
    let ms = SIMD16<Float>(repeating: mScale), vs = SIMD16<Float>(repeating: vScale)
    var i = 0
    while i + 16 <= n {
        let gi = load16(g + i) * gs
        let mi = b1 * load16(m + i) + c1 * gi
        let vi = b2 * load16(v + i) + c2 * gi * gi
        let wi = load16(w + i)
        let u = (mi * ms) / ((vi * vs).squareRoot() + eps) + wd * wi
        store16(mi, m + i)
        store16(vi, v + i)
        store16(wi - lr * u, w + i)
        i += 16
    }
    while i < n {
        let gi = g[i] * gradientScale
        let mi = beta1 * m[i] + oneMinusBeta1 * gi
        let vi = beta2 * v[i] + oneMinusBeta2 * gi * gi
        let u = (mi * mScale) / ((vi * vScale).squareRoot() + epsilon) + weightDecay * w[i]
        m[i] = mi
        v[i] = vi
        w[i] -= learningRate * u
        i += 1
    }
}

/// LAMB pass 1 on one run: updates m and v, returns (sum w^2, sum u^2) of the update direction u.
private func lambMoments(_ m: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>,
                         _ w: UnsafePointer<Float>, _ g: UnsafePointer<Float>, count n: Int,
                         beta1: Float, oneMinusBeta1: Float, beta2: Float, oneMinusBeta2: Float,
                         epsilon: Float, weightDecay: Float,
                         gradientScale: Float, mScale: Float, vScale: Float) -> (Double, Double) {
    let b1 = SIMD16<Float>(repeating: beta1), c1 = SIMD16<Float>(repeating: oneMinusBeta1)
    let b2 = SIMD16<Float>(repeating: beta2), c2 = SIMD16<Float>(repeating: oneMinusBeta2)
    let eps = SIMD16<Float>(repeating: epsilon), wd = SIMD16<Float>(repeating: weightDecay)
    let gs = SIMD16<Float>(repeating: gradientScale)
    let ms = SIMD16<Float>(repeating: mScale), vs = SIMD16<Float>(repeating: vScale)
    var sumW = 0.0, sumU = 0.0
    var i = 0
    // Float accumulators over blocks of 1024 elements, then Double: fast and accurate enough.
    while i + 16 <= n {
        let blockEnd = min(n, i + 1024)
        var accW = SIMD16<Float>(), accU = SIMD16<Float>()
        while i + 16 <= blockEnd {
            let gi = load16(g + i) * gs
            let mi = b1 * load16(m + i) + c1 * gi
            let vi = b2 * load16(v + i) + c2 * gi * gi
            let wi = load16(w + i)
            let u = (mi * ms) / ((vi * vs).squareRoot() + eps) + wd * wi
            store16(mi, m + i)
            store16(vi, v + i)
            accW += wi * wi
            accU += u * u
            i += 16
        }
        sumW += Double(accW.sum())
        sumU += Double(accU.sum())
    }
    while i < n {
        let gi = g[i] * gradientScale
        let mi = beta1 * m[i] + oneMinusBeta1 * gi
        let vi = beta2 * v[i] + oneMinusBeta2 * gi * gi
        let u = (mi * mScale) / ((vi * vScale).squareRoot() + epsilon) + weightDecay * w[i]
        m[i] = mi
        v[i] = vi
        sumW += Double(w[i] * w[i])
        sumU += Double(u * u)
        i += 1
    }
    return (sumW, sumU)
}

/// LAMB pass 2 on one run: recomputes u from the updated moments and applies w -= step u (step = lr r).
private func lambApply(_ w: UnsafeMutablePointer<Float>, _ m: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
                       count n: Int, step: Float, epsilon: Float, weightDecay: Float, mScale: Float, vScale: Float) {
    let eps = SIMD16<Float>(repeating: epsilon), wd = SIMD16<Float>(repeating: weightDecay)
    let ms = SIMD16<Float>(repeating: mScale), vs = SIMD16<Float>(repeating: vScale)
    let st = SIMD16<Float>(repeating: step)
    var i = 0
    while i + 16 <= n {
        let wi = load16(w + i)
        let u = (load16(m + i) * ms) / ((load16(v + i) * vs).squareRoot() + eps) + wd * wi
        store16(wi - st * u, w + i)
        i += 16
    }
    while i < n {
        let u = (m[i] * mScale) / ((v[i] * vScale).squareRoot() + epsilon) + weightDecay * w[i]
        w[i] -= step * u
        i += 1
    }
}

/// Sum of g^2 over one block (Float lanes per 1024 elements, then Double) and whether every g is finite:
/// g * 0 is NaN exactly for NaN and +-Inf, so one NaN-propagating accumulator detects both.
private func sumOfSquares(_ g: UnsafePointer<Float>, count n: Int) -> (Double, Bool) {
    var sum = 0.0
    var probe = SIMD16<Float>()
    let zero = SIMD16<Float>()
    var i = 0
    while i + 16 <= n {
        let blockEnd = min(n, i + 1024)
        var acc0 = SIMD16<Float>(), acc1 = SIMD16<Float>()
        while i + 32 <= blockEnd {
            let a = load16(g + i), b = load16(g + i + 16)
            acc0 += a * a
            acc1 += b * b
            probe += a * zero + b * zero
            i += 32
        }
        if i + 16 <= blockEnd {
            let a = load16(g + i)
            acc0 += a * a
            probe += a * zero
            i += 16
        }
        sum += Double((acc0 + acc1).sum())
    }
    var finite = probe.sum() == 0
    while i < n {
        sum += Double(g[i]) * Double(g[i])
        if !g[i].isFinite { finite = false }
        i += 1
    }
    return (sum, finite)
}
