// Embedding lookups (word + position + token type) and row gathers, with their scatter-add backward.

/// `out[b, t] = wte[ids[b, t]] + wpe[firstPosition + t] + wtt[types[b, t]]`: ids and types are (B, T),
/// wte is (V, C), wpe is (maxPositions, C) with firstPosition + T <= maxPositions, wtt is (typeCount, C), out is (B, T, C).
/// Ids must be in range (callers validate their inputs once per batch). A negative id -1 - k takes
/// row k of `prompts` instead of a word (prompt tuning's virtual tokens).
public func embeddingForward(
    _ out: UnsafeMutablePointer<Float>,
    _ ids: UnsafePointer<Int32>, _ types: UnsafePointer<Int32>,
    _ wte: UnsafePointer<Float>, _ wpe: UnsafePointer<Float>, _ wtt: UnsafePointer<Float>,
    prompts: UnsafePointer<Float>? = nil, firstPosition: Int = 0, batch B: Int, length T: Int, channels C: Int
) {
    Parallel.forEachChunk(B * T, minimumChunk: max(1, 16_384 / max(1, C))) { range in
        for n in range {
            let t = n % T
            let id = Int(ids[n])
            let word = id >= 0 ? wte + id * C : prompts! + (-1 - id) * C
            let position = wpe + (firstPosition + t) * C, type = wtt + Int(types[n]) * C
            let o = out + n * C
            var j = 0
            while j + 16 <= C {
                store(load(word + j) + load(position + j) + load(type + j), o + j)
                j += 16
            }
            while j < C {
                o[j] = word[j] + position[j] + type[j]
                j += 1
            }
        }
    }
}

/// Backward of `embeddingForward`, adding into the three tables and `dprompts` for the virtual
/// tokens (a nil table is frozen and skipped). Tokens equal to `paddingID` add nothing to their word
/// embedding row (torch.nn.Embedding with `padding_idx`, as in Hugging Face BERT); they still count
/// for positions and token types.
public func embeddingBackward(
    _ dwte: UnsafeMutablePointer<Float>?, _ dwpe: UnsafeMutablePointer<Float>?, _ dwtt: UnsafeMutablePointer<Float>?,
    dprompts: UnsafeMutablePointer<Float>? = nil,
    _ dout: UnsafePointer<Float>, _ ids: UnsafePointer<Int32>, _ types: UnsafePointer<Int32>, paddingID: Int32?,
    firstPosition: Int = 0, batch B: Int, length T: Int, channels C: Int
) {
    // Scatter-adds are split over groups of channels, so every destination has one writer and the
    // summation order (batch order) does not depend on the thread count.
    let groups = (C + 15) / 16
    Parallel.forEachChunk(groups, minimumChunk: max(1, 4_096 / max(1, 16 * B * T))) { range in
        let start = range.lowerBound * 16, end = min(C, range.upperBound * 16)
        for n in 0..<(B * T) {
            let g = dout + n * C
            func add(_ row: UnsafeMutablePointer<Float>?) {
                guard let row else { return }
                var j = start
                while j + 16 <= end {
                    store(load(row + j) + load(g + j), row + j)
                    j += 16
                }
                while j < end {
                    row[j] += g[j]
                    j += 1
                }
            }
            let id = Int(ids[n])
            if id < 0 {
                add(dprompts.map { $0 + (-1 - id) * C })
            } else {
                add(ids[n] == paddingID ? nil : dwte.map { $0 + id * C })
            }
            add(dwpe.map { $0 + (firstPosition + n % T) * C })
            add(dwtt.map { $0 + Int(types[n]) * C })
        }
    }
}

/// `out[p] = inp[indices[p]]`: inp is (N, C) with rows `inputStride` >= C apart, indices (P) in
/// 0..<N, out is (P, C).
public func gatherRows(
    _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ indices: UnsafePointer<Int32>,
    count P: Int, channels C: Int, inputStride: Int? = nil
) {
    let rowStride = inputStride ?? C
    for p in 0..<P {
        (out + p * C).update(from: inp + Int(indices[p]) * rowStride, count: C)
    }
}

/// The inverse of `gatherRows` over all N rows: `out[indices[p]] = inp[p]` and every other row of
/// out 0. indices (P) distinct, ascending in 0..<N; inp is (P, C), out (N, C) with rows
/// `outputStride` >= C apart (only the first C columns are written). out may be inp itself (same
/// stride): rows move from the last to the first, and row indices[p] >= p is never one still to read.
public func expandRows(
    _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ indices: UnsafePointer<Int32>,
    count P: Int, rows N: Int, channels C: Int, outputStride: Int? = nil
) {
    let rowStride = outputStride ?? C
    var p = P - 1
    for row in stride(from: N - 1, through: 0, by: -1) {
        let destination = out + row * rowStride
        if p >= 0 && Int(indices[p]) == row {
            if UnsafePointer(destination) != inp + p * C { destination.update(from: inp + p * C, count: C) }
            p -= 1
        } else {
            destination.update(repeating: 0, count: C)
        }
    }
    precondition(p < 0, "expandRows: indices must be ascending and in 0..<\(N)")
}

/// Backward of `gatherRows`: `dinp[indices[p]] += dout[p]`.
public func scatterAddRows(
    _ dinp: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>, _ indices: UnsafePointer<Int32>,
    count P: Int, channels C: Int
) {
    for p in 0..<P {
        let d = dinp + Int(indices[p]) * C, g = dout + p * C
        for j in 0..<C { d[j] += g[j] }
    }
}
