// LayerNorm over the last dimension, and the fused "bias + dropout + residual add + LayerNorm" that
// closes both halves of a post-LN BERT layer.

/// Normalises one row in place into `out`; returns (mean, rstd). Two passes (mean, then squared
/// deviations) as PyTorch does, which is accurate when the mean is large against the spread.
@inline(__always)
func normalizeRow(
    _ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
    _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>, _ C: Int, _ epsilon: Float
) -> (Float, Float) {
    var s0 = FloatVector(), s1 = FloatVector()
    var j = 0
    while j + 32 <= C {
        s0 += load(x + j)
        s1 += load(x + j + 16)
        j += 32
    }
    while j + 16 <= C {
        s0 += load(x + j)
        j += 16
    }
    var sum = (s0 + s1).sum()
    while j < C {
        sum += x[j]
        j += 1
    }
    let mean = sum / Float(C)
    let m = FloatVector(repeating: mean)
    var v0 = FloatVector(), v1 = FloatVector()
    j = 0
    while j + 32 <= C {
        let d0 = load(x + j) - m, d1 = load(x + j + 16) - m
        v0 += d0 * d0
        v1 += d1 * d1
        j += 32
    }
    while j + 16 <= C {
        let d = load(x + j) - m
        v0 += d * d
        j += 16
    }
    var squares = (v0 + v1).sum()
    while j < C {
        let d = x[j] - mean
        squares += d * d
        j += 1
    }
    let rstd = 1 / (squares / Float(C) + epsilon).squareRoot()
    let r = FloatVector(repeating: rstd)
    j = 0
    while j + 16 <= C {
        store((load(x + j) - m) * r * load(weight + j) + load(bias + j), out + j)
        j += 16
    }
    while j < C {
        out[j] = (x[j] - mean) * rstd * weight[j] + bias[j]
        j += 1
    }
    return (mean, rstd)
}

/// `out = (inp - mean) * rstd * weight + bias` per row: inp and out are (N, C), weight and bias
/// (C), mean and rstd (N) are saved for backward. out may not alias inp.
public func layerNormForward(
    _ out: UnsafeMutablePointer<Float>, _ mean: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>,
    _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>,
    rows N: Int, columns C: Int, epsilon: Float
) {
    Parallel.forEachChunk(N, minimumChunk: max(1, 16_384 / max(1, C))) { range in
        for n in range {
            (mean[n], rstd[n]) = normalizeRow(out + n * C, inp + n * C, weight, bias, C, epsilon)
        }
    }
}

/// The end of each half of a post-LN layer:
/// `sum = residual + dropout(inp + inpBias)`, `out = LayerNorm(sum)`.
/// inp (the dense layer's output without bias), residual, sum and out are (N, C); `sum`, mean and
/// rstd are saved for backward; sum may be residual itself. Dropout rows are the N rows of C
/// (`rowsPerSample` = T).
public func residualLayerNormForward(
    _ out: UnsafeMutablePointer<Float>, _ sum: UnsafeMutablePointer<Float>,
    _ mean: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>,
    _ inp: UnsafePointer<Float>, _ inpBias: UnsafePointer<Float>, _ residual: UnsafePointer<Float>,
    _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>, _ dropout: DropoutMask?,
    rows N: Int, columns C: Int, epsilon: Float
) {
    Parallel.forEachChunk(N, minimumChunk: max(1, 8_192 / max(1, C))) { range in
        for n in range {
            let x = inp + n * C, r = residual + n * C, s = sum + n * C
            if let dropout {
                withDropoutMultipliers(dropout, row: n, rowLength: C) { start, count, multipliers in
                    // Explicit vectors: s may be r, and the compiler does not vectorise a loop whose
                    // stores may alias its loads.
                    let s = s + start, r = r + start, x = x + start, b = inpBias + start
                    var j = 0
                    while j + 16 <= count {
                        store(load(r + j) + (load(x + j) + load(b + j)) * load(multipliers + j), s + j)
                        j += 16
                    }
                    while j < count {
                        s[j] = r[j] + (x[j] + b[j]) * multipliers[j]
                        j += 1
                    }
                }
            } else {
                var j = 0
                while j + 16 <= C {
                    store(load(r + j) + load(x + j) + load(inpBias + j), s + j)
                    j += 16
                }
                while j < C {
                    s[j] = r[j] + x[j] + inpBias[j]
                    j += 1
                }
            }
            (mean[n], rstd[n]) = normalizeRow(out + n * C, s, weight, bias, C, epsilon)
        }
    }
}

/// Backward of `layerNormForward`: dinp is written (it may alias dout), dweight and dbias are added
/// (both skipped when nil: frozen parameters). dout, inp, dinp are (N, C).
public func layerNormBackward(
    _ dinp: UnsafeMutablePointer<Float>, _ dweight: UnsafeMutablePointer<Float>?, _ dbias: UnsafeMutablePointer<Float>?,
    _ dout: UnsafePointer<Float>, _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
    _ mean: UnsafePointer<Float>, _ rstd: UnsafePointer<Float>,
    rows N: Int, columns C: Int
) {
    // Parameter gradients first, split over column groups (one owner per sum, fixed order), while
    // dout is intact: dinp may overwrite it below.
    let groups = (C + 15) / 16
    if dweight != nil || dbias != nil {
    Parallel.forEachChunk(groups, minimumChunk: max(1, 8_192 / max(1, 16 * N))) { range in
        for group in range {
            let j = group * 16
            let lanes = min(16, C - j)
            var dw = FloatVector(), db = FloatVector()
            for n in 0..<N {
                let g = lanes == 16 ? load(dout + n * C + j) : loadPartial(dout + n * C + j, lanes)
                let x = lanes == 16 ? load(inp + n * C + j) : loadPartial(inp + n * C + j, lanes)
                let xhat = (x - mean[n]) * rstd[n]
                dw += g * xhat
                db += g
            }
            for (sum, destination) in [(dw, dweight), (db, dbias)] {
                guard let destination else { continue }
                if lanes == 16 {
                    store(load(destination + j) + sum, destination + j)
                } else {
                    for lane in 0..<lanes { destination[j + lane] += sum[lane] }
                }
            }
        }
    }
    }
    Parallel.forEachChunk(N, minimumChunk: max(1, 16_384 / max(1, C))) { range in
        for n in range {
            let g = dout + n * C, x = inp + n * C, d = dinp + n * C
            let m = mean[n], r = rstd[n]
            // dxhat = dout * weight; dinp = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
            var a = FloatVector(), b = FloatVector()
            var j = 0
            while j + 16 <= C {
                let dxhat = load(g + j) * load(weight + j)
                let xhat = (load(x + j) - m) * r
                a += dxhat
                b += dxhat * xhat
                j += 16
            }
            var sumD = a.sum(), sumDX = b.sum()
            while j < C {
                let dxhat = g[j] * weight[j]
                sumD += dxhat
                sumDX += dxhat * (x[j] - m) * r
                j += 1
            }
            let meanD = sumD / Float(C), meanDX = sumDX / Float(C)
            j = 0
            while j + 16 <= C {
                let dxhat = load(g + j) * load(weight + j)
                let xhat = (load(x + j) - m) * r
                store((dxhat - meanD - xhat * meanDX) * r, d + j)
                j += 16
            }
            while j < C {
                let dxhat = g[j] * weight[j]
                let xhat = (x[j] - m) * r
                d[j] = (dxhat - meanD - xhat * meanDX) * r
                j += 1
            }
        }
    }
}
