import Distributed
import Foundation
import XCTest

/// `collectively`: a failure on any rank becomes the same error on every rank, which names the
/// ranks that failed unless all failed alike.
final class CollectiveErrorTests: XCTestCase {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    final class Outcomes: @unchecked Sendable {
        let lock = NSLock()
        var thrown: [String?]
        var returned: [Int?]
        init(ranks: Int) {
            thrown = Array(repeating: nil, count: ranks)
            returned = Array(repeating: nil, count: ranks)
        }
        func record(rank: Int, thrown message: String? = nil, returned value: Int? = nil) {
            lock.lock()
            defer { lock.unlock() }
            if let message { thrown[rank] = message }
            if let value { returned[rank] = value }
        }
    }

    /// What each rank's `collectively` call threw (nil when it returned), for a body that fails on
    /// rank r with `failures[r]` when that is not nil.
    func outcomes(_ failures: [String?]) throws -> [String?] {
        let world = InProcessWorld(size: failures.count, timeout: 60)
        let outcomes = Outcomes(ranks: failures.count)
        try world.run { comm in
            do {
                let value = try comm.collectively { () throws -> Int in
                    if let failure = failures[comm.rank] { throw Failure(description: failure) }
                    return comm.rank * 10
                }
                outcomes.record(rank: comm.rank, returned: value)
            } catch let error as CollectiveError {
                outcomes.record(rank: comm.rank, thrown: error.message)
            }
            // Every rank still makes the same collectives afterwards.
            try comm.barrier()
        }
        for rank in failures.indices where outcomes.thrown[rank] == nil {
            XCTAssertEqual(outcomes.returned[rank], rank * 10, "rank \(rank) neither threw nor returned its value")
        }
        return outcomes.thrown
    }

    func testNoFailureReturnsEveryRanksValue() throws {
        XCTAssertEqual(try outcomes([nil, nil, nil]), [nil, nil, nil])
    }

    func testOneRanksFailureReachesEveryRankWithItsRank() throws {
        let message = "rank 1: '/data/train-00003.shard': checksum mismatch"
        XCTAssertEqual(try outcomes([nil, "'/data/train-00003.shard': checksum mismatch", nil]), [message, message, message])
    }

    func testTheSameFailureOnEveryRankIsReportedOnce() throws {
        XCTAssertEqual(try outcomes(["bad", "bad"]), ["bad", "bad"])
        XCTAssertEqual(try outcomes(["bad"]), ["bad"])
    }

    func testDistinctFailuresAreListedByRank() throws {
        let message = "ranks 0, 2: first\nrank 3: second"
        XCTAssertEqual(try outcomes(["first", nil, "first", "second"]), Array(repeating: message, count: 4))
    }
}
