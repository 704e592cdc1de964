import Kernels
import Training
import XCTest

/// AdamW and LAMB against torch.optim.AdamW, Google's AdamWeightDecay and a numpy LAMB
/// (`scripts/make_optimizer_fixtures.py`), step by step, to 1e-6 relative.
final class OptimizerTests: XCTestCase {
    private struct Fixture {
        var tensors: [(range: Range<Int>, decays: Bool)] = []
        var initial: [Float] = []
        var gradients: [[Float]] = []
        var learningRate = 0.0, beta1 = 0.0, beta2 = 0.0, epsilon = 0.0, weightDecay = 0.0
        var cases: [String: [[Double]]] = [:]
        var clipNorms: [Double] = []
    }

    private func fixture() throws -> Fixture {
        let json = try loadFixture("optimizer.json")
        var f = Fixture()
        var offset = 0
        for tensor in try XCTUnwrap(json["tensors"] as? [[String: Any]]) {
            let count = try XCTUnwrap(tensor["count"] as? Int)
            f.tensors.append((offset..<offset + count, try XCTUnwrap(tensor["decays"] as? Bool)))
            offset += count
        }
        f.initial = doubles(json["initial"]).map(Float.init)
        f.gradients = try XCTUnwrap(json["gradients"] as? [Any]).map { doubles($0).map(Float.init) }
        let h = try XCTUnwrap(json["hyperparameters"] as? [String: Double])
        f.learningRate = h["learning_rate"]!
        f.beta1 = h["beta1"]!
        f.beta2 = h["beta2"]!
        f.epsilon = h["epsilon"]!
        f.weightDecay = h["weight_decay"]!
        for (name, value) in try XCTUnwrap(json["cases"] as? [String: Any]) {
            f.cases[name] = (value as? [Any] ?? []).map { doubles($0) }
        }
        f.clipNorms = doubles(json["clip_norms_before_clipping"])
        XCTAssertEqual(f.initial.count, offset)
        return f
    }

    private func run(_ kind: Optimizer.Kind, biasCorrection: Bool, maxGradNorm: Double = 0, expectedCase: String) throws {
        let f = try fixture()
        let expected = try XCTUnwrap(f.cases[expectedCase])
        XCTAssertEqual(expected.count, f.gradients.count)
        let n = f.initial.count
        let optimizer = Optimizer(kind: kind, beta1: f.beta1, beta2: f.beta2, epsilon: f.epsilon,
                                  weightDecay: f.weightDecay, biasCorrection: biasCorrection, tensors: f.tensors)
        var w = f.initial, m = [Float](repeating: 0, count: n), v = [Float](repeating: 0, count: n)
        for (index, gradients) in f.gradients.enumerated() {
            var g = gradients
            w.withUnsafeMutableBufferPointer { w in
                m.withUnsafeMutableBufferPointer { m in
                    v.withUnsafeMutableBufferPointer { v in
                        g.withUnsafeMutableBufferPointer { g in
                            var scale: Float = 1
                            if maxGradNorm > 0 {
                                let stats = Optimizer.gradientStatistics(UnsafeBufferPointer(g))
                                XCTAssertEqual(stats.norm, f.clipNorms[index], accuracy: 1e-6 * f.clipNorms[index])
                                scale = Optimizer.clipScale(norm: stats.norm, maxNorm: maxGradNorm)
                            }
                            optimizer.step(parameters: w, gradients: g, m: m, v: v, learningRate: f.learningRate,
                                           step: index + 1, gradientScale: scale)
                        }
                    }
                }
            }
            XCTAssertEqual(g, gradients, "the optimizer must not modify the gradients")
            var worst = 0.0
            for (actual, reference) in zip(w, expected[index]) {
                worst = max(worst, abs(Double(actual) - reference) / abs(reference))
            }
            XCTAssertLessThan(worst, 1e-6, "\(expectedCase): step \(index + 1) worst relative error \(worst)")
        }
    }

    func testAdamWWithBiasCorrectionMatchesTorch() throws {
        try run(.adamw, biasCorrection: true, expectedCase: "adamw_bias_correction")
    }

    func testAdamWWithoutBiasCorrectionMatchesGoogleAdamWeightDecay() throws {
        try run(.adamw, biasCorrection: false, expectedCase: "adamw_no_bias_correction")
    }

