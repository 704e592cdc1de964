import Foundation

/// N ranks as N threads of one process, for the single-node debug mode and unit tests.
///
/// Collectives have MPI's semantics: every rank calls the same ones in the same order, buffers are
/// used in place. Each collective publishes the ranks' buffer addresses, meets at a barrier, lets rank
/// r do the arithmetic for its own slice of every buffer (so the work is spread over the threads and
/// nothing is copied whole), and meets again. A rank that fails, or does not arrive within the
/// timeout, makes every other rank's collective throw instead of waiting forever.
public final class InProcessWorld: @unchecked Sendable {
    public let size: Int
    /// Seconds a rank waits for the others at a collective before the job fails; nil waits forever.
    public let timeout: Double?

    private let condition = NSCondition()
    private var arrivedRanks: Set<Int> = []
    private var generation = 0
    private var failure: CommunicatorError?
    // One slot per rank, written only by that rank between meetings: raw storage, not Swift arrays,
    // so that concurrent writes to different slots are not accesses to one shared value.
    fileprivate let addresses: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    fileprivate let counts: UnsafeMutablePointer<Int>

    public init(size: Int, timeout: Double? = nil) {
        precondition(size >= 1, "a world needs at least one rank")
        self.size = size
        self.timeout = timeout
        addresses = .allocate(capacity: size)
        addresses.initialize(repeating: nil, count: size)
        counts = .allocate(capacity: size)
        counts.initialize(repeating: 0, count: size)
    }

    deinit {
        addresses.deallocate()
        counts.deallocate()
    }

    public func communicator(rank: Int) -> InProcessCommunicator {
        precondition((0..<size).contains(rank), "rank \(rank) is not in a world of \(size)")
        return InProcessCommunicator(world: self, rank: rank)
    }

    /// Runs `body` on `size` threads, one per rank, and waits for all of them. When a rank throws, the
    /// others' collectives fail too; the error of the rank that failed first is rethrown.
    public func run(_ body: @escaping @Sendable (InProcessCommunicator) throws -> Void) throws {
        let group = DispatchGroup()
        let errors = ErrorList()
        for rank in 0..<size {
            group.enter()
            let thread = Thread { [self] in
                defer { group.leave() }
                do {
                    try body(communicator(rank: rank))
                } catch {
                    fail(CommunicatorError(rank: rank, operation: "rank", message: "\(error)"))
                    errors.append(rank: rank, error: error)
                }
            }
            thread.stackSize = 16 << 20
            thread.name = "rank \(rank)"
            thread.start()
        }
        group.wait()
        let failures = errors.sorted
        let original = failures.first { !($0.error is PeerFailure) } ?? failures.first
        if let original { throw original.error }
    }

    private final class ErrorList: @unchecked Sendable {
        private let lock = NSLock()
        private var errors: [(rank: Int, error: Error)] = []

        func append(rank: Int, error: Error) {
            lock.lock()
            errors.append((rank, error))
            lock.unlock()
        }

        var sorted: [(rank: Int, error: Error)] {
            lock.lock()
            defer { lock.unlock() }
            return errors.sorted { $0.rank < $1.rank }
        }
    }

    /// Marks the world failed and wakes every waiting rank.
    func fail(_ error: CommunicatorError) {
        condition.lock()
        if failure == nil { failure = error }
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until every rank has arrived at this meeting point of `operation`.
    fileprivate func meet(rank: Int, operation: String) throws {
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw PeerFailure(rank: rank, operation: operation, cause: failure) }
        let myGeneration = generation
        arrivedRanks.insert(rank)
        if arrivedRanks.count == size {
            arrivedRanks.removeAll()
            generation += 1
            condition.broadcast()
            return
        }
        let deadline = timeout.map { Date(timeIntervalSinceNow: $0) }
        while generation == myGeneration && failure == nil {
            if let deadline {
                if !condition.wait(until: deadline) && generation == myGeneration && failure == nil {
                    let missing = (0..<size).filter { !arrivedRanks.contains($0) }
                    let error = CommunicatorError(
                        rank: rank, operation: operation,
                        message: "ranks \(missing.map(String.init).joined(separator: ", ")) did not arrive "
                            + "within \(timeout!) s")
                    failure = error
                    condition.broadcast()
                    throw error
                }
            } else {
                condition.wait()
            }
        }
        if generation == myGeneration, let failure {
            throw PeerFailure(rank: rank, operation: operation, cause: failure)
        }
    }
}

/// The error a rank sees when another rank failed during a collective.
public struct PeerFailure: Error, CustomStringConvertible {
    public let rank: Int
    public let operation: String
    public let cause: CommunicatorError

    public var description: String { "rank \(rank): \(operation) abandoned because \(cause)" }
}

