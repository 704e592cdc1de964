/// Where and how strongly dropout applies: one site of the model (e.g. the attention probabilities of
/// layer 3) for one micro-batch.
///
/// The keep/drop decision of an element is a pure function of (seed, step, global sample index,
/// layer, site) and of the element's index inside its sequence, drawn from `Philox`. So the same
/// sample gets the same mask whatever micro-batch or rank it lands in. With `record` set, forward
/// records the decisions there (one byte per element) and backward replays them, so each mask is
/// drawn once per step; without, backward draws it again.
///
/// Rows: a kernel sees its data as rows of `rowLength` elements; `rowsPerSample` consecutive rows
/// belong to one sequence (T rows of C for hidden states, NH*T rows of T for attention
/// probabilities), and the element index inside the sequence is `(row % rowsPerSample) * rowLength + j`.
/// A kernel that works on a subset of those rows (the last encoder layer at the rows the losses read)
/// names each of its rows' place in the full layout through `rowMap`, so a row gets the same mask
/// whichever rows are computed.
public struct DropoutMask {
    /// Probability of dropping an element; kept elements are scaled by 1 / (1 - probability).
    public var probability: Float
    public var seed: UInt64
    public var step: UInt64
    public var layer: UInt64
    public var site: UInt64
    /// Global sample index of each sequence of the micro-batch, [B].
    public var sampleIndices: UnsafePointer<Int>
    /// Keep (1) / drop (0) per element, laid out like the kernel's data: element j of row r at
    /// `record[r * rowLength + j]`.
    public var record: UnsafeMutablePointer<UInt8>?
    /// Read the multipliers from `record` (written by the forward pass) instead of drawing them.
    public var replay = false
    public var rowsPerSample: Int
    /// Kernel row r is row `rowMap[r]` of the full layout; nil when the kernel has every row.
    public var rowMap: UnsafePointer<Int32>?

    public init(
        probability: Float, seed: UInt64, step: UInt64, layer: UInt64, site: UInt64,
        sampleIndices: UnsafePointer<Int>, rowsPerSample: Int
    ) {
        precondition(probability >= 0 && probability < 1, "dropout probability must be in [0, 1)")
        self.probability = probability
        self.seed = seed
        self.step = step
        self.layer = layer
        self.site = site
        self.sampleIndices = sampleIndices
        self.rowsPerSample = rowsPerSample
    }

    /// The factor applied to kept elements.
    public var scale: Float { 1 / (1 - probability) }

    /// Each element uses 16 random bits (8 elements per Philox block); it is dropped when those bits
    /// are below `probability * 65536`, i.e. with the configured probability to within 2^-17.
    var threshold: UInt32 { UInt32((probability * 65_536).rounded()) }

    /// Writes the multipliers (0 or `scale`) of elements `first ..< first + count` of sequence
    /// `sample` (index into `sampleIndices`). Elements come in groups of 128: element e is lane
    /// `e & 15` of 16-bit slice `k = (e & 127) >> 4` of Philox block `16 (e >> 7) + (e & 15)`, i.e. the
    /// low (even k) or high (odd k) half of word `k >> 1`, and is dropped when that half is below
    /// `round(probability * 65536)`. So a group is 16 Philox blocks computed side by side whose eight
    /// half-word vectors are the group's eight runs of 16 multipliers, stored as they are.
    @inline(__always)
    public func multipliers(_ out: UnsafeMutablePointer<Float>, sample: Int, first: Int, count: Int) {
        let key = Philox(seed: seed, step, UInt64(sampleIndices[sample]), layer, site).key
        let limit = SIMD16<UInt32>(repeating: threshold)
        let zero = FloatVector(), kept = FloatVector(repeating: scale)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 128) { buffer in
            let group = buffer.baseAddress!
            var j = 0
            while j < count {
                let element = first + j
                let offset = element & 127
                let n = min(128 - offset, count - j)
                // A whole aligned group goes straight to `out`; a partial one through `group`.
                let o = n == 128 ? out + j : group
                let (w0, w1, w2, w3) = philoxBlocks(key, firstBlock: UInt64(element >> 7) << 4)
                store(kept.replacing(with: zero, where: (w0 & 0xFFFF) .< limit), o)
                store(kept.replacing(with: zero, where: (w0 &>> 16) .< limit), o + 16)
                store(kept.replacing(with: zero, where: (w1 & 0xFFFF) .< limit), o + 32)
                store(kept.replacing(with: zero, where: (w1 &>> 16) .< limit), o + 48)
                store(kept.replacing(with: zero, where: (w2 & 0xFFFF) .< limit), o + 64)
                store(kept.replacing(with: zero, where: (w2 &>> 16) .< limit), o + 80)
                store(kept.replacing(with: zero, where: (w3 & 0xFFFF) .< limit), o + 96)
                store(kept.replacing(with: zero, where: (w3 &>> 16) .< limit), o + 112)
                if n < 128 { (out + j).update(from: group + offset, count: n) }
                j += n
            }
        }
    }
}

