import Kernels

/// A sequential view of a `Philox` stream: draws consume consecutive 32-bit words. Used where an
/// algorithm (Google's instance builder, a shuffle) needs "the next random number" but the result
/// must still be a pure function of the key, whatever thread runs it. Each Philox block gives four
/// words; the stream keeps the current block so a block is computed once, not once per word.
public struct RandomStream {
    public let generator: Philox
    /// Words drawn so far.
    public private(set) var counter: UInt64 = 0
    private var block: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)

    public init(_ generator: Philox) { self.generator = generator }

    /// The next 32-bit word of the stream.
    @inline(__always)
    public mutating func nextWord() -> UInt32 {
        let lane = counter & 3
        if lane == 0 { block = generator.block(counter >> 2) }
        counter &+= 1
        switch lane {
        case 0: return block.0
        case 1: return block.1
        case 2: return block.2
        default: return block.3
        }
    }

    /// Uniform in [0, 1) (24 random bits).
    @inline(__always)
    public mutating func uniform() -> Float {
        Float(nextWord() >> 8) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [0, 1) with 53 random bits, for probabilities compared against Double settings.
    @inline(__always)
    public mutating func uniformDouble() -> Double {
        let word = UInt64(nextWord()) << 32 | UInt64(nextWord())
        return Double(word >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Uniform integer in `0..<bound` (64 random bits, multiply-high; bias below 2^-32).
    @inline(__always)
    public mutating func integer(below bound: Int) -> Int {
        precondition(bound > 0, "integer(below:) needs a positive bound")
        let word = UInt64(nextWord()) << 32 | UInt64(nextWord())
        return Int(word.multipliedFullWidth(by: UInt64(bound)).high)
    }

    /// Uniform integer in `range` (inclusive, like Python's `random.randint`).
    @inline(__always)
    public mutating func integer(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + integer(below: range.upperBound - range.lowerBound + 1)
    }
}
