// Vectorised transcendental functions for the element-wise kernels.
//
// The C library's `expf`/`erff` are scalar calls that the compiler cannot vectorise; one call per
// element costs more than the GEMMs around them for attention softmax and GELU. These are the
// classic polynomial approximations (Cephes `expf`, Eigen's rational `erf`), written on
// `SIMD16<Float>` so that a release build with `-target-cpu native` turns each into a handful of
// AVX-512 instructions. Accuracy is a few ulp, checked against the C library in KernelsTests.
// They are `@_transparent`: `@inline(__always)` was not honoured in the larger kernels, and an
// out-of-line call passes the 16 lanes as four 128-bit pieces.

/// Sixteen floats: the vector unit of every element-wise kernel.
public typealias FloatVector = SIMD16<Float>

@inline(__always)
func load(_ pointer: UnsafePointer<Float>) -> FloatVector {
    UnsafeRawPointer(pointer).loadUnaligned(as: FloatVector.self)
}

@inline(__always)
func load(_ pointer: UnsafeMutablePointer<Float>) -> FloatVector {
    UnsafeRawPointer(pointer).loadUnaligned(as: FloatVector.self)
}

@inline(__always)
func store(_ vector: FloatVector, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: vector, as: FloatVector.self)
}

/// Lane-wise maximum and minimum. The standard library's `pointwiseMax`/`pointwiseMin` handle NaN
/// lane by lane in a scalar loop; a compare and blend is one instruction each.
@_transparent @usableFromInline
func vmax(_ a: FloatVector, _ b: FloatVector) -> FloatVector { a.replacing(with: b, where: b .> a) }

@_transparent @usableFromInline
func vmin(_ a: FloatVector, _ b: FloatVector) -> FloatVector { a.replacing(with: b, where: b .< a) }

/// The largest lane, by halving (`SIMD.max()` is a scalar loop).
@inline(__always)
func horizontalMax(_ v: FloatVector) -> Float {
    let a = v.lowHalf, b = v.highHalf
    let c = a.replacing(with: b, where: b .> a)
    let d = c.lowHalf, e = c.highHalf
    let f = d.replacing(with: e, where: e .> d)
    let g = f.lowHalf, h = f.highHalf
    let i = g.replacing(with: h, where: h .> g)
    return max(i[0], i[1])
}

/// Loads `count < 16` floats; the other lanes are `fill`.
@inline(__always)
func loadPartial(_ pointer: UnsafePointer<Float>, _ count: Int, fill: Float = 0) -> FloatVector {
    var vector = FloatVector(repeating: fill)
    for lane in 0..<count { vector[lane] = pointer[lane] }
    return vector
}

@inline(__always)
func storePartial(_ vector: FloatVector, _ pointer: UnsafeMutablePointer<Float>, _ count: Int) {
    for lane in 0..<count { pointer[lane] = vector[lane] }
}

/// e^x lane by lane (Cephes `expf`: range reduction by ln 2, degree-6 polynomial), relative error
/// below 2e-7 for x in [-87, 88]; inputs below -87 give a tiny positive number, not 0.
@_transparent
public func vectorExp(_ x: FloatVector) -> FloatVector {
    var x = vmin(vmax(x, FloatVector(repeating: -87.0)), FloatVector(repeating: 88.0))
    // Adding 1.5 * 2^23 rounds x * log2(e) to the nearest integer n and leaves n in the low bits of
    // the sum's bit pattern, so n needs no float-to-int conversion.
    let magic = FloatVector(repeating: 12_582_912.0)
    let shifted = x * 1.442_695_040_888_963_4 + magic
    let n = shifted - magic
    x = x - n * 0.693_359_375
    x = x + n * 2.121_944_4e-4
    var y = FloatVector(repeating: 1.987_569_150_0e-4)
    y = y * x + 1.398_199_950_7e-3
    y = y * x + 8.333_451_907_3e-3
    y = y * x + 4.166_579_589_4e-2
    y = y * x + 1.666_666_545_9e-1
    y = y * x + 5.000_000_120_1e-1
    y = y * (x * x) + x + 1
    let shiftedBits = unsafeBitCast(shifted, to: SIMD16<Int32>.self)
    let magicBits = unsafeBitCast(magic, to: SIMD16<Int32>.self)
    let scale = unsafeBitCast((shiftedBits &- magicBits &+ 127) &<< 23, to: FloatVector.self)
    return y * scale
}

