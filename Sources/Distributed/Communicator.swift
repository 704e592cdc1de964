/// The element types collectives move and sum.
public enum CollectiveElementKind: Sendable {
    case float, double, int64, byte
}

/// A type that collectives can carry. Sums are defined for every kind but `byte`.
public protocol CollectiveElement: Numeric, Sendable {
    static var collectiveKind: CollectiveElementKind { get }
}

extension Float: CollectiveElement { public static var collectiveKind: CollectiveElementKind { .float } }
extension Double: CollectiveElement { public static var collectiveKind: CollectiveElementKind { .double } }
extension Int64: CollectiveElement { public static var collectiveKind: CollectiveElementKind { .int64 } }
extension UInt8: CollectiveElement { public static var collectiveKind: CollectiveElementKind { .byte } }

/// A collective that was started and has not been waited for.
public protocol PendingCollective: AnyObject {
    /// Blocks until the collective has completed on this rank; throws its error.
    func wait() throws
}

/// The ranks of one training job and the collectives between them.
///
/// Every rank calls the same collectives in the same order; buffers are used in place, with no copy
/// of the whole buffer. Two implementations: `MPICommunicator` (processes under `mpirun`) and
/// `InProcessCommunicator` (threads acting as ranks, for the debug mode and unit tests).
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }

    func barrier() throws
    /// Copies `buffer` of rank `root` into `buffer` of every other rank.
    func broadcast<T: CollectiveElement>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws
    /// Replaces `buffer` on every rank by the element-wise sum over all ranks.
    func allReduceSum<T: CollectiveElement>(_ buffer: UnsafeMutableBufferPointer<T>) throws
    /// Starts `allReduceSum`; the buffer must not be touched until `wait()` returns.
    func startAllReduceSum<T: CollectiveElement>(_ buffer: UnsafeMutableBufferPointer<T>) throws
        -> PendingCollective
    /// `receive` holds `size * send.count` elements: rank r's `send` lands at `r * send.count`.
    func allGather<T: CollectiveElement>(
        _ send: UnsafeBufferPointer<T>, into receive: UnsafeMutableBufferPointer<T>) throws
    /// Ends the whole job at once with `code`, on every rank.
    func abort(code: Int32) -> Never
}

/// A failed collective, naming the rank that saw it.
public struct CommunicatorError: Error, CustomStringConvertible, Sendable {
    public let rank: Int
    public let operation: String
    public let message: String

    public init(rank: Int, operation: String, message: String) {
        self.rank = rank
        self.operation = operation
        self.message = message
    }

    public var description: String { "rank \(rank): \(operation) failed: \(message)" }
}

/// Checks the buffers of a block collective: `whole` must hold one `block` per rank. Shared by the
/// communicators so both report a mismatch the same way.
func checkBlockSizes(whole: Int, block: Int, ranks: Int, rank: Int, operation: String, wholeName: String) throws {
    guard whole == block * ranks else {
        throw CommunicatorError(
            rank: rank, operation: operation,
            message: "\(wholeName) buffer holds \(whole) elements, needs \(block * ranks)")
    }
}

// MARK: - Conveniences built on the primitives

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    public func allReduceSum<T: CollectiveElement>(_ values: inout [T]) throws {
        try values.withUnsafeMutableBufferPointer { try allReduceSum($0) }
    }

    public func allReduceSum<T: CollectiveElement>(_ value: T) throws -> T {
        var values = [value]
        try allReduceSum(&values)
        return values[0]
    }

    public func broadcast<T: CollectiveElement>(_ values: inout [T], root: Int) throws {
        try values.withUnsafeMutableBufferPointer { try broadcast($0, root: root) }
    }

    /// Rank `root`'s bytes on every rank (the length is broadcast first).
    public func broadcast(bytes: [UInt8], root: Int) throws -> [UInt8] {
        var length = [Int64(bytes.count)]
        try broadcast(&length, root: root)
        var buffer = rank == root ? bytes : [UInt8](repeating: 0, count: Int(length[0]))
        try broadcast(&buffer, root: root)
        return buffer
    }

    public func broadcast(string: String, root: Int) throws -> String {
        String(decoding: try broadcast(bytes: Array(string.utf8), root: root), as: UTF8.self)
    }

    /// One value from every rank, in rank order.
    public func allGather<T: CollectiveElement>(_ value: T) throws -> [T] {
        var receive = [T](repeating: 0, count: size)
        var send = [value]
        try send.withUnsafeMutableBufferPointer { send in
            try receive.withUnsafeMutableBufferPointer {
                try allGather(UnsafeBufferPointer(send), into: $0)
            }
        }
        return receive
    }

    /// One string from every rank, in rank order.
    public func allGather(string: String) throws -> [String] {
        let bytes = Array(string.utf8)
        let lengths = try allGather(Int64(bytes.count))
        let width = Int(lengths.max() ?? 0)
        var send = bytes + [UInt8](repeating: 0, count: width - bytes.count)
        var receive = [UInt8](repeating: 0, count: width * size)
        try send.withUnsafeMutableBufferPointer { send in
            try receive.withUnsafeMutableBufferPointer {
                try allGather(UnsafeBufferPointer(send), into: $0)
            }
        }
        return (0..<size).map { r in
            String(decoding: receive[(r * width)..<(r * width + Int(lengths[r]))], as: UTF8.self)
        }
    }
}
