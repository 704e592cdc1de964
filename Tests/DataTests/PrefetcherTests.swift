import Data
import Foundation
import XCTest

final class PrefetcherTests: XCTestCase {
    func testItemsArriveInOrderAndProductionStaysBounded() throws {
        let lock = NSLock()
        var produced = 0
        let prefetcher = Prefetcher<Int>(count: 20, depth: 3) { i in
            lock.lock(); produced += 1; lock.unlock()
            return i * i
        }
        Thread.sleep(forTimeInterval: 0.1)
        lock.lock(); let ahead = produced; lock.unlock()
        XCTAssertLessThanOrEqual(ahead, 3, "no more than `depth` items ahead of the consumer")
        var items: [Int] = []
        while let item = try prefetcher.next() { items.append(item) }
        XCTAssertEqual(items, (0..<20).map { $0 * $0 })
    }

    func testErrorsReachTheConsumer() {
        struct Failure: Error {}
        let prefetcher = Prefetcher<Int>(count: 5, depth: 2) { i in
            if i == 2 { throw Failure() }
            return i
        }
        XCTAssertEqual(try prefetcher.next(), 0)
        XCTAssertEqual(try prefetcher.next(), 1)
        XCTAssertThrowsError(try prefetcher.next())
    }
}
