import Foundation
import Kernels
import XCTest

/// Every kernel's forward against an independent double-precision implementation written here, and its
/// backward against central finite differences of that double-precision forward. The loss is
/// sum(out * g) for a random g, so backward receives dout = g. Parameter gradients must be ADDED:
/// their buffers start at a non-zero value that the test subtracts.
final class KernelGradientTests: XCTestCase {
    // MARK: - Helpers

    /// Reproducible values in [-scale, scale).
    func random(_ count: Int, seed: UInt64, scale: Double = 1) -> [Double] {
        let generator = Philox(seed: seed, 0xC0FFEE)
        return (0..<count).map { scale * (2 * Double(generator.uniform(at: UInt64($0))) - 1) }
    }

    func floats(_ values: [Double]) -> [Float] { values.map { Float($0) } }

    /// Central differences of `loss` at `x`, in double precision.
    func finiteDifferences(_ x: [Double], step h: Double = 1e-6, _ loss: ([Double]) -> Double) -> [Double] {
        var x = x
        return x.indices.map { i in
            let saved = x[i]
            x[i] = saved + h
            let plus = loss(x)
            x[i] = saved - h
            let minus = loss(x)
            x[i] = saved
            return (plus - minus) / (2 * h)
        }
    }

    func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

    /// max |actual - expected| <= tolerance * max(max |expected|, 1).
    func assertClose(
        _ actual: [Float], _ expected: [Double], _ tolerance: Double, _ what: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(actual.count, expected.count, what, file: file, line: line)
        let scale = max(expected.map { abs($0) }.max() ?? 0, 1)
        let error = zip(actual, expected).map { abs(Double($0) - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(error, tolerance * scale, "\(what): max error \(error) (scale \(scale))", file: file, line: line)
    }

    /// Gradients that were added onto `initial`.
    func added(_ buffer: [Float], initial: Float) -> [Float] { buffer.map { $0 - initial } }

    // MARK: - Linear

    func referenceLinear(_ x: [Double], _ w: [Double], _ b: [Double], _ N: Int, _ C: Int, _ OC: Int) -> [Double] {
        var out = [Double](repeating: 0, count: N * OC)
        for n in 0..<N {
            for o in 0..<OC {
                var s = b[o]
                for c in 0..<C { s += x[n * C + c] * w[o * C + c] }
                out[n * OC + o] = s
            }
        }
        return out
    }

    func testLinearForwardAndBackward() {
        let N = 5, C = 19, OC = 34
        let x = random(N * C, seed: 1), w = random(OC * C, seed: 2), b = random(OC, seed: 3), g = random(N * OC, seed: 4)
        var out = [Float](repeating: 0, count: N * OC)
        linearForward(&out, floats(x), floats(w), floats(b), rows: N, inputSize: C, outputSize: OC)
        assertClose(out, referenceLinear(x, w, b, N, C, OC), 1e-6, "linear forward")

        var dx = [Float](repeating: 0, count: N * C)
        var dw = [Float](repeating: 0.5, count: OC * C), db = [Float](repeating: 0.5, count: OC)
        linearBackward(&dx, &dw, &db, floats(g), floats(x), floats(w), rows: N, inputSize: C, outputSize: OC)
        assertClose(dx, finiteDifferences(x) { dot(referenceLinear($0, w, b, N, C, OC), g) }, 1e-5, "linear dinp")
        assertClose(added(dw, initial: 0.5), finiteDifferences(w) { dot(referenceLinear(x, $0, b, N, C, OC), g) }, 1e-5, "linear dweight")
        assertClose(added(db, initial: 0.5), finiteDifferences(b) { dot(referenceLinear(x, w, $0, N, C, OC), g) }, 1e-5, "linear dbias")

        // accumulateInput adds the input gradient too.
        var dxAdded = [Float](repeating: 2, count: N * C)
        linearBackward(&dxAdded, nil, nil, floats(g), floats(x), floats(w), rows: N, inputSize: C, outputSize: OC, accumulateInput: true)
        assertClose(added(dxAdded, initial: 2), dx.map { Double($0) }, 1e-6, "linear accumulated dinp")
    }

    func testBiasBackwardSumsColumnsForWideAndNarrowShapes() {
        for (N, OC) in [(7, 16), (3, 5), (40, 67), (9, 300)] {
            let g = random(N * OC, seed: 5)
            var db = [Float](repeating: 1, count: OC)
            biasBackward(&db, floats(g), rows: N, columns: OC)
            let expected = (0..<OC).map { o in (0..<N).reduce(0.0) { $0 + g[$1 * OC + o] } }
            assertClose(added(db, initial: 1), expected, 1e-6, "bias backward \(N)x\(OC)")
        }
    }

    // MARK: - Embeddings

    func testEmbeddingForwardAndScatterAddBackwardSkipsPadding() {
        let B = 2, T = 5, C = 21, V = 7, P = 6, types = 2
        let ids: [Int32] = [1, 4, 4, 0, 0, 2, 6, 1, 3, 4]
        let typeIDs: [Int32] = [0, 0, 1, 1, 0, 0, 1, 1, 1, 0]
        let wte = random(V * C, seed: 6), wpe = random(P * C, seed: 7), wtt = random(types * C, seed: 8)
        let g = random(B * T * C, seed: 9)
        func reference(_ wte: [Double], _ wpe: [Double], _ wtt: [Double]) -> [Double] {
            (0..<(B * T * C)).map { i in
                let n = i / C, c = i % C
                return wte[Int(ids[n]) * C + c] + wpe[(n % T) * C + c] + wtt[Int(typeIDs[n]) * C + c]
            }
        }
        var out = [Float](repeating: 0, count: B * T * C)
        embeddingForward(&out, ids, typeIDs, floats(wte), floats(wpe), floats(wtt), batch: B, length: T, channels: C)
        assertClose(out, reference(wte, wpe, wtt), 1e-6, "embedding forward")

        var dwte = [Float](repeating: 0.25, count: V * C), dwpe = [Float](repeating: 0.25, count: P * C)
        var dwtt = [Float](repeating: 0.25, count: types * C)
        embeddingBackward(&dwte, &dwpe, &dwtt, floats(g), ids, typeIDs, paddingID: 0, batch: B, length: T, channels: C)
        var expectedWTE = finiteDifferences(wte) { dot(reference($0, wpe, wtt), g) }
        for c in 0..<C { expectedWTE[c] = 0 }  // id 0 is padding: no gradient from the lookup
        assertClose(added(dwte, initial: 0.25), expectedWTE, 1e-5, "embedding dwte")
        assertClose(added(dwpe, initial: 0.25), finiteDifferences(wpe) { dot(reference(wte, $0, wtt), g) }, 1e-5, "embedding dwpe")
        assertClose(added(dwtt, initial: 0.25), finiteDifferences(wtt) { dot(reference(wte, wpe, $0), g) }, 1e-5, "embedding dwtt")
    }

    func testGatherRowsAndScatterAddRows() {
        let N = 6, C = 18, indices: [Int32] = [4, 1, 4]
        let x = random(N * C, seed: 10), g = random(indices.count * C, seed: 11)
        var out = [Float](repeating: 0, count: indices.count * C)
        gatherRows(&out, floats(x), indices, count: indices.count, channels: C)
        let reference: ([Double]) -> [Double] = { x in
            indices.flatMap { Array(x[(Int($0) * C)..<(Int($0) * C + C)]) }
        }
        assertClose(out, reference(x), 0, "gather")
        var dx = [Float](repeating: 1, count: N * C)
        scatterAddRows(&dx, floats(g), indices, count: indices.count, channels: C)
        assertClose(added(dx, initial: 1), finiteDifferences(x) { dot(reference($0), g) }, 1e-5, "scatter-add")
    }

    /// expandRows undoes a gather of ascending rows: the gathered rows go back, the others become 0;
    /// in place, and into every third of a wider row.
    func testExpandRowsPutsGatheredRowsBackAndZeroesTheOthers() {
        let N = 7, C = 5, indices: [Int32] = [0, 2, 3, 6]
        let x = floats(random(N * C, seed: 12))
        var expected = [Float](repeating: 0, count: N * C)
        for i in indices { for c in 0..<C { expected[Int(i) * C + c] = x[Int(i) * C + c] } }

        var buffer = [Float](repeating: -1, count: N * C)
        buffer.withUnsafeMutableBufferPointer { b in
            gatherRows(b.baseAddress!, x, indices, count: indices.count, channels: C)
            expandRows(b.baseAddress!, b.baseAddress!, indices, count: indices.count, rows: N, channels: C)
        }
        XCTAssertEqual(buffer, expected, "in place")

        var gathered = [Float](repeating: 0, count: indices.count * C)
        var wide = [Float](repeating: 9, count: N * 3 * C)
        gatherRows(&gathered, x, indices, count: indices.count, channels: C)
        expandRows(&wide, gathered, indices, count: indices.count, rows: N, channels: C, outputStride: 3 * C)
        for n in 0..<N {
            XCTAssertEqual(Array(wide[(n * 3 * C)..<(n * 3 * C + C)]), Array(expected[(n * C)..<(n * C + C)]), "row \(n)")
            XCTAssertEqual(Array(wide[(n * 3 * C + C)..<(n * 3 * C + 3 * C)]), [Float](repeating: 9, count: 2 * C))
        }
    }

    // MARK: - LayerNorm

    func referenceLayerNorm(_ x: [Double], _ w: [Double], _ b: [Double], _ N: Int, _ C: Int, _ eps: Double) -> [Double] {
        var out = [Double](repeating: 0, count: N * C)
        for n in 0..<N {
            let row = x[(n * C)..<(n * C + C)]
            let mean = row.reduce(0, +) / Double(C)
            let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(C)
            let rstd = 1 / (variance + eps).squareRoot()
            for c in 0..<C { out[n * C + c] = (x[n * C + c] - mean) * rstd * w[c] + b[c] }
        }
        return out
    }

    func testLayerNormForwardAndBackward() {
        for C in [23, 48] {
            let N = 4, eps = 1e-5
            let x = random(N * C, seed: 12, scale: 2).map { $0 + 0.7 }, w = random(C, seed: 13).map { 1 + 0.3 * $0 }
            let b = random(C, seed: 14), g = random(N * C, seed: 15)
            var out = [Float](repeating: 0, count: N * C), mean = [Float](repeating: 0, count: N), rstd = mean
            layerNormForward(&out, &mean, &rstd, floats(x), floats(w), floats(b), rows: N, columns: C, epsilon: Float(eps))
            assertClose(out, referenceLayerNorm(x, w, b, N, C, eps), 2e-6, "layernorm forward C=\(C)")

            var dx = [Float](repeating: 0, count: N * C)
            var dw = [Float](repeating: 0.5, count: C), db = [Float](repeating: 0.5, count: C)
            layerNormBackward(&dx, &dw, &db, floats(g), floats(x), floats(w), mean, rstd, rows: N, columns: C)
            assertClose(dx, finiteDifferences(x) { dot(referenceLayerNorm($0, w, b, N, C, eps), g) }, 2e-5, "layernorm dinp C=\(C)")
            assertClose(added(dw, initial: 0.5), finiteDifferences(w) { dot(referenceLayerNorm(x, $0, b, N, C, eps), g) }, 2e-5, "layernorm dweight")
            assertClose(added(db, initial: 0.5), finiteDifferences(b) { dot(referenceLayerNorm(x, w, $0, N, C, eps), g) }, 2e-5, "layernorm dbias")

            // In place: dinp may alias dout.
            var inPlace = floats(g)
            var dw2 = [Float](repeating: 0, count: C), db2 = dw2
            inPlace.withUnsafeMutableBufferPointer { buffer in
                layerNormBackward(buffer.baseAddress!, &dw2, &db2, buffer.baseAddress!, floats(x), floats(w), mean, rstd, rows: N, columns: C)
            }
            assertClose(inPlace, dx.map { Double($0) }, 1e-6, "layernorm in place")
        }
    }

    /// sum = residual + dropout(inp + inpBias), out = LayerNorm(sum); its backward in the model is
    /// layerNormBackward, then dropoutBackward and biasBackward, with d(residual) = d(sum).
    func testResidualLayerNormWithDropoutForwardAndBackward() {
        let N = 6, C = 37, eps = 1e-12
        let x = random(N * C, seed: 16), bias = random(C, seed: 17), residual = random(N * C, seed: 18)
        let w = random(C, seed: 19).map { 1 + 0.2 * $0 }, b = random(C, seed: 20), g = random(N * C, seed: 21)
        let samples = [3, 11]
        samples.withUnsafeBufferPointer { samples in
            let dropout = DropoutMask(
                probability: 0.3, seed: 9, step: 2, layer: 1, site: 2, sampleIndices: samples.baseAddress!, rowsPerSample: 3)
            var multipliers = [Float](repeating: 0, count: N * C)
            let ones = [Float](repeating: 1, count: N * C)
            dropoutForward(&multipliers, ones, dropout, rows: N, columns: C)
            let m = multipliers.map { Double($0) }
            func reference(_ x: [Double], _ bias: [Double], _ residual: [Double]) -> [Double] {
                let sum = (0..<(N * C)).map { residual[$0] + (x[$0] + bias[$0 % C]) * m[$0] }
                return referenceLayerNorm(sum, w, b, N, C, eps)
            }
            var out = [Float](repeating: 0, count: N * C), sum = out
            var mean = [Float](repeating: 0, count: N), rstd = mean
            residualLayerNormForward(
                &out, &sum, &mean, &rstd, floats(x), floats(bias), floats(residual), floats(w), floats(b), dropout,
                rows: N, columns: C, epsilon: Float(eps))
            assertClose(out, reference(x, bias, residual), 2e-6, "residual layernorm forward")

            var dsum = [Float](repeating: 0, count: N * C)
            var dw = [Float](repeating: 0, count: C), db = dw
            layerNormBackward(&dsum, &dw, &db, floats(g), sum, floats(w), mean, rstd, rows: N, columns: C)
            var dx = [Float](repeating: 0, count: N * C)
            dropoutBackward(&dx, dsum, dropout, rows: N, columns: C)
            var dbias = [Float](repeating: 0, count: C)
            biasBackward(&dbias, dx, rows: N, columns: C)
            assertClose(dsum, finiteDifferences(residual) { dot(reference(x, bias, $0), g) }, 2e-5, "d residual")
            assertClose(dx, finiteDifferences(x) { dot(reference($0, bias, residual), g) }, 2e-5, "d inp")
            assertClose(dbias, finiteDifferences(bias) { dot(reference(x, $0, residual), g) }, 2e-5, "d inp bias")
        }
    }

    // MARK: - Activations

    func referenceActivation(_ x: Double, _ function: ActivationFunction) -> Double {
        switch function {
        case .gelu: return 0.5 * x * (1 + erf(x / 2.0.squareRoot()))
        case .geluTanh: return 0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
        case .relu: return max(0, x)
        }
    }

    func testBiasActivationForwardAndBackwardForEveryFunction() {
        let N = 3, OC = 29
        // Away from 0 so that relu's kink is not inside a finite-difference step.
        let x = random(N * OC, seed: 22, scale: 4).map { abs($0) < 1e-3 ? 0.5 : $0 }
        let bias = random(OC, seed: 23, scale: 0.01), g = random(N * OC, seed: 24)
        for function in ActivationFunction.allCases {
            func reference(_ x: [Double]) -> [Double] {
                x.indices.map { referenceActivation(x[$0] + bias[$0 % OC], function) }
            }
            var pre = floats(x), out = [Float](repeating: 0, count: N * OC)
            biasActivationForward(&out, &pre, floats(bias), function, rows: N, columns: OC)
            assertClose(out, reference(x), 1e-6, "\(function) forward")
            assertClose(pre, x.indices.map { x[$0] + bias[$0 % OC] }, 1e-6, "\(function) keeps pre-activation")
            var dx = [Float](repeating: 0, count: N * OC)
            activationBackward(&dx, floats(g), pre, function, count: N * OC)
            assertClose(dx, finiteDifferences(x) { dot(reference($0), g) }, 1e-5, "\(function) backward")

            var standalone = [Float](repeating: 0, count: N * OC)
            activationForward(&standalone, pre, function, count: N * OC)
            assertClose(standalone, reference(x), 1e-6, "\(function) standalone forward")

            // The recomputation used by backward: output and derivative in one pass.
            var recomputed = [Float](repeating: 0, count: N * OC), derivative = recomputed, dxFused = recomputed
            activationForwardWithDerivative(&recomputed, &derivative, pre, function, count: N * OC)
            assertClose(recomputed, reference(x), 1e-6, "\(function) recomputed forward")
            activationBackward(&dxFused, floats(g), derivative: derivative, count: N * OC)
            assertClose(dxFused, finiteDifferences(x) { dot(reference($0), g) }, 1e-5, "\(function) backward from the derivative")
        }
    }

    func testTanhForwardAndBackward() {
        let x = random(45, seed: 25, scale: 3) + [1e-4, -2e-3, 0.6, 0.65, 12]
        let g = random(x.count, seed: 26)
        var out = [Float](repeating: 0, count: x.count)
        tanhForward(&out, floats(x), count: x.count)
        // Relative accuracy matters near 0 too (the pooler's small activations).
        for (i, value) in x.enumerated() {
            XCTAssertEqual(Double(out[i]), tanh(value), accuracy: 2e-7 * max(abs(tanh(value)), 1e-3), "tanh(\(value))")
        }
        var dx = [Float](repeating: 0, count: x.count)
        tanhBackward(&dx, floats(g), out, count: x.count)
        assertClose(dx, finiteDifferences(x) { dot($0.map { tanh($0) }, g) }, 1e-5, "tanh backward")
    }

    // MARK: - Attention softmax

    func testAttentionSoftmaxWithPaddingMaskAndDropout() {
        let B = 2, NH = 2, T = 11
        let scores = random(B * NH * T * T, seed: 27, scale: 3), g = random(B * NH * T * T, seed: 28)
        var keyMask = [Int32](repeating: 1, count: B * T)
        for t in 7..<T { keyMask[T + t] = 0 }  // sequence 1 has 7 real tokens, sequence 0 all 11
        let samples = [7, 8]
        for probability: Float in [0, 0.25] {
            samples.withUnsafeBufferPointer { samples in
                let dropout = probability == 0 ? nil : DropoutMask(
                    probability: probability, seed: 1, step: 4, layer: 2, site: 1,
                    sampleIndices: samples.baseAddress!, rowsPerSample: NH * T)
                var multipliers = [Float](repeating: 1, count: B * NH * T * T)
                if let dropout {
                    let ones = multipliers
                    dropoutForward(&multipliers, ones, dropout, rows: B * NH * T, columns: T)
                }
                func reference(_ s: [Double], dropped: Bool) -> [Double] {
                    var out = [Double](repeating: 0, count: s.count)
                    for row in 0..<(B * NH * T) {
                        let b = row / (NH * T)
                        let keys = (0..<T).filter { keyMask[b * T + $0] != 0 }
                        let maximum = keys.map { s[row * T + $0] }.max()!
                        let total = keys.reduce(0.0) { $0 + exp(s[row * T + $1] - maximum) }
                        for j in keys {
                            out[row * T + j] = exp(s[row * T + j] - maximum) / total
                                * (dropped ? Double(multipliers[row * T + j]) : 1)
                        }
                    }
                    return out
                }
                var probs = floats(scores)
                var dropped = [Float](repeating: 0, count: probs.count)
                dropped.withUnsafeMutableBufferPointer { dropped in
                    attentionSoftmaxForward(
                        &probs, dropout == nil ? nil : dropped.baseAddress, keyMask, dropout, batch: B, heads: NH, length: T)
                }
                assertClose(probs, reference(scores, dropped: false), 1e-6, "softmax forward p=\(probability)")
                if dropout != nil { assertClose(dropped, reference(scores, dropped: true), 2e-6, "dropped softmax p=\(probability)") }
                var dscores = floats(g)
                attentionSoftmaxBackward(&dscores, probs, dropout, batch: B, heads: NH, length: T)
                assertClose(dscores, finiteDifferences(scores) { dot(reference($0, dropped: true), g) }, 2e-5, "softmax backward p=\(probability)")
            }
        }
    }

    // MARK: - Dropout

    func testDropoutIsReproducibleKeyedBySampleAndHasTheRequestedRate() {
        let C = 1000, T = 4
        let ones = [Float](repeating: 1, count: 3 * T * C)
        func masks(_ samples: [Int], step: UInt64 = 3) -> [Float] {
            var out = [Float](repeating: 0, count: samples.count * T * C)
            samples.withUnsafeBufferPointer { samples in
                let dropout = DropoutMask(
                    probability: 0.1, seed: 42, step: step, layer: 1, site: 3,
                    sampleIndices: samples.baseAddress!, rowsPerSample: T)
                dropoutForward(&out, ones, dropout, rows: samples.count * T, columns: C)
            }
            return out
        }
        let a = masks([5, 9, 12]), b = masks([12, 5, 9])
        // The same sample gets the same mask at any position of the micro-batch.
        XCTAssertEqual(Array(a[0..<(T * C)]), Array(b[(T * C)..<(2 * T * C)]))
        XCTAssertEqual(Array(a[(2 * T * C)...]), Array(b[0..<(T * C)]))
        XCTAssertNotEqual(Array(a[0..<(T * C)]), Array(a[(T * C)..<(2 * T * C)]))
        XCTAssertNotEqual(a, masks([5, 9, 12], step: 4))
        let dropped = a.filter { $0 == 0 }.count
        XCTAssertEqual(Double(dropped) / Double(a.count), 0.1, accuracy: 0.01)
        XCTAssertTrue(a.allSatisfy { $0 == 0 || abs($0 - 1 / 0.9) < 1e-6 })

        // Backward regenerates the same mask.
        let g = random(3 * T * C, seed: 29)
        var dx = [Float](repeating: 0, count: g.count)
        [5, 9, 12].withUnsafeBufferPointer { samples in
            let dropout = DropoutMask(
                probability: 0.1, seed: 42, step: 3, layer: 1, site: 3, sampleIndices: samples.baseAddress!, rowsPerSample: T)
            dropoutBackward(&dx, floats(g), dropout, rows: 3 * T, columns: C)
        }
        assertClose(dx, g.indices.map { g[$0] * Double(a[$0]) }, 1e-6, "dropout backward")
    }

    func testDropoutMaskFollowsTheDocumentedPhiloxRule() {
        // Rows of 37 (groups entered and left part-way) and of 300 elements (whole groups of 128 too).
        for C in [37, 300] {
            let rows = 6, rowsPerSample = 3, samples = [4, 17]
            var out = [Float](repeating: 0, count: rows * C)
            samples.withUnsafeBufferPointer { samples in
                let dropout = DropoutMask(
                    probability: 0.3, seed: 5, step: 6, layer: 2, site: 1, sampleIndices: samples.baseAddress!,
                    rowsPerSample: rowsPerSample)
                dropoutForward(&out, [Float](repeating: 1, count: rows * C), dropout, rows: rows, columns: C)
            }
            let threshold = UInt32((Float(0.3) * 65_536).rounded())
            let scale = 1 / (1 - Float(0.3))
            for row in 0..<rows {
                let generator = Philox(seed: 5, 6, UInt64(samples[row / rowsPerSample]), 2, 1)
                for j in 0..<C {
                    let e = (row % rowsPerSample) * C + j
                    let k = (e & 127) >> 4
                    let b = generator.block(UInt64(16 * (e >> 7) + (e & 15)))
                    let word = [b.0, b.1, b.2, b.3][k >> 1]
                    let bits = k & 1 == 0 ? word & 0xFFFF : word >> 16
                    XCTAssertEqual(out[row * C + j], bits < threshold ? 0 : scale, "C \(C) row \(row) element \(j)")
                }
            }
        }
    }

    func testRecordedDropoutMasksReplayTheDrawnMasks() {
        // Hidden-state rows of 37 (a partial word) and 300, and attention rows of 20 with padding.
        for C in [37, 300] {
            let rows = 6, samples = [4, 17]
            var record = [UInt8](repeating: 0, count: rows * C)
            var drawn = [Float](repeating: 0, count: rows * C), recorded = drawn, replayed = drawn
            let input = (0..<(rows * C)).map { Float($0 % 7) + 0.5 }
            samples.withUnsafeBufferPointer { samples in
                record.withUnsafeMutableBufferPointer { record in
                    var dropout = DropoutMask(
                        probability: 0.3, seed: 5, step: 6, layer: 2, site: 3, sampleIndices: samples.baseAddress!,
                        rowsPerSample: 3)
                    dropoutForward(&drawn, input, dropout, rows: rows, columns: C)
                    dropout.record = record.baseAddress
                    dropoutForward(&recorded, input, dropout, rows: rows, columns: C)
                    dropout.replay = true
                    dropoutBackward(&replayed, input, dropout, rows: rows, columns: C)
                }
            }
            XCTAssertEqual(recorded, drawn, "C \(C): recording changes nothing")
            XCTAssertEqual(replayed, drawn, "C \(C): the replayed mask is the drawn one")
            XCTAssertTrue(drawn.contains(0) && drawn.contains { $0 != 0 })
        }
        let B = 2, NH = 2, T = 20, rows = B * NH * T
        let scores = (0..<(rows * T)).map { Float(($0 * 37) % 11) / 5 }
        let keyMask = (0..<(B * T)).map { Int32($0 % T < 15 ? 1 : 0) }
        var record = [UInt8](repeating: 0, count: rows * T)
        var drawnProbs = scores, drawnDropped = [Float](repeating: 0, count: rows * T)
        var recordedProbs = scores, recordedDropped = drawnDropped, replayedDropped = drawnDropped
        var drawnGradient = scores.map { $0 - 1 }, replayedGradient = drawnGradient
        [0, 1].withUnsafeBufferPointer { samples in
            record.withUnsafeMutableBufferPointer { record in
                var dropout = DropoutMask(
                    probability: 0.25, seed: 9, step: 1, layer: 1, site: 1, sampleIndices: samples.baseAddress!,
                    rowsPerSample: NH * T)
                attentionSoftmaxForward(&drawnProbs, &drawnDropped, keyMask, dropout, batch: B, heads: NH, length: T)
                attentionSoftmaxBackward(&drawnGradient, drawnProbs, dropout, batch: B, heads: NH, length: T)
                dropout.record = record.baseAddress
                attentionSoftmaxForward(&recordedProbs, &recordedDropped, keyMask, dropout, batch: B, heads: NH, length: T)
                dropout.replay = true
                dropoutForward(&replayedDropped, recordedProbs, dropout, rows: 0..<rows, columns: T)
                attentionSoftmaxBackward(&replayedGradient, recordedProbs, dropout, batch: B, heads: NH, length: T)
            }
        }
        XCTAssertEqual(recordedProbs, drawnProbs)
        XCTAssertEqual(recordedDropped, drawnDropped)
        XCTAssertEqual(replayedDropped, drawnDropped)
        XCTAssertEqual(replayedGradient, drawnGradient)
    }

    // MARK: - Cross-entropy

    func testCrossEntropyLossGradientAndAccuracy() {
        let P = 4, V = 53
        let logits = random(P * V, seed: 30, scale: 5)
        let labels: [Int32] = [0, 17, 52, 33]
        let dloss = 0.37
        func reference(_ x: [Double]) -> [Double] {
            (0..<P).map { p in
                let row = x[(p * V)..<(p * V + V)]
                let maximum = row.max()!
                return maximum + log(row.reduce(0) { $0 + exp($1 - maximum) }) - x[p * V + Int(labels[p])]
            }
        }
        var losses = [Float](repeating: 0, count: P), correct = [Bool](repeating: false, count: P)
        var dlogits = [Float](repeating: 0, count: P * V)
        crossEntropyForwardBackward(&losses, &correct, &dlogits, floats(logits), labels, dloss: Float(dloss), rows: P, vocabularySize: V)
        assertClose(losses, reference(logits), 1e-6, "cross-entropy losses")
        assertClose(dlogits, finiteDifferences(logits) { dloss * reference($0).reduce(0, +) }, 1e-5, "cross-entropy gradient")
        let expectedCorrect = (0..<P).map { p in
            let row = Array(logits[(p * V)..<(p * V + V)])
            return row.firstIndex(of: row.max()!)! == Int(labels[p])
        }
        XCTAssertEqual(correct, expectedCorrect)

        // A row whose label is the arg-max counts as correct.
        var peaked = floats(logits)
        peaked[2 * V + 52] = 100
        crossEntropyForwardBackward(&losses, &correct, nil, peaked, labels, dloss: 1, rows: P, vocabularySize: V)
        XCTAssertTrue(correct[2])
    }

    // MARK: - Vector math

    func testVectorMathAgainstTheCLibrary() {
        let inputs = (0..<4000).map { Float($0 - 2000) / 200 }  // [-10, 10)
        var out = [Float](repeating: 0, count: inputs.count)
        VectorMath.exp(&out, inputs, count: inputs.count)
        for (x, y) in zip(inputs, out) { XCTAssertEqual(Double(y), Foundation.exp(Double(x)), accuracy: 3e-7 * Foundation.exp(Double(x)), "exp(\(x))") }
        VectorMath.erf(&out, inputs, count: inputs.count)
        for (x, y) in zip(inputs, out) { XCTAssertEqual(Double(y), Foundation.erf(Double(x)), accuracy: 3e-7, "erf(\(x))") }
        VectorMath.tanh(&out, inputs, count: inputs.count)
        for (x, y) in zip(inputs, out) {
            XCTAssertEqual(Double(y), Foundation.tanh(Double(x)), accuracy: 3e-7 * max(abs(Foundation.tanh(Double(x))), 1e-2), "tanh(\(x))")
        }
    }
}
