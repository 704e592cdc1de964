import Dispatch

// Products of a few rows (one token per sequence while generating: m = batch size) with a large
// matrix. sgemm packs op(b) into cache-sized panels before multiplying: for a few rows that copy
// costs more than the product, and a batch of 8 took 3x the time of one row (measured with
// GPT-2 124M's shapes). sgemv reads the matrix once, but once per row. These kernels read op(b)
// once for all rows: each tile of op(b) is loaded into registers (`c = a b`) or streamed through
// (`c = a b^T`) once and multiplied with up to four rows, and the other rows reuse it from L1.

/// Rows up to which `gemm` uses these kernels, and the least size of op(b) (in floats) for which
/// they pay: below it sgemm's packing is cheap.
let fewRowLimit = 16
let fewRowMinimumMatrix = 1 << 18

/// Four vectors of one row of a tile.
private typealias Quad = (FloatVector, FloatVector, FloatVector, FloatVector)
private let zero = FloatVector(repeating: 0)

/// Vectors per tile row of `c = a b`: 4 (64 columns, 16 accumulators) fit AVX-512's 32 registers;
/// with 16 registers (AVX2, where a FloatVector takes two) one vector per row avoids spills.
private let tileVectors = CPUFeatures.current.avx512f ? 4 : 1

/// `c = alpha * a * b` for `a` (m, k) and `b` (k, n), row-major, m <= `fewRowLimit`.
func fewRowsTimesMatrix(
    m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    let width = 16 * tileVectors
    overColumnChunks(n, alignment: width) { columns in
        // Blocks of 16 rows of b: sixteen streams the prefetcher follows; c's tile is reloaded
        // once per block.
        for k0 in stride(from: 0, to: k, by: 16) {
            let depth = min(16, k - k0), first = k0 == 0, scale: Float = k0 + depth == k ? alpha : 1
            var j = columns.lowerBound
            while j < columns.upperBound {
                let step = columns.upperBound - j >= width ? width : min(16, columns.upperBound - j)
                for g in stride(from: 0, to: m, by: 4) {
                    let rows = min(4, m - g)
                    let tileA = a + g * lda + k0, tileB = b + k0 * ldb + j, tileC = c + g * ldc + j
                    if step == 64 {
                        matrixTile(rows, vectors: 4, lanes: 16, tileA, lda, tileB, ldb, tileC, ldc, depth, first, scale)
                    } else {
                        matrixTile(rows, vectors: 1, lanes: step, tileA, lda, tileB, ldb, tileC, ldc, depth, first, scale)
                    }
                }
                j += step
            }
        }
    }
}

/// One tile of `fewRowsTimesMatrix`: `rows` (1...4) rows by `vectors` (1 or 4) vectors, the last
/// `lanes` wide; accumulated over `depth` rows of b onto c, or from zero when `first`.
private func matrixTile(
    _ rows: Int, vectors: Int, lanes: Int, _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ depth: Int, _ first: Bool, _ scale: Float
) {
    struct Tile: TileKernel {
        let lanes: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int
        let c: UnsafeMutablePointer<Float>, ldc: Int, depth: Int, first: Bool, scale: Float
        func run<R: Count, V: Count>(_: R.Type, _: V.Type) {
            matrixTileBody(R.self, V.self, lanes, a, lda, b, ldb, c, ldc, depth, first, scale)
        }
    }
    let tile = Tile(lanes: lanes, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, depth: depth, first: first, scale: scale)
    dispatch(tile, rows: rows, wide: vectors == 4 && lanes == 16, Four.self)
}

/// A kernel whose tile shape is a type, so that each shape is compiled on its own: its loops
/// unrolled, its accumulators in registers.
private protocol TileKernel {
    func run<R: Count, C: Count>(_: R.Type, _: C.Type)
}

/// Runs `kernel` for `rows` (1...4) rows by W columns when `wide`, else by one.
private func dispatch<K: TileKernel, W: Count>(_ kernel: K, rows: Int, wide: Bool, _: W.Type) {
    switch (rows, wide) {
    case (4, true): kernel.run(Four.self, W.self)
    case (3, true): kernel.run(Three.self, W.self)
    case (2, true): kernel.run(Two.self, W.self)
    case (1, true): kernel.run(One.self, W.self)
    case (4, false): kernel.run(Four.self, One.self)
    case (3, false): kernel.run(Three.self, One.self)
    case (2, false): kernel.run(Two.self, One.self)
    default: kernel.run(One.self, One.self)
    }
}

/// A count known when a kernel is compiled.
private protocol Count { static var value: Int { get } }
private enum One: Count { static var value: Int { 1 } }
private enum Two: Count { static var value: Int { 2 } }
private enum Three: Count { static var value: Int { 3 } }
private enum Four: Count { static var value: Int { 4 } }

