import Distributed
import XCTest

/// Collectives on the in-process communicator, checked against sums computed independently from the
/// closed form of each rank's input. Inputs are small integers, so every float sum is exact.
final class InProcessCommunicatorTests: XCTestCase {
    static let sizes = [0, 1, 7, 1_000_003, 16 << 20]
    static let rankCounts = [1, 2, 3, 4]

    /// Rank r's input at index i.
    static func input(rank: Int, index: Int) -> Float { Float((index &* 7 &+ rank &* 13) % 1000) - 250 }

    func testAllReduceSumsEveryRanksBuffer() throws {
        for ranks in Self.rankCounts {
            for count in Self.sizes {
                let world = InProcessWorld(size: ranks, timeout: 120)
                let results = ResultStore(ranks: ranks)
                try world.run { comm in
                    var buffer = (0..<count).map { Self.input(rank: comm.rank, index: $0) }
                    try comm.allReduceSum(&buffer)
                    results.set(comm.rank, buffer)
                }
                for rank in 0..<ranks {
                    let got = results.get(rank)
                    XCTAssertEqual(got.count, count)
                    let mismatch = (0..<count).first { i in
                        got[i] != Float((0..<ranks).reduce(0.0) { $0 + Double(Self.input(rank: $1, index: i)) })
                    }
                    XCTAssertNil(mismatch, "ranks \(ranks), count \(count): rank \(rank) wrong at \(mismatch ?? -1)")
                }
            }
        }
    }

    func testStartedAllReduceCompletesInCallOrder() throws {
        let world = InProcessWorld(size: 3, timeout: 60)
        let results = ResultStore(ranks: 3)
        try world.run { comm in
            var a = [Float](repeating: Float(comm.rank + 1), count: 1_000_003)
            var b = [Double](repeating: Double(comm.rank) * 10, count: 7)
            try a.withUnsafeMutableBufferPointer { a in
                try b.withUnsafeMutableBufferPointer { b in
                    let first = try comm.startAllReduceSum(a)
                    let second = try comm.startAllReduceSum(b)
                    try second.wait()
                    try first.wait()
                }
            }
            results.set(comm.rank, [a[0], a[1_000_002], Float(b[0]), Float(b[6])])
        }
        for rank in 0..<3 {
            XCTAssertEqual(results.get(rank), [6, 6, 30, 30])
        }
    }

    func testBroadcastCopiesRootBuffer() throws {
        for ranks in Self.rankCounts {
            for count in Self.sizes {
                let root = ranks - 1
                let world = InProcessWorld(size: ranks, timeout: 120)
                let results = ResultStore(ranks: ranks)
                try world.run { comm in
                    var buffer = (0..<count).map { Self.input(rank: comm.rank, index: $0) }
                    try comm.broadcast(&buffer, root: root)
                    results.set(comm.rank, buffer)
                }
                for rank in 0..<ranks {
                    let got = results.get(rank)
                    let mismatch = (0..<count).first { got[$0] != Self.input(rank: root, index: $0) }
                    XCTAssertNil(mismatch, "ranks \(ranks), count \(count): rank \(rank) wrong at \(mismatch ?? -1)")
                }
            }
        }
    }

    func testAllGatherPlacesEachRankInOrder() throws {
        for ranks in Self.rankCounts {
            for count in Self.sizes where count <= 1_000_003 {
                let world = InProcessWorld(size: ranks, timeout: 120)
                let results = ResultStore(ranks: ranks)
                try world.run { comm in
                    let send = (0..<count).map { Self.input(rank: comm.rank, index: $0) }
                    var receive = [Float](repeating: .nan, count: count * ranks)
                    try send.withUnsafeBufferPointer { send in
                        try receive.withUnsafeMutableBufferPointer { try comm.allGather(send, into: $0) }
                    }
                    results.set(comm.rank, receive)
                }
                for rank in 0..<ranks {
                    let got = results.get(rank)
                    let mismatch = (0..<(count * ranks)).first { got[$0] != Self.input(rank: $0 / max(count, 1), index: $0 % max(count, 1)) }
                    XCTAssertNil(mismatch, "ranks \(ranks), count \(count): rank \(rank) wrong at \(mismatch ?? -1)")
                }
            }
        }
    }

    func testInt64AndDoubleSums() throws {
        let world = InProcessWorld(size: 4, timeout: 60)
        let results = ResultStore(ranks: 4)
        try world.run { comm in
            let total = try comm.allReduceSum(Int64(1) << (40 + comm.rank))
            let half = try comm.allReduceSum(Double(comm.rank) + 0.5)
            results.set(comm.rank, [Float(total == (Int64(15) << 40) ? 1 : 0), Float(half)])
        }
        for rank in 0..<4 { XCTAssertEqual(results.get(rank), [1, 8]) }
    }

    func testStringsGatherAndBroadcast() throws {
        let world = InProcessWorld(size: 3, timeout: 60)
        let gathered = StringStore()
        try world.run { comm in
            let names = try comm.allGather(string: String(repeating: "h", count: comm.rank + 1) + "ö")
            let config = try comm.broadcast(string: comm.rank == 0 ? "{\"seed\": 1}" : "", root: 0)
            gathered.set(comm.rank, names + [config])
        }
        for rank in 0..<3 {
            XCTAssertEqual(gathered.get(rank), ["hö", "hhö", "hhhö", "{\"seed\": 1}"])
        }
    }

    func testFailingRankEndsOtherRanksCollectives() {
        let world = InProcessWorld(size: 3, timeout: 60)
        struct Boom: Error {}
        let started = Date()
        XCTAssertThrowsError(try world.run { comm in
            if comm.rank == 1 { throw Boom() }
            var buffer: [Float] = [1, 2, 3]
            try comm.allReduceSum(&buffer)
            try comm.barrier()
        }) { error in
            XCTAssertTrue(error is Boom, "the failing rank's own error is reported, got \(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 30, "peers must not wait for the timeout")
    }

    func testMissingRankIsNamedAfterTimeout() {
        let world = InProcessWorld(size: 3, timeout: 0.5)
        XCTAssertThrowsError(try world.run { comm in
            if comm.rank == 2 { Thread.sleep(forTimeInterval: 3); return }
            try comm.barrier()
        }) { error in
            XCTAssertTrue("\(error)".contains("ranks 2 did not arrive"), "\(error)")
        }
    }

    func testMismatchedLengthsAreAnErrorOnEveryRank() {
        let world = InProcessWorld(size: 2, timeout: 60)
        XCTAssertThrowsError(try world.run { comm in
            var buffer = [Float](repeating: 1, count: comm.rank == 0 ? 4 : 5)
            try comm.allReduceSum(&buffer)
        }) { error in
            XCTAssertTrue("\(error)".contains("rank 1 passed 5 elements, rank 0 passed 4"), "\(error)")
        }
    }
}

/// Per-rank results written from the rank threads.
final class ResultStore: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [[Float]]
    init(ranks: Int) { values = Array(repeating: [], count: ranks) }
    func set(_ rank: Int, _ value: [Float]) { lock.lock(); values[rank] = value; lock.unlock() }
    func get(_ rank: Int) -> [Float] { lock.lock(); defer { lock.unlock() }; return values[rank] }
}

final class StringStore: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int: [String]] = [:]
    func set(_ rank: Int, _ value: [String]) { lock.lock(); values[rank] = value; lock.unlock() }
    func get(_ rank: Int) -> [String] { lock.lock(); defer { lock.unlock() }; return values[rank] ?? [] }
}