/// erf(x) lane by lane: Eigen's rational approximation on [-4, 4] (erf is ±1 in Float beyond),
/// absolute error about 1e-7.
@_transparent
public func vectorErf(_ x: FloatVector) -> FloatVector {
    let x = vmin(vmax(x, FloatVector(repeating: -4)), FloatVector(repeating: 4))
    let x2 = x * x
    var p = x2 * -2.726_142_258_013_06e-10 + 2.770_681_424_959_02e-08
    p = x2 * p - 2.101_024_020_825_08e-06
    p = x2 * p - 5.692_506_394_623_46e-05
    p = x2 * p - 7.349_906_303_268_55e-04
    p = x2 * p - 2.954_599_808_540_25e-03
    p = x2 * p - 1.609_603_332_624_15e-02
    p = x * p
    var q = x2 * -1.456_607_184_649_96e-05 - 2.133_740_552_789_05e-04
    q = x2 * q - 1.682_826_974_382_03e-03
    q = x2 * q - 7.373_329_167_204_68e-03
    q = x2 * q - 1.426_473_905_141_89e-02
    return p / q
}

/// tanh(x) lane by lane (Cephes `tanhf`): an odd polynomial below |x| = 0.625, where the
/// exponential form would lose relative accuracy, and (1 - e^-2|x|) / (1 + e^-2|x|) above.
@_transparent
public func vectorTanh(_ x: FloatVector) -> FloatVector {
    let magnitude = vmin(vmax(x, -x), FloatVector(repeating: 20))
    let e = vectorExp(-2 * magnitude)
    var large = (1 - e) / (1 + e)
    large.replace(with: -large, where: x .< 0)
    let s = x * x
    var p = s * -5.704_988_727_45e-3 + 2.063_908_879_54e-2
    p = p * s - 5.373_971_555_31e-2
    p = p * s + 1.333_144_220_36e-1
    p = p * s - 3.333_328_194_22e-1
    let small = p * s * x + x
    return large.replacing(with: small, where: magnitude .< 0.625)
}

/// The three functions, a scaling and a sum on a whole buffer.
public enum VectorMath {
    public static func exp(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, count: Int) {
        apply(out, inp, count, vectorExp)
    }

    public static func erf(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, count: Int) {
        apply(out, inp, count, vectorErf)
    }

    public static func tanh(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, count: Int) {
        apply(out, inp, count, vectorTanh)
    }

    /// `values *= factor`, in place.
    @inline(__always)
    public static func scale(_ values: UnsafeMutablePointer<Float>, count: Int, by factor: Float) {
        let f = FloatVector(repeating: factor)
        var i = 0
        while i + 16 <= count {
            store(load(values + i) * f, values + i)
            i += 16
        }
        while i < count {
            values[i] *= factor
            i += 1
        }
    }

    /// `values += addend`, element by element.
    public static func add(_ values: UnsafeMutablePointer<Float>, _ addend: UnsafePointer<Float>, count: Int) {
        var i = 0
        while i + 16 <= count {
            store(load(values + i) + load(addend + i), values + i)
            i += 16
        }
        while i < count {
            values[i] += addend[i]
            i += 1
        }
    }

    @inline(__always)
    static func apply(
        _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ count: Int,
        _ function: (FloatVector) -> FloatVector
    ) {
        var i = 0
        while i + 16 <= count {
            store(function(load(inp + i)), out + i)
            i += 16
        }
        if i < count { storePartial(function(loadPartial(inp + i, count - i)), out + i, count - i) }
    }
}