/// One rank of an `InProcessWorld`.
public final class InProcessCommunicator: Communicator, @unchecked Sendable {
    public let world: InProcessWorld
    public let rank: Int
    public var size: Int { world.size }
    /// Runs this rank's collectives in call order, so that started ones complete before later ones.
    private let queue: DispatchQueue

    fileprivate init(world: InProcessWorld, rank: Int) {
        self.world = world
        self.rank = rank
        queue = DispatchQueue(label: "swiftbert.inprocess.rank\(rank)")
    }

    public func barrier() throws {
        try queue.sync { try world.meet(rank: rank, operation: "barrier") }
    }

    public func broadcast<T: CollectiveElement>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws {
        guard (0..<size).contains(root) else {
            throw CommunicatorError(rank: rank, operation: "broadcast", message: "root \(root) is not a rank of \(size)")
        }
        try queue.sync {
            try collective("broadcast", buffer.baseAddress, buffer.count) { world in
                guard rank != root, buffer.count > 0 else { return }
                let source = world.addresses[root]!.assumingMemoryBound(to: T.self)
                buffer.baseAddress!.update(from: source, count: buffer.count)
            }
        }
    }

    public func allReduceSum<T: CollectiveElement>(_ buffer: UnsafeMutableBufferPointer<T>) throws {
        try queue.sync { try reduce(buffer) }
    }

    public func startAllReduceSum<T: CollectiveElement>(_ buffer: UnsafeMutableBufferPointer<T>) throws
        -> PendingCollective
    {
        let pending = Pending()
        nonisolated(unsafe) let buffer = buffer
        queue.async { [self] in
            do { try reduce(buffer) } catch { pending.error = error }
            pending.done.signal()
        }
        return pending
    }

    public func allGather<T: CollectiveElement>(
        _ send: UnsafeBufferPointer<T>, into receive: UnsafeMutableBufferPointer<T>
    ) throws {
        try checkBlockSizes(
            whole: receive.count, block: send.count, ranks: size, rank: rank, operation: "allGather", wholeName: "receive")
        try queue.sync {
            try collective("allGather", UnsafeMutableRawPointer(mutating: send.baseAddress), send.count) { world in
                let count = send.count
                guard count > 0 else { return }
                for source in 0..<size {
                    let from = world.addresses[source]!.assumingMemoryBound(to: T.self)
                    (receive.baseAddress! + source * count).update(from: from, count: count)
                }
            }
        }
    }

    public func abort(code: Int32) -> Never {
        world.fail(CommunicatorError(rank: rank, operation: "abort", message: "aborted with code \(code)"))
        exit(code)
    }

    // MARK: - Mechanics

    private final class Pending: PendingCollective, @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        var error: Error?
        private var waited = false

        func wait() throws {
            if !waited {
                done.wait()
                waited = true
            }
            if let error { throw error }
        }
    }

    /// Publishes this rank's buffer, meets, runs `work` (which may read every rank's buffer and write
    /// its own slice), and meets again so no buffer is released while another rank still reads it.
    private func collective(
        _ operation: String, _ address: UnsafeMutableRawPointer?, _ count: Int,
        _ work: (InProcessWorld) throws -> Void
    ) throws {
        world.addresses[rank] = address
        world.counts[rank] = count
        try world.meet(rank: rank, operation: operation)
        if let mismatch = (0..<size).first(where: { world.counts[$0] != world.counts[0] }) {
            // Every rank sees the same mismatch; all meet once more before failing together.
            try world.meet(rank: rank, operation: operation)
            throw CommunicatorError(
                rank: rank, operation: operation,
                message: "rank \(mismatch) passed \(world.counts[mismatch]) elements, rank 0 passed \(world.counts[0])")
        }
        try work(world)
        try world.meet(rank: rank, operation: operation)
    }

    /// In-place sum: rank r sums slice r over all ranks (in rank order) and writes it back to all.
    private func reduce<T: CollectiveElement>(_ buffer: UnsafeMutableBufferPointer<T>) throws {
        guard T.collectiveKind != .byte else {
            throw CommunicatorError(rank: rank, operation: "allReduce", message: "bytes cannot be summed")
        }
        try collective("allReduce", UnsafeMutableRawPointer(buffer.baseAddress), buffer.count) { world in
            let count = buffer.count
            let start = count * rank / size
            let end = count * (rank + 1) / size
            guard start < end else { return }
            let buffers = (0..<size).map { world.addresses[$0]!.assumingMemoryBound(to: T.self) }
            let first = buffers[0]
            // Accumulate into rank 0's buffer in rank order, then copy the sums to the others.
            for other in buffers.dropFirst() {
                for i in start..<end { first[i] += other[i] }
            }
            for other in buffers.dropFirst() {
                (other + start).update(from: first + start, count: end - start)
            }
        }
    }
}
