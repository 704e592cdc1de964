import Foundation

// Softmax cross-entropy over the vocabulary for the gathered (masked) positions.

/// For each of the P rows of `logits` (P, V) with target `labels[p]`:
/// `losses[p] = logsumexp(logits[p]) - logits[p, label]` and `correct[p]` = whether the arg-max is the
/// label (ties to the lowest index, like torch.argmax). With `dlogits`, also the gradient of
/// `dloss * sum(losses)`: `dlogits[p] = dloss * (softmax(logits[p]) - onehot(label))`, written;
/// dlogits may alias logits.
///
/// Forward and backward are one function because a row of V = 30522 logits fits in L2 cache while
/// all P rows do not: the gradient is produced while the row is still cached.
public func crossEntropyForwardBackward(
    _ losses: UnsafeMutablePointer<Float>, _ correct: UnsafeMutablePointer<Bool>?,
    _ dlogits: UnsafeMutablePointer<Float>?,
    _ logits: UnsafePointer<Float>, _ labels: UnsafePointer<Int32>, dloss: Float,
    rows P: Int, vocabularySize V: Int
) {
    Parallel.forEachChunk(P, minimumChunk: max(1, 65_536 / max(1, V))) { range in
        for row in range {
            let x = logits + row * V
            let label = Int(labels[row])
            precondition(label >= 0 && label < V, "cross-entropy label \(label) outside the vocabulary 0..<\(V)")
            var vmax0 = FloatVector(repeating: -.infinity), vmax1 = vmax0
            var j = 0
            while j + 32 <= V {
                vmax0 = vmax(vmax0, load(x + j))
                vmax1 = vmax(vmax1, load(x + j + 16))
                j += 32
            }
            while j + 16 <= V {
                vmax0 = vmax(vmax0, load(x + j))
                j += 16
            }
            var maximum = horizontalMax(vmax(vmax0, vmax1))
            while j < V {
                maximum = max(maximum, x[j])
                j += 1
            }
            let m = FloatVector(repeating: maximum)
            let target = x[label]
            if let correct {
                // First index of the maximum, as torch.argmax (none when the logits hold NaN).
                var first = 0
                while first + 16 <= V && !any(load(x + first) .== m) { first += 16 }
                while first < V && x[first] != maximum { first += 1 }
                correct[row] = first == label
            }
            // With a gradient, the exponentials go straight into it (x may be overwritten now) and
            // are scaled by 1/sum afterwards, so each is computed once.
            let e = dlogits.map { $0 + row * V }
            var s0 = FloatVector(), s1 = FloatVector()
            j = 0
            while j + 32 <= V {
                let e0 = vectorExp(load(x + j) - m), e1 = vectorExp(load(x + j + 16) - m)
                if let e {
                    store(e0, e + j)
                    store(e1, e + j + 16)
                }
                s0 += e0
                s1 += e1
                j += 32
            }
            while j + 16 <= V {
                let e0 = vectorExp(load(x + j) - m)
                if let e { store(e0, e + j) }
                s0 += e0
                j += 16
            }
            var sum = (s0 + s1).sum()
            while j < V {
                let e0 = Foundation.exp(x[j] - maximum)
                e?[j] = e0
                sum += e0
                j += 1
            }
            losses[row] = maximum + log(sum) - target
            if let d = e {
                VectorMath.scale(d, count: V, by: dloss / sum)
                d[label] -= dloss
            }
        }
    }
}
