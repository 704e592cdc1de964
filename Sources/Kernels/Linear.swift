// Linear layers: y = x W^T + b with W stored [out, in] like torch.nn.Linear.
//
// Conventions of every kernel in this module (after llm.c): outputs first, then inputs, then sizes;
// backward takes gradients first with a `d` prefix. Parameter gradients are ADDED (`+=`), so
// micro-batches accumulate and zeroing is one explicit step per optimizer step. Input (activation)
// gradients are WRITTEN (`=`) unless a function says otherwise: in this model every activation
// gradient has a single producer, and writing saves a pass of zeroing over large buffers.

/// `out = inp W^T (+ bias)`: inp is (N, C), weight is (OC, C), bias is (OC), out is (N, OC).
public func linearForward(
    _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
    _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
    rows N: Int, inputSize C: Int, outputSize OC: Int
) {
    gemm(.none, .transposed, m: N, n: OC, k: C, a: inp, b: weight, beta: 0, c: out)
    if let bias { addBias(out, bias, rows: N, columns: OC) }
}

/// Backward of `linearForward`: dinp = dout W (written, or added when `accumulateInput`),
/// dweight += dout^T inp, dbias += column sums of dout. Any of the three may be skipped with nil.
public func linearBackward(
    _ dinp: UnsafeMutablePointer<Float>?, _ dweight: UnsafeMutablePointer<Float>?,
    _ dbias: UnsafeMutablePointer<Float>?,
    _ dout: UnsafePointer<Float>, _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
    rows N: Int, inputSize C: Int, outputSize OC: Int, accumulateInput: Bool = false
) {
    if let dbias { biasBackward(dbias, dout, rows: N, columns: OC) }
    if let dweight {
        gemm(.transposed, .none, m: OC, n: C, k: N, a: dout, b: inp, beta: 1, c: dweight)
    }
    if let dinp {
        gemm(.none, .none, m: N, n: C, k: OC, a: dout, b: weight, beta: accumulateInput ? 1 : 0, c: dinp)
    }
}

/// `out[n, :] += bias`: out is (N, OC), bias is (OC).
public func addBias(_ out: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows N: Int, columns OC: Int) {
    Parallel.forEachChunk(N, minimumChunk: max(1, 32_768 / max(1, OC))) { range in
        for n in range { VectorMath.add(out + n * OC, bias, count: OC) }
    }
}

/// `dbias += sum over rows of dout`: dout is (N, OC), dbias is (OC).
///
/// Split over blocks of columns, not rows, so each output sum has one owner and a fixed summation
/// order (results do not depend on the thread count). Each block walks the rows in order, reading
/// its slice of every row contiguously, with the partial sums in registers or on the stack.
public func biasBackward(_ dbias: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>, rows N: Int, columns OC: Int) {
    let block = 128
    let blocks = (OC + block - 1) / block
    Parallel.forEachChunk(blocks, minimumChunk: max(1, 16_384 / max(1, block * N))) { range in
        withUnsafeTemporaryAllocation(of: FloatVector.self, capacity: block / 16) { sums in
            for blockIndex in range {
                let first = blockIndex * block
                let width = min(block, OC - first)
                let vectors = width / 16
                for v in 0..<vectors { sums[v] = FloatVector() }
                for n in 0..<N {
                    let row = dout + n * OC + first
                    for v in 0..<vectors { sums[v] += load(row + 16 * v) }
                }
                for v in 0..<vectors {
                    store(load(dbias + first + 16 * v) + sums[v], dbias + first + 16 * v)
                }
                for j in (16 * vectors)..<width {
                    var sum: Float = 0
                    for n in 0..<N { sum += dout[n * OC + first + j] }
                    dbias[first + j] += sum
                }
            }
        }
    }
}
