extension UnsafeMutableBufferPointer where Element == Float {
    /// Uninitialised room for `count` floats starting on a 64-byte cache line, so that the 16-float
    /// vector loads of a weight row that starts on a multiple of 16 never straddle two lines (large
    /// `malloc` blocks start 16 bytes past a page; misaligned rows streamed a third slower).
    public static func allocateAligned(capacity count: Int) -> UnsafeMutableBufferPointer<Float> {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(1, count) * MemoryLayout<Float>.stride, alignment: 64)
        return UnsafeMutableBufferPointer(start: raw.bindMemory(to: Float.self, capacity: count), count: count)
    }
}
