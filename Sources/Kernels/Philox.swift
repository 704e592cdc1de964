/// Philox4x32-10, the counter-based generator of Salmon et al. (SC'11), as used by cuRAND and JAX.
///
/// A random stream is a pure function of (key, counter): masking and dropout draw from keys such as
/// (seed, sample index) so the same sample gets the same random numbers whatever rank, micro-batch
/// or resume reads it. No state is carried between calls.
public struct Philox: Sendable, Hashable {
    public var key: (UInt32, UInt32)

    public init(seed: UInt64) {
        key = (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32))
    }

    /// A generator keyed by several identifiers, mixed into one 64-bit key (SplitMix64 finaliser), so
    /// that e.g. (seed, epoch, sample) and (seed, epoch + 1, sample) give unrelated streams.
    public init(seed: UInt64, _ identifiers: UInt64...) {
        var h = Philox.mix(seed)
        for id in identifiers { h = Philox.mix(h ^ Philox.mix(id &+ 0x9E37_79B9_7F4A_7C15)) }
        self.init(seed: h)
    }

    public static func == (a: Philox, b: Philox) -> Bool { a.key == b.key }
    public func hash(into hasher: inout Hasher) { hasher.combine(key.0); hasher.combine(key.1) }

    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The four 32-bit outputs for a 128-bit counter given as two 64-bit halves.
    @inline(__always)
    public func block(_ counterLow: UInt64, _ counterHigh: UInt64 = 0) -> (UInt32, UInt32, UInt32, UInt32) {
        var c0 = UInt32(truncatingIfNeeded: counterLow)
        var c1 = UInt32(truncatingIfNeeded: counterLow >> 32)
        var c2 = UInt32(truncatingIfNeeded: counterHigh)
        var c3 = UInt32(truncatingIfNeeded: counterHigh >> 32)
        var k0 = key.0
        var k1 = key.1
        for round in 0..<10 {
            if round > 0 {
                k0 &+= 0x9E37_79B9
                k1 &+= 0xBB67_AE85
            }
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            let hi0 = UInt32(truncatingIfNeeded: p0 >> 32), lo0 = UInt32(truncatingIfNeeded: p0)
            let hi1 = UInt32(truncatingIfNeeded: p1 >> 32), lo1 = UInt32(truncatingIfNeeded: p1)
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
        }
        return (c0, c1, c2, c3)
    }

    /// The `index`-th 32-bit random word of this stream.
    @inline(__always)
    public func uint32(at index: UInt64) -> UInt32 {
        let b = block(index >> 2)
        switch index & 3 {
        case 0: return b.0
        case 1: return b.1
        case 2: return b.2
        default: return b.3
        }
    }

    /// A uniform Float in [0, 1) from the `index`-th word (24 random bits, exactly representable).
    @inline(__always)
    public func uniform(at index: UInt64) -> Float {
        Float(uint32(at: index) >> 8) * (1.0 / 16_777_216.0)
    }

    /// A uniform integer in 0..<bound from the `index`-th 64 random bits (bias below 2^-32).
    @inline(__always)
    public func integer(below bound: Int, at index: UInt64) -> Int {
        precondition(bound > 0)
        let b = block(index >> 1)
        let word = (index & 1 == 0)
            ? UInt64(b.0) << 32 | UInt64(b.1)
            : UInt64(b.2) << 32 | UInt64(b.3)
        return Int(word.multipliedFullWidth(by: UInt64(bound)).high)
    }
}
