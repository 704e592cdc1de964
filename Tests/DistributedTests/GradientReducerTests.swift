import Distributed
import XCTest

final class GradientReducerTests: XCTestCase {
    func testBucketsCoverTheBufferFromTheEndWithoutSplittingTensors() {
        let world = InProcessWorld(size: 1)
        var gradients = [Float](repeating: 0, count: 100)
        gradients.withUnsafeMutableBufferPointer { buffer in
            let reducer = GradientReducer(
                communicator: world.communicator(rank: 0), gradients: buffer,
                boundaries: [0, 10, 30, 35, 60, 90, 100], bucketElements: 25)
            // Each bucket ends at a tensor boundary once it holds at least 25 elements; the rest forms the last.
            XCTAssertEqual(reducer.buckets, [60..<100, 35..<60, 10..<35, 0..<10])
        }
    }

    func testReducedBucketsEqualTheSumWhateverOrderBackwardReportsThem() throws {
        let ranks = 3
        let count = 10_007
        let boundaries = Array(stride(from: 0, through: count, by: 97)) + [count]
        let world = InProcessWorld(size: ranks, timeout: 60)
        let results = ResultStore(ranks: ranks)
        try world.run { comm in
            var gradients = (0..<count).map { Float(($0 * 31 + comm.rank * 7) % 101) }
            try gradients.withUnsafeMutableBufferPointer { buffer in
                let reducer = GradientReducer(
                    communicator: comm, gradients: buffer, boundaries: boundaries, bucketElements: 1000)
                reducer.beginStep()
                // Ranges reported from the end towards the start, some out of order, as backward does.
                var ranges: [Range<Int>] = []
                for upper in stride(from: count, to: 0, by: -500) { ranges.append(max(0, upper - 500)..<upper) }
                ranges.swapAt(1, 2)
                for range in ranges.dropLast(3) { reducer.markReady(range) }
                try reducer.finish()
            }
            results.set(comm.rank, gradients)
        }
        var expected = [Float](repeating: 0, count: count)
        for i in 0..<count {
            var sum = 0
            for rank in 0..<ranks { sum += (i * 31 + rank * 7) % 101 }
            expected[i] = Float(sum)
        }
        for rank in 0..<ranks { XCTAssertEqual(results.get(rank), expected, "rank \(rank)") }
    }
}
