/// The hidden activation of a feed-forward block and of the MLM head transform.
public enum ActivationFunction: String, Sendable, Codable, CaseIterable {
    /// x Φ(x) with the exact erf (Hugging Face `gelu`, BERT's default).
    case gelu
    /// The tanh approximation of GELU (Hugging Face `gelu_new`).
    case geluTanh = "gelu_new"
    case relu
}

@_transparent
func activate(_ x: FloatVector, _ function: ActivationFunction) -> FloatVector {
    switch function {
    case .gelu:
        return 0.5 * x * (1 + vectorErf(x * 0.707_106_781_186_547_6))
    case .geluTanh:
        let u = 0.797_884_560_802_865_4 * (x + 0.044_715 * x * x * x)
        return 0.5 * x * (1 + vectorTanh(u))
    case .relu:
        return vmax(x, FloatVector())
    }
}

/// d activation / dx at x.
@_transparent
func activationDerivative(_ x: FloatVector, _ function: ActivationFunction) -> FloatVector {
    switch function {
    case .gelu:
        // Φ(x) + x φ(x), φ the standard normal density.
        let cdf = 0.5 * (1 + vectorErf(x * 0.707_106_781_186_547_6))
        let pdf = 0.398_942_280_401_432_7 * vectorExp(-0.5 * x * x)
        return cdf + x * pdf
    case .geluTanh:
        let x2 = x * x
        let t = vectorTanh(0.797_884_560_802_865_4 * (x + 0.044_715 * x2 * x))
        let du = 0.797_884_560_802_865_4 * (1 + 0.134_145 * x2)
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du
    case .relu:
        return FloatVector(repeating: 1).replacing(with: 0, where: x .<= 0)
    }
}

/// Bias and activation of a linear layer in one pass: `pre += bias` (pre holds the GEMM output),
/// `out = f(pre)`; pre and out are (N, OC), bias is (OC). `pre` is kept for backward.
public func biasActivationForward(
    _ out: UnsafeMutablePointer<Float>, _ pre: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>,
    _ function: ActivationFunction, rows N: Int, columns OC: Int
) {
    Parallel.forEachChunk(N, minimumChunk: max(1, 8_192 / max(1, OC))) { range in
        for n in range {
            let p = pre + n * OC
            let o = out + n * OC
            var j = 0
            while j + 16 <= OC {
                let x = load(p + j) + load(bias + j)
                store(x, p + j)
                store(activate(x, function), o + j)
                j += 16
            }
            if j < OC {
                let lanes = OC - j
                let x = loadPartial(p + j, lanes) + loadPartial(bias + j, lanes)
                storePartial(x, p + j, lanes)
                storePartial(activate(x, function), o + j, lanes)
            }
        }
    }
}

/// `out = f(inp)` element-wise over `count` elements; out may alias inp.
public func activationForward(
    _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ function: ActivationFunction, count: Int
) {
    Parallel.forEachChunk(count, minimumChunk: 8_192) { range in
        var i = range.lowerBound
        while i + 16 <= range.upperBound {
            store(activate(load(inp + i), function), out + i)
            i += 16
        }
        if i < range.upperBound {
            let lanes = range.upperBound - i
            storePartial(activate(loadPartial(inp + i, lanes), function), out + i, lanes)
        }
    }
}

/// `dinp = dout * f'(pre)`: written; dinp may alias dout. All are (count).
public func activationBackward(
    _ dinp: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>, _ pre: UnsafePointer<Float>,
    _ function: ActivationFunction, count: Int
) {
    Parallel.forEachChunk(count, minimumChunk: 8_192) { range in
        var i = range.lowerBound
        while i + 16 <= range.upperBound {
            store(load(dout + i) * activationDerivative(load(pre + i), function), dinp + i)
            i += 16
        }
        if i < range.upperBound {
            let lanes = range.upperBound - i
            let d = loadPartial(dout + i, lanes) * activationDerivative(loadPartial(pre + i, lanes), function)
            storePartial(d, dinp + i, lanes)
        }
    }
}

/// Backward's recomputation of the activation: `out = f(inp)` for the weight gradient and
/// `derivative = f'(inp)` for the input gradient, in one pass (GELU's erf is computed once for both).
public func activationForwardWithDerivative(
    _ out: UnsafeMutablePointer<Float>, _ derivative: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
    _ function: ActivationFunction, count: Int
) {
    @inline(__always)
    func both(_ x: FloatVector) -> (FloatVector, FloatVector) {
        guard function == .gelu else { return (activate(x, function), activationDerivative(x, function)) }
        let e = vectorErf(x * 0.707_106_781_186_547_6)
        let pdf = 0.398_942_280_401_432_7 * vectorExp(-0.5 * x * x)
        return (0.5 * x * (1 + e), 0.5 * (1 + e) + x * pdf)
    }
    Parallel.forEachChunk(count, minimumChunk: 8_192) { range in
        var i = range.lowerBound
        while i + 16 <= range.upperBound {
            let (y, d) = both(load(inp + i))
            store(y, out + i)
            store(d, derivative + i)
            i += 16
        }
        if i < range.upperBound {
            let lanes = range.upperBound - i
            let (y, d) = both(loadPartial(inp + i, lanes))
            storePartial(y, out + i, lanes)
            storePartial(d, derivative + i, lanes)
        }
    }
}

/// `dinp = dout * derivative` with the derivative from `activationForwardWithDerivative`; dinp may
/// alias dout.
public func activationBackward(
    _ dinp: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>, derivative: UnsafePointer<Float>, count: Int
) {
    Parallel.forEachChunk(count, minimumChunk: 16_384) { range in
        for i in range { dinp[i] = dout[i] * derivative[i] }
    }
}

/// `out = tanh(inp)` (the pooler's activation); out may alias inp.
public func tanhForward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, count: Int) {
    VectorMath.tanh(out, inp, count: count)
}

/// `dinp = dout * (1 - out^2)` from the forward output; written, may alias dout.
public func tanhBackward(
    _ dinp: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>, _ out: UnsafePointer<Float>, count: Int
) {
    for i in 0..<count { dinp[i] = dout[i] * (1 - out[i] * out[i]) }
}
