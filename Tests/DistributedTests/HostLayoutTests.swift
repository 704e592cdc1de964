import Distributed
import XCTest

final class HostLayoutTests: XCTestCase {
    func testLocalRanksAndThreadsFollowTheHostsAndBinding() {
        let layout = HostLayout(hostOfRank: ["a", "b", "a", "b", "b"], rank: 3)
        XCTAssertEqual(layout.hosts, ["a", "b"])
        XCTAssertEqual(layout.localSize, 3)
        XCTAssertEqual(layout.localRank, 1)
        XCTAssertEqual(layout.summary, "a: ranks 0,2; b: ranks 1,3-4")
        XCTAssertEqual(layout.threadsPerRank(cores: 12), 4)
        XCTAssertEqual(layout.threadsPerRank(cores: 12, allowedCores: 1), 1, "a rank bound to one core runs one thread")
        XCTAssertEqual(layout.threadsPerRank(cores: 2), 1, "oversubscribed ranks still run one thread")
    }
}