private func matrixTileBody<R: Count, V: Count>(
    _: R.Type, _: V.Type, _ lanes: Int, _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>,
    _ ldb: Int, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ depth: Int, _ first: Bool, _ scale: Float
) {
    let rows = R.value, vectors = V.value
    @inline(__always) func read(_ p: UnsafePointer<Float>) -> Quad {
        if lanes < 16 { return (loadPartial(p, lanes), zero, zero, zero) }
        return vectors == 4 ? (load(p), load(p + 16), load(p + 32), load(p + 48)) : (load(p), zero, zero, zero)
    }
    @inline(__always) func write(_ q: Quad, _ p: UnsafeMutablePointer<Float>) {
        let s = FloatVector(repeating: scale)
        if lanes < 16 { return storePartial(q.0 * s, p, lanes) }
        store(q.0 * s, p)
        if vectors == 4 { store(q.1 * s, p + 16); store(q.2 * s, p + 32); store(q.3 * s, p + 48) }
    }
    @inline(__always) func accumulate(_ q: inout Quad, _ x: Float, _ w: Quad) {
        let s = FloatVector(repeating: x)
        q.0.addProduct(s, w.0)
        if vectors == 4 { q.1.addProduct(s, w.1); q.2.addProduct(s, w.2); q.3.addProduct(s, w.3) }
    }
    var r0 = (zero, zero, zero, zero), r1 = r0, r2 = r0, r3 = r0
    if !first {
        r0 = read(c)
        if rows > 1 { r1 = read(c + ldc) }
        if rows > 2 { r2 = read(c + 2 * ldc) }
        if rows > 3 { r3 = read(c + 3 * ldc) }
    }
    for kk in 0..<depth {
        let w = read(b + kk * ldb)
        accumulate(&r0, a[kk], w)
        if rows > 1 { accumulate(&r1, a[lda + kk], w) }
        if rows > 2 { accumulate(&r2, a[2 * lda + kk], w) }
        if rows > 3 { accumulate(&r3, a[3 * lda + kk], w) }
    }
    write(r0, c)
    if rows > 1 { write(r1, c + ldc) }
    if rows > 2 { write(r2, c + 2 * ldc) }
    if rows > 3 { write(r3, c + 3 * ldc) }
}

/// `c = alpha * a * b^T` for `a` (m, k) and `b` (n, k), row-major, m <= `fewRowLimit`: each row of b
/// (a token's embedding, for the LM head) is read once and dotted with every row of a.
func fewRowsTimesTransposed(
    m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    overColumnChunks(n, alignment: 2) { columns in
        var j = columns.lowerBound
        while j < columns.upperBound {
            let pair = columns.upperBound - j >= 2
            for g in stride(from: 0, to: m, by: 4) {
                let tile = DotTile(a: a + g * lda, lda: lda, b: b + j * ldb, ldb: ldb, c: c + g * ldc + j, ldc: ldc, k: k, alpha: alpha)
                dispatch(tile, rows: min(4, m - g), wide: pair, Two.self)
            }
            j += pair ? 2 : 1
        }
    }
}

private struct DotTile: TileKernel {
    let a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int, k: Int
    let alpha: Float
    func run<R: Count, C: Count>(_: R.Type, _: C.Type) { dotTile(R.self, C.self, a, lda, b, ldb, c, ldc, k, alpha) }
}

/// R (1...4) rows of a dotted with C (1 or 2) rows of b: eight accumulators, summed
/// across lanes at the end.
private func dotTile<R: Count, C: Count>(
    _: R.Type, _: C.Type, _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ k: Int, _ alpha: Float
) {
    let rows = R.value, columns = C.value
    var s00 = zero, s01 = zero, s10 = zero, s11 = zero, s20 = zero, s21 = zero, s30 = zero, s31 = zero
    var kk = 0
    @inline(__always) func step(_ w0: FloatVector, _ w1: FloatVector, _ x: (Int) -> FloatVector) {
        var x0 = x(0)
        s00.addProduct(x0, w0)
        if columns > 1 { s01.addProduct(x0, w1) }
        if rows > 1 { x0 = x(1); s10.addProduct(x0, w0); if columns > 1 { s11.addProduct(x0, w1) } }
        if rows > 2 { x0 = x(2); s20.addProduct(x0, w0); if columns > 1 { s21.addProduct(x0, w1) } }
        if rows > 3 { x0 = x(3); s30.addProduct(x0, w0); if columns > 1 { s31.addProduct(x0, w1) } }
    }
    while kk + 16 <= k {
        step(load(b + kk), columns > 1 ? load(b + ldb + kk) : zero) { load(a + $0 * lda + kk) }
        kk += 16
    }
    if kk < k {
        let rest = k - kk
        step(loadPartial(b + kk, rest), columns > 1 ? loadPartial(b + ldb + kk, rest) : zero) { loadPartial(a + $0 * lda + kk, rest) }
    }
    c[0] = alpha * lanesSum(s00)
    if columns > 1 { c[1] = alpha * lanesSum(s01) }
    if rows > 1 { c[ldc] = alpha * lanesSum(s10); if columns > 1 { c[ldc + 1] = alpha * lanesSum(s11) } }
    if rows > 2 { c[2 * ldc] = alpha * lanesSum(s20); if columns > 1 { c[2 * ldc + 1] = alpha * lanesSum(s21) } }
    if rows > 3 { c[3 * ldc] = alpha * lanesSum(s30); if columns > 1 { c[3 * ldc + 1] = alpha * lanesSum(s31) } }
}

/// The sum of the lanes, by halving (`SIMD.sum()` adds lane by lane).
@inline(__always)
private func lanesSum(_ v: FloatVector) -> Float {
    let eight = v.lowHalf + v.highHalf, four = eight.lowHalf + eight.highHalf, two = four.lowHalf + four.highHalf
    return two[0] + two[1]
}

/// `body(range)` for chunks of `0..<count` (boundaries multiples of `alignment`), one per BLAS thread:
/// these kernels stand in for a BLAS call and use its thread budget (1 inside `overHeads`-style loops
/// that already run one call per worker).
private func overColumnChunks(_ count: Int, alignment: Int, _ body: (Range<Int>) -> Void) {
    let workers = max(1, min(BLASRuntime.threadCount, Parallel.workerCount, count / max(alignment, 256)))
    guard workers > 1 else { return body(0..<count) }
    DispatchQueue.concurrentPerform(iterations: workers) { worker in
        let start = worker == 0 ? 0 : count * worker / workers / alignment * alignment
        let end = worker == workers - 1 ? count : count * (worker + 1) / workers / alignment * alignment
        body(start..<end)
    }
}
