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
            var s0 = FloatVector(), s1 = FloatVector()
            j = 0
            while j + 32 <= V {
                s0 += vectorExp(load(x + j) - m)
                s1 += vectorExp(load(x + j + 16) - m)
                j += 32
            }
            while j + 16 <= V {
                s0 += vectorExp(load(x + j) - m)
                j += 16
            }
            var sum = (s0 + s1).sum()
            if j < V {
                let lanes = V - j
                sum += vectorExp(loadPartial(x + j, lanes, fill: -.infinity) - m).sum()
                // -inf lanes give exp's smallest positive value; remove their contribution.
                sum -= Float(16 - lanes) * vectorExp(FloatVector(repeating: -.infinity))[0]
            }
            let logSumExp = maximum + log(sum)
            losses[row] = logSumExp - x[label]
            if let correct {
                // First index of the maximum, as torch.argmax (none when the logits hold NaN).
                var first = 0
                while first < V && x[first] != maximum { first += 1 }
                correct[row] = first == label
            }
            if let dlogits {
                let d = dlogits + row * V
                let scale = FloatVector(repeating: dloss / sum)
                j = 0
                while j + 16 <= V {
                    store(vectorExp(load(x + j) - m) * scale, d + j)
                    j += 16
                }
                if j < V {
                    let lanes = V - j
                    storePartial(vectorExp(loadPartial(x + j, lanes) - m) * scale, d + j, lanes)
                }
                d[label] -= dloss
            }
        }
    }
}