/// Philox4x32-10 (the same function as `Philox.block`) for the 16 consecutive block counters
/// `firstBlock ..< firstBlock + 16` at once (firstBlock a multiple of 16); lane i of each output
/// word belongs to block `firstBlock + i`. The 32 x 32 -> 64-bit products become `vpmuludq`.
@inline(__always)
func philoxBlocks(
    _ key: (UInt32, UInt32), firstBlock: UInt64
) -> (SIMD16<UInt32>, SIMD16<UInt32>, SIMD16<UInt32>, SIMD16<UInt32>) {
    // A group's first block is a multiple of 16, so adding the lane never carries into the high word.
    assert(firstBlock & 15 == 0, "a group of Philox blocks starts at a multiple of 16")
    var c0 = SIMD16<UInt32>(repeating: UInt32(truncatingIfNeeded: firstBlock))
        | SIMD16<UInt32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
    var c1 = SIMD16<UInt32>(repeating: UInt32(truncatingIfNeeded: firstBlock >> 32))
    var c2 = SIMD16<UInt32>(), c3 = SIMD16<UInt32>()
    var k0 = key.0, k1 = key.1
    // The even and odd lanes as the low and high halves of eight 64-bit lanes: with the upper
    // halves known to be zero, each product is one `vpmuludq`, and the halves interleave back by
    // masks and shifts (widening SIMD16<UInt32> to SIMD16<UInt64> instead became out-of-line calls
    // and 64 x 64-bit multiplies inside the larger kernels).
    @inline(__always)
    func multiply(_ a: SIMD16<UInt32>, _ m: UInt32) -> (high: SIMD16<UInt32>, low: SIMD16<UInt32>) {
        let pairs = unsafeBitCast(a, to: SIMD8<UInt64>.self)
        let lowHalf = SIMD8<UInt64>(repeating: 0xFFFF_FFFF)
        let even = (pairs & lowHalf) &* UInt64(m)
        let odd = (pairs &>> 32) &* UInt64(m)
        let high = (even &>> 32) | (odd & ~lowHalf)
        let low = (even & lowHalf) | (odd &<< 32)
        return (unsafeBitCast(high, to: SIMD16<UInt32>.self), unsafeBitCast(low, to: SIMD16<UInt32>.self))
    }
    for round in 0..<10 {
        if round > 0 {
            k0 &+= 0x9E37_79B9
            k1 &+= 0xBB67_AE85
        }
        let (hi0, lo0) = multiply(c0, 0xD251_1F53)
        let (hi1, lo1) = multiply(c2, 0xCD9E_8D57)
        (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
    }
    return (c0, c1, c2, c3)
}

/// Rows of multipliers are generated into a stack buffer of at most this many floats at a time.
let dropoutChunk = 1024

/// Calls `body(start, count, multipliers)` for consecutive pieces of the multipliers of one row
/// (`row` in the layout described at `DropoutMask`), without heap allocation; records them in or
/// replays them from `dropout.record` when set.
@inline(__always)
func withDropoutMultipliers(
    _ dropout: DropoutMask, row: Int, rowLength: Int,
    _ body: (Int, Int, UnsafePointer<Float>) -> Void
) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: min(rowLength, dropoutChunk)) { buffer in
        let scratch = buffer.baseAddress!
        let logicalRow = dropout.rowMap.map { Int($0[row]) } ?? row
        let sample = logicalRow / dropout.rowsPerSample
        let rowFirst = (logicalRow % dropout.rowsPerSample) * rowLength
        let scale = dropout.scale
        var start = 0
        while start < rowLength {
            let count = min(dropoutChunk, rowLength - start)
            let record = dropout.record.map { $0 + row * rowLength + start }
            if let record, dropout.replay {
                // Records hold 0 or 1, so this is the multiplier; as a conversion it vectorises.
                for k in 0..<count { scratch[k] = Float(record[k]) * scale }
            } else {
                dropout.multipliers(scratch, sample: sample, first: rowFirst + start, count: count)
                if let record {
                    for k in 0..<count { record[k] = scratch[k] != 0 ? 1 : 0 }
                }
            }
            body(start, count, scratch)
            start += count
        }
    }
}

// MARK: - Stand-alone dropout

/// `out = inp * mask / (1 - p)`: inp and out are (rows, C); out may alias inp.
public func dropoutForward(
    _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ dropout: DropoutMask,
    rows: Int, columns C: Int
) {
    Parallel.forEachChunk(rows, minimumChunk: max(1, 16_384 / max(1, C))) { range in
        dropoutForward(out, inp, dropout, rows: range, columns: C)
    }
}

/// `dropoutForward` on a range of the rows only, on the calling thread: for callers that parallelise
/// themselves (attention, head by head). Pointers are to the whole (rows, C) tensors.
public func dropoutForward(
    _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ dropout: DropoutMask,
    rows range: Range<Int>, columns C: Int
) {
    for row in range {
        withDropoutMultipliers(dropout, row: row, rowLength: C) { start, count, multipliers in
            let x = inp + row * C + start
            let y = out + row * C + start
            for j in 0..<count { y[j] = x[j] * multipliers[j] }
        }
    }
}

/// `dinp = dout * mask / (1 - p)` with the mask replayed or drawn again; dinp may alias dout.
public func dropoutBackward(
    _ dinp: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>, _ dropout: DropoutMask,
    rows: Int, columns C: Int
) {
    dropoutForward(dinp, dout, dropout, rows: rows, columns: C)
}