    func testLAMBWithBiasCorrectionMatchesReference() throws {
        try run(.lamb, biasCorrection: true, expectedCase: "lamb_bias_correction")
    }

    func testLAMBWithoutBiasCorrectionMatchesReference() throws {
        try run(.lamb, biasCorrection: false, expectedCase: "lamb_no_bias_correction")
    }

    func testClippingMatchesTorchClipGradNorm() throws {
        try run(.adamw, biasCorrection: true, maxGradNorm: 1.0, expectedCase: "adamw_bias_correction_clip_1.0")
    }

    /// Segments and ordered partial sums make the result independent of the thread count, bit for bit.
    func testResultsDoNotDependOnThreadCount() {
        let sizes = [70_001, 384, 131_073, 17, 200_000]
        var tensors: [(range: Range<Int>, decays: Bool)] = []
        var offset = 0
        for (i, size) in sizes.enumerated() {
            tensors.append((offset..<offset + size, i % 2 == 0))
            offset += size
        }
        let rng = Philox(seed: 7)
        let w0 = (0..<offset).map { rng.uniform(at: UInt64($0)) - 0.5 }
        let g0 = (0..<offset).map { (rng.uniform(at: UInt64($0 + offset)) - 0.5) * 0.1 }
        func run(workers: Int, _ kind: Optimizer.Kind) -> ([Float], Double) {
            let saved = Parallel.workerCount
            Parallel.workerCount = workers
            defer { Parallel.workerCount = saved }
            let optimizer = Optimizer(kind: kind, tensors: tensors)
            var w = w0, g = g0, m = [Float](repeating: 0, count: offset), v = m
            var norm = 0.0
            for step in 1...3 {
                w.withUnsafeMutableBufferPointer { w in
                    g.withUnsafeMutableBufferPointer { g in
                        m.withUnsafeMutableBufferPointer { m in
                            v.withUnsafeMutableBufferPointer { v in
                                norm = Optimizer.gradientStatistics(UnsafeBufferPointer(g)).norm
                                optimizer.step(parameters: w, gradients: g, m: m, v: v, learningRate: 1e-3, step: step)
                            }
                        }
                    }
                }
            }
            return (w, norm)
        }
        for kind in [Optimizer.Kind.adamw, .lamb] {
            let one = run(workers: 1, kind), four = run(workers: 4, kind)
            XCTAssertEqual(one.0, four.0, "\(kind)")
            XCTAssertEqual(one.1, four.1, "\(kind)")
            XCTAssertNotEqual(one.0, w0)
        }
    }

    func testGradientStatisticsAgreeWithDoubleSumAndDetectNonFinite() {
        let n = 100_003
        let rng = Philox(seed: 3)
        var g = (0..<n).map { (rng.uniform(at: UInt64($0)) - 0.5) * 4 }
        let exact = g.reduce(0.0) { $0 + Double($1) * Double($1) }
        var stats = g.withUnsafeBufferPointer { Optimizer.gradientStatistics($0) }
        XCTAssertTrue(stats.isFinite)
        XCTAssertEqual(stats.sumOfSquares, exact, accuracy: exact * 1e-6)
        for (position, bad) in [(5, Float.nan), (n - 1, Float.infinity), (65_536 + 40, -Float.infinity)] {
            let saved = g[position]
            g[position] = bad
            stats = g.withUnsafeBufferPointer { Optimizer.gradientStatistics($0) }
            XCTAssertFalse(stats.isFinite, "\(bad) at \(position) not detected")
            g[position] = saved
        }
    }

    func testClipScaleFollowsTorchRule() {
        XCTAssertEqual(Optimizer.clipScale(norm: 4, maxNorm: 1), Float(1 / (4 + 1e-6)))
        XCTAssertEqual(Optimizer.clipScale(norm: 0.5, maxNorm: 1), 1)
        XCTAssertEqual(Optimizer.clipScale(norm: 4, maxNorm: 0), 1)
        var buffer: [Float] = (0..<40).map(Float.init)
        buffer.withUnsafeMutableBufferPointer { Optimizer.scale($0, by: 0.5) }
        XCTAssertEqual(buffer, (0..<40).map { Float($0) * 0.5 })
    }
}
