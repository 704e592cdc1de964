import Kernels

/// A sequential view of a `Philox` stream: draws consume consecutive counters. Used where an
/// algorithm (Google's instance builder, a shuffle) needs "the next random number" but the result
/// must still be a pure function of the key, whatever thread runs it.
public struct RandomStream {
    public let generator: Philox
    public private(set) var counter: UInt64 = 0

    public init(_ generator: Philox) { self.generator = generator }

    /// Uniform in [0, 1).
    @inline(__always)
    public mutating func uniform() -> Float {
        defer { counter &+= 1 }
        return generator.uniform(at: counter)
    }

    /// Uniform in [0, 1) with 53 random bits, for probabilities compared against Double settings.
    @inline(__always)
    public mutating func uniformDouble() -> Double {
        defer { counter &+= 2 }
        let word = UInt64(generator.uint32(at: counter)) << 32 | UInt64(generator.uint32(at: counter + 1))
        return Double(word >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Uniform integer in `0..<bound`.
    @inline(__always)
    public mutating func integer(below bound: Int) -> Int {
        defer { counter &+= 1 }
        return generator.integer(below: bound, at: counter)
    }

    /// Uniform integer in `range` (inclusive, like Python's `random.randint`).
    @inline(__always)
    public mutating func integer(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + integer(below: range.upperBound - range.lowerBound + 1)
    }
}
