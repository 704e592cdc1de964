import Foundation

/// Checks of the BLAS actually loaded: results against a naive double-precision product, and speed.
///
/// Run by `swiftbert doctor --verify` and by the tests, so a kernel that computes wrong results on
/// this CPU (or a binding with a wrong transpose or stride) is caught where it runs.
public enum GEMMCheck {
    public struct Mismatch: CustomStringConvertible, Sendable {
        public let case_: String
        public let error: Double
        public let bound: Double
        public var description: String { "\(case_): error \(error) exceeds bound \(bound)" }
    }

    public struct Report: Sendable {
        public var caseCount = 0
        public var mismatches: [Mismatch] = []
    }

    /// Compares `gemm` with a double-precision reference on `cases` random problems: sizes from 1 to
    /// 200 (primes included), all four transpose combinations, padded leading dimensions, and
    /// alpha/beta other than 1/0. Each element must be within the worst-case rounding bound of a float
    /// dot product of length k: `2 k u * sum_l |alpha a_il b_lj| + 2 u |beta c_ij|`, u = 2^-24.
    /// Every eighth case is a few rows (2 to 16) against a large op(b), the shapes of generation.
    public static func verify(cases: Int = 300, seed: UInt64 = 1) -> Report {
        let rng = Philox(seed: seed, 0x6E6D)
        var draw: UInt64 = 0
        func next(_ bound: Int) -> Int {
            draw += 1
            return rng.integer(below: bound, at: draw)
        }
        let sizes = [1, 2, 3, 5, 7, 8, 16, 17, 31, 64, 97, 128, 200]
        let fewRowCounts = [2, 3, 4, 5, 7, 8, 13, 16], largeSizes = [263, 1024, 1031, 2309]
        let transposes: [Transpose] = [.none, .transposed]
        let scalars: [(Float, Float)] = [(1, 0), (1, 1), (0.5, -2), (-1.25, 0.75)]
        var report = Report()
        for index in 0..<cases {
            let fewRows = index % 8 == 7
            let m = fewRows ? fewRowCounts[next(fewRowCounts.count)] : sizes[next(sizes.count)]
            let n = fewRows ? largeSizes[next(largeSizes.count)] : sizes[next(sizes.count)]
            let k = fewRows ? largeSizes[next(largeSizes.count)] : sizes[next(sizes.count)]
            let transA = fewRows ? .none : transposes[index % 2]
            let transB = transposes[fewRows ? (index / 8) % 2 : (index / 2) % 2]
            let (alpha, beta) = scalars[next(scalars.count)]
            let aRows = transA == .none ? m : k, aCols = transA == .none ? k : m
            let bRows = transB == .none ? k : n, bCols = transB == .none ? n : k
            let lda = aCols + next(3) * 5, ldb = bCols + next(3) * 3, ldc = n + next(3) * 7
            func randomMatrix(_ count: Int) -> [Float] {
                (0..<count).map { _ in Float(next(2001) - 1000) / 997 }
            }
            let a = randomMatrix(aRows * lda), b = randomMatrix(bRows * ldb)
            var c = randomMatrix(m * ldc)
            let c0 = c
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    c.withUnsafeMutableBufferPointer { c in
                        gemm(transA, transB, m: m, n: n, k: k, alpha: alpha,
                             a: a.baseAddress!, lda: lda, b: b.baseAddress!, ldb: ldb,
                             beta: beta, c: c.baseAddress!, ldc: ldc)
                    }
                }
            }
            let u = Double(Float.ulpOfOne) / 2
            var worst: (error: Double, bound: Double)?
            for i in 0..<m {
                for j in 0..<n {
                    var sum = 0.0, magnitude = 0.0
                    for l in 0..<k {
                        let aValue = Double(transA == .none ? a[i * lda + l] : a[l * lda + i])
                        let bValue = Double(transB == .none ? b[l * ldb + j] : b[j * ldb + l])
                        sum += aValue * bValue
                        magnitude += abs(aValue * bValue)
                    }
                    let reference = Double(alpha) * sum + Double(beta) * Double(c0[i * ldc + j])
                    let bound = 2 * Double(k + 2) * u * abs(Double(alpha)) * magnitude
                        + 2 * u * abs(Double(beta) * Double(c0[i * ldc + j])) + Double(Float.leastNormalMagnitude)
                    let error = abs(Double(c[i * ldc + j]) - reference)
                    if error > bound, worst == nil || error / bound > worst!.error / worst!.bound {
                        worst = (error, bound)
                    }
                }
            }
            // Padding between rows must be left untouched.
            for i in 0..<m where ldc > n {
                for j in n..<ldc where c[i * ldc + j] != c0[i * ldc + j] {
                    worst = (Double.infinity, 0)
                }
            }
            report.caseCount += 1
            if let worst {
                report.mismatches.append(Mismatch(
                    case_: "m=\(m) n=\(n) k=\(k) \(transA)/\(transB) lda=\(lda) ldb=\(ldb) ldc=\(ldc) alpha=\(alpha) beta=\(beta)",
                    error: worst.error, bound: worst.bound))
            }
        }
        return report
    }

    /// Single-precision GEMM speed in GFLOP/s on square matrices of `size`: the median of
    /// `repetitions` timed products after one warm-up, with the current BLAS thread count.
    public static func measureGFLOPS(size: Int = 1024, repetitions: Int = 7) -> Double {
        let a = [Float](repeating: 0.5, count: size * size)
        let b = [Float](repeating: 0.25, count: size * size)
        var c = [Float](repeating: 0, count: size * size)
        var times: [Double] = []
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    for repetition in 0...repetitions {
                        let start = DispatchTime.now().uptimeNanoseconds
                        gemm(.none, .none, m: size, n: size, k: size,
                             a: a.baseAddress!, b: b.baseAddress!, c: c.baseAddress!)
                        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                        if repetition > 0 { times.append(seconds) }
                    }
                }
            }
        }
        times.sort()
        return 2 * Double(size) * Double(size) * Double(size) / times[times.count / 2] / 1e9
    }
}
