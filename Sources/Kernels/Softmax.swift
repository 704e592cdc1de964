// Attention softmax with the padding mask and attention-probability dropout, in one pass per row.

/// All bits set in the lanes whose key takes part (`keyMask != 0`), none in the others (and in the
/// lanes past `lanes`). Integer arithmetic, not a comparison: a mask from Int32 lanes applied to
/// Float lanes compiles to a branch per lane.
@inline(__always)
func keptKeyBits(_ keyMask: UnsafePointer<Int32>, _ lanes: Int) -> SIMD16<Int32> {
    var keys = SIMD16<Int32>(repeating: 0)
    if lanes == 16 {
        keys = UnsafeRawPointer(keyMask).loadUnaligned(as: SIMD16<Int32>.self)
    } else {
        for lane in 0..<lanes { keys[lane] = keyMask[lane] }
    }
    // The sign bit of k | -k is set exactly when k != 0; the arithmetic shift spreads it.
    return (keys | (0 &- keys)) &>> 31
}

/// `v` where `bits` are set, `other` elsewhere.
@inline(__always)
func select(_ v: FloatVector, _ bits: SIMD16<Int32>, _ other: FloatVector) -> FloatVector {
    let kept = unsafeBitCast(v, to: SIMD16<Int32>.self) & bits
    let rest = unsafeBitCast(other, to: SIMD16<Int32>.self) & ~bits
    return unsafeBitCast(kept | rest, to: FloatVector.self)
}

/// Softmax over keys of the (already scaled) attention scores, in place:
/// `probs` is (B, NH, T, T) and holds the scores on entry; key j of sequence b takes part only where
/// `keyMask[b, j] != 0` (masked keys get probability 0, as with Hugging Face's additive
/// `finfo.min` mask). With `dropout`, `dropped` (B, NH, T, T) receives the probabilities after
/// dropout (the operand of the context GEMM) while `probs` keeps them before (for backward).
/// A row whose keys are all masked gets all-zero probabilities.
public func attentionSoftmaxForward(
    _ probs: UnsafeMutablePointer<Float>, _ dropped: UnsafeMutablePointer<Float>?,
    _ keyMask: UnsafePointer<Int32>?, _ dropout: DropoutMask?,
    batch B: Int, heads NH: Int, length T: Int
) {
    Parallel.forEachChunk(B * NH * T, minimumChunk: max(1, 8_192 / max(1, T))) { range in
        for row in range {
            attentionSoftmaxForward(
                probs, dropped, keyMask.map { $0 + row / (NH * T) * T }, dropout, rows: row..<(row + 1), length: T)
        }
    }
}

/// `attentionSoftmaxForward` on a range of rows of one sequence only (e.g. the rows of one head), on
/// the calling thread: for callers that parallelise over heads themselves. `probs` and `dropped`
/// point to the whole tensors, rows of T; `keyMask` to the T flags of the rows' sequence.
public func attentionSoftmaxForward(
    _ probs: UnsafeMutablePointer<Float>, _ dropped: UnsafeMutablePointer<Float>?,
    _ keyMask: UnsafePointer<Int32>?, _ dropout: DropoutMask?,
    rows range: Range<Int>, length T: Int
) {
    for row in range {
        let p = probs + row * T
        var maximum = -Float.infinity
        var j = 0
        var running = FloatVector(repeating: -.infinity)
        while j < T {
            let lanes = min(16, T - j)
            var v = lanes == 16 ? load(p + j) : loadPartial(p + j, lanes, fill: -.infinity)
            if let keyMask { v = select(v, keptKeyBits(keyMask + j, lanes), FloatVector(repeating: -.infinity)) }
            running = vmax(running, v)
            j += 16
        }
        maximum = horizontalMax(running)
        if maximum == -.infinity {
            for j in 0..<T { p[j] = 0 }
            if let dropped { for j in 0..<T { dropped[row * T + j] = 0 } }
            continue
        }
        let m = FloatVector(repeating: maximum)
        var vsum = FloatVector()
        j = 0
        while j < T {
            let lanes = min(16, T - j)
            var e = vectorExp((lanes == 16 ? load(p + j) : loadPartial(p + j, lanes)) - m)
            if let keyMask { e = select(e, keptKeyBits(keyMask + j, lanes), FloatVector()) }
            if lanes == 16 {
                store(e, p + j)
            } else {
                let lane = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
                e.replace(with: 0, where: lane .>= Int32(lanes))
                storePartial(e, p + j, lanes)
            }
            vsum += e
            j += 16
        }
        VectorMath.scale(p, count: T, by: 1 / vsum.sum())
        if let dropped, let dropout { dropoutForward(dropped, probs, dropout, rows: row..<(row + 1), columns: T) }
    }
}

/// Backward of `attentionSoftmaxForward` through dropout and softmax, in place:
/// on entry `dscores` holds d(loss)/d(dropped probabilities) (or of `probs` without dropout), on
/// exit d(loss)/d(scores). probs are the saved probabilities before dropout; all are (B, NH, T, T).
public func attentionSoftmaxBackward(
    _ dscores: UnsafeMutablePointer<Float>, _ probs: UnsafePointer<Float>, _ dropout: DropoutMask?,
    batch B: Int, heads NH: Int, length T: Int
) {
    Parallel.forEachChunk(B * NH * T, minimumChunk: max(1, 8_192 / max(1, T))) { range in
        attentionSoftmaxBackward(dscores, probs, dropout, rows: range, length: T)
    }
}

/// `attentionSoftmaxBackward` on a range of the B*NH*T rows, on the calling thread.
public func attentionSoftmaxBackward(
    _ dscores: UnsafeMutablePointer<Float>, _ probs: UnsafePointer<Float>, _ dropout: DropoutMask?,
    rows range: Range<Int>, length T: Int
) {
    for row in range {
        let d = dscores + row * T
        let p = probs + row * T
        if let dropout { dropoutForward(dscores, dscores, dropout, rows: row..<(row + 1), columns: T) }
        // dscore_j = p_j (dp_j - sum_k p_k dp_k)
        var a = FloatVector(), b = FloatVector()
        var j = 0
        while j + 32 <= T {
            a += load(p + j) * load(d + j)
            b += load(p + j + 16) * load(d + j + 16)
            j += 32
        }
        while j + 16 <= T {
            a += load(p + j) * load(d + j)
            j += 16
        }
        var dot = (a + b).sum()
        while j < T {
            dot += p[j] * d[j]
            j += 1
        }
        let s = FloatVector(repeating: dot)
        j = 0
        while j + 16 <= T {
            store(load(p + j) * (load(d + j) - s), d + j)
            j += 16
        }
        while j < T {
            d[j] = p[j] * (d[j] - dot)
            j += 1
        }
    }
}
