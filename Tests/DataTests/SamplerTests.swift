import Data
import XCTest

final class SamplerTests: XCTestCase {
    func testEveryWorldSizeSeesEverySampleExactlyOncePerEpoch() {
        for (sampleCount, globalBatch) in [(1013, 64), (1024, 32), (10, 3), (7, 16)] {
            let sampler = Sampler(sampleCount: sampleCount, globalBatchSize: globalBatch, seed: 42)
            for worldSize in [1, 2, 3, 4, 8] {
                for epoch in 0..<2 {
                    var seen = [Int](repeating: 0, count: sampleCount)
                    for step in 0..<sampler.stepsPerEpoch {
                        let batch = sampler.globalBatch(epoch: epoch, step: step)
                        for rank in 0..<worldSize {
                            for index in sampler.share(of: batch, rank: rank, worldSize: worldSize) { seen[index] += 1 }
                        }
                    }
                    XCTAssertEqual(seen, [Int](repeating: 1, count: sampleCount),
                                   "N=\(sampleCount) G=\(globalBatch) W=\(worldSize) epoch \(epoch)")
                }
            }
        }
    }

    func testGlobalBatchIsTheSameListForEveryWorldSize() {
        let sampler = Sampler(sampleCount: 997, globalBatchSize: 48, seed: 7)
        for step in 0..<sampler.stepsPerEpoch {
            let batch = sampler.globalBatch(epoch: 3, step: step)
            for worldSize in [1, 2, 3, 4, 8] {
                // A sampler built independently (as on another rank or a resumed run) agrees.
                let other = Sampler(sampleCount: 997, globalBatchSize: 48, seed: 7)
                var concatenated: [Int] = []
                var sizes: [Int] = []
                for rank in 0..<worldSize {
                    let share = other.share(of: other.globalBatch(epoch: 3, step: step), rank: rank, worldSize: worldSize)
                    concatenated += share
                    sizes.append(share.count)
                }
                XCTAssertEqual(concatenated, batch, "step \(step), world size \(worldSize)")
                XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1, "shares are balanced")
            }
        }
    }

    func testLastBatchHoldsTheRemainderWithoutPadding() {
        let sampler = Sampler(sampleCount: 100, globalBatchSize: 32, seed: 1)
        XCTAssertEqual(sampler.stepsPerEpoch, 4)
        XCTAssertEqual((0..<4).map { sampler.globalBatch(epoch: 0, step: $0).count }, [32, 32, 32, 4])
        let last = sampler.globalBatch(epoch: 0, step: 3)
        XCTAssertEqual(Set(last).count, 4)
        XCTAssertEqual((0..<8).map { sampler.share(of: last, rank: $0, worldSize: 8).count }.reduce(0, +), 4)
    }

    func testOrderDependsOnSeedAndEpochOnly() {
        let a = Sampler(sampleCount: 5000, globalBatchSize: 5000, seed: 11)
        let b = Sampler(sampleCount: 5000, globalBatchSize: 5000, seed: 12)
        let epoch0 = a.globalBatch(epoch: 0, step: 0)
        XCTAssertEqual(epoch0, a.globalBatch(epoch: 0, step: 0))
        XCTAssertNotEqual(epoch0, a.globalBatch(epoch: 1, step: 0))
        XCTAssertNotEqual(epoch0, b.globalBatch(epoch: 0, step: 0))
        XCTAssertEqual(epoch0.sorted(), Array(0..<5000))
        XCTAssertEqual((0..<5000).map { a.sampleIndex(epoch: 0, position: $0) }, epoch0)
    }

    func testOrderLooksShuffled() {
        // A permutation that barely moves samples would train on corpus order. Fixed points of a
        // uniform permutation number about 1; positions within 10 of their sample about 21/N.
        let n = 10_000
        let order = Sampler(sampleCount: n, globalBatchSize: n, seed: 3).globalBatch(epoch: 0, step: 0)
        let fixed = order.enumerated().filter { $0.offset == $0.element }.count
        XCTAssertLessThan(fixed, 10)
        let near = order.enumerated().filter { abs($0.offset - $0.element) <= 10 }.count
        XCTAssertLessThan(near, 100)
        // Adjacent positions are not adjacent samples.
        let adjacent = zip(order, order.dropFirst()).filter { abs($0 - $1) == 1 }.count
        XCTAssertLessThan(adjacent, 20)
    }
}
