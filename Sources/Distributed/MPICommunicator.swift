import CMPIShim

/// Ranks as processes started by `mpirun` (or one process alone: Open MPI's singleton mode).
///
/// MPI can be initialised once per process, so there is one instance, made by `initialize`. This is
/// the only Swift file that calls the shim; every return code becomes a `CommunicatorError` with
/// MPI's own message and this rank.
public final class MPICommunicator: Communicator {
    public enum ThreadLevel: Int, Sendable, CustomStringConvertible {
        case single = 0, funneled, serialized, multiple

        public var description: String {
            switch self {
            case .single: return "MPI_THREAD_SINGLE"
            case .funneled: return "MPI_THREAD_FUNNELED"
            case .serialized: return "MPI_THREAD_SERIALIZED"
            case .multiple: return "MPI_THREAD_MULTIPLE"
            }
        }
    }

    public let rank: Int
    public let size: Int
    /// The thread level MPI granted, which may be lower than the one requested.
    public let threadLevel: ThreadLevel

    nonisolated(unsafe) private static var shared: MPICommunicator?

    /// Initialises MPI (once per process) and returns the world communicator.
    public static func initialize(threadLevel requested: ThreadLevel = .multiple) throws -> MPICommunicator {
        if let shared { return shared }
        var provided: Int32 = 0
        try check(CMPIShim_init(Int32(requested.rawValue), &provided), "MPI_Init_thread", rank: -1)
        var rank: Int32 = 0
        var size: Int32 = 0
        try check(CMPIShim_rank(&rank), "MPI_Comm_rank", rank: -1)
        try check(CMPIShim_size(&size), "MPI_Comm_size", rank: Int(rank))
        let communicator = MPICommunicator(
            rank: Int(rank), size: Int(size), threadLevel: ThreadLevel(rawValue: Int(provided)) ?? .single)
        shared = communicator
        return communicator
    }

    private init(rank: Int, size: Int, threadLevel: ThreadLevel) {
        self.rank = rank
        self.size = size
        self.threadLevel = threadLevel
    }

    /// Ends MPI for this process; call once, after the last collective.
    public func finalize() throws {
        var finalized: Int32 = 0
        try check(CMPIShim_finalized(&finalized), "MPI_Finalized")
        if finalized == 0 { try check(CMPIShim_finalize(), "MPI_Finalize") }
    }

    /// The host this rank runs on, as MPI names it.
    public func processorName() throws -> String {
        var buffer = [CChar](repeating: 0, count: Int(CMPIShim_max_processor_name()) + 1)
        try check(CMPIShim_processor_name(&buffer, Int32(buffer.count)), "MPI_Get_processor_name")
        return String(cString: buffer)
    }

    /// The MPI library's own version line (`Open MPI v4.1.4, ...`).
    public func libraryVersion() throws -> String {
        var buffer = [CChar](repeating: 0, count: 8192)
        try check(CMPIShim_library_version(&buffer, Int32(buffer.count)), "MPI_Get_library_version")
        return String(cString: buffer)
    }

    public func barrier() throws {
        try check(CMPIShim_barrier(), "MPI_Barrier")
    }

    /// A barrier that sleeps while it waits. MPI's own barrier polls at full speed, which takes the
    /// waiting ranks' cores (or the measuring rank's SMT sibling) away from a rank being timed.
    public func quietBarrier(pollInterval: Double = 0.0005) throws {
        var token: Int32 = 0
        var request: OpaquePointer?
        try withUnsafeMutablePointer(to: &token) { pointer in
            try check(CMPIShim_iallreduce_sum(pointer, 0, CMPIShim_int64, &request), "MPI_Iallreduce")
            var done: Int32 = 0
            while true {
                try check(CMPIShim_test(request, &done), "MPI_Testall")
                if done != 0 { return }
                usleep(UInt32(pollInterval * 1e6))
            }
        }
    }

    public func broadcast<T: CollectiveElement>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws {
        try checkRoot(root)
        try check(
            CMPIShim_broadcast(buffer.baseAddress, Int64(buffer.count), T.shimType, Int32(root)),
            "MPI_Bcast")
    }

    public func allReduceSum<T: CollectiveElement>(_ buffer: UnsafeMutableBufferPointer<T>) throws {
        try checkSummable(T.self)
        try check(CMPIShim_allreduce_sum(buffer.baseAddress, Int64(buffer.count), T.shimType), "MPI_Allreduce")
    }

    public func startAllReduceSum<T: CollectiveElement>(_ buffer: UnsafeMutableBufferPointer<T>) throws
        -> PendingCollective
    {
        try checkSummable(T.self)
        var request: OpaquePointer?
        try check(
            CMPIShim_iallreduce_sum(buffer.baseAddress, Int64(buffer.count), T.shimType, &request),
            "MPI_Iallreduce")
        return Request(request: request!, communicator: self)
    }

    public func allGather<T: CollectiveElement>(
        _ send: UnsafeBufferPointer<T>, into receive: UnsafeMutableBufferPointer<T>
    ) throws {
        try checkBlockSizes(
            whole: receive.count, block: send.count, ranks: size, rank: rank, operation: "MPI_Allgather", wholeName: "receive")
        try check(
            CMPIShim_allgather(send.baseAddress, receive.baseAddress, Int64(send.count), T.shimType),
            "MPI_Allgather")
    }

    public func abort(code: Int32) -> Never {
        _ = CMPIShim_abort(code)
        exit(code)
    }

    // MARK: - Error handling

    private final class Request: PendingCollective {
        private var request: OpaquePointer?
        private let communicator: MPICommunicator

        init(request: OpaquePointer, communicator: MPICommunicator) {
            self.request = request
            self.communicator = communicator
        }

        func wait() throws {
            guard let pending = request else { return }
            request = nil
            try communicator.check(CMPIShim_wait(pending), "MPI_Waitall")
        }

        deinit {
            if let request { _ = CMPIShim_wait(request) }
        }
    }

    private func check(_ code: Int32, _ operation: String) throws {
        try Self.check(code, operation, rank: rank)
    }

    private static func check(_ code: Int32, _ operation: String, rank: Int) throws {
        guard code != 0 else { return }
        var buffer = [CChar](repeating: 0, count: 512)
        CMPIShim_error_string(code, &buffer, Int32(buffer.count))
        throw CommunicatorError(rank: rank, operation: operation, message: String(cString: buffer))
    }

    private func checkRoot(_ root: Int) throws {
        guard (0..<size).contains(root) else {
            throw CommunicatorError(rank: rank, operation: "MPI_Bcast", message: "root \(root) is not a rank of \(size)")
        }
    }

    private func checkSummable<T: CollectiveElement>(_: T.Type) throws {
        guard T.collectiveKind != .byte else {
            throw CommunicatorError(rank: rank, operation: "sum", message: "bytes cannot be summed")
        }
    }
}

extension CollectiveElement {
    fileprivate static var shimType: CMPIShim_datatype {
        switch collectiveKind {
        case .float: return CMPIShim_float
        case .double: return CMPIShim_double
        case .int64: return CMPIShim_int64
        case .byte: return CMPIShim_byte
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
