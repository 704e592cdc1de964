import Data
import Kernels
import XCTest

final class MaskingTests: XCTestCase {
    let cls: UInt32 = 2, sep: UInt32 = 3, maskID: Int32 = 4
    let vocabularySize = 1000

    /// `[CLS] A [SEP] B [SEP]` with random ids >= 5 (not specials); `continuationShare` of the
    /// tokens after the first of each segment get the continuation bit.
    func makeSequence(aLength: Int, bLength: Int, continuationShare: Double = 0, rng: inout TestRandom) -> [UInt32] {
        func segment(_ count: Int) -> [UInt32] {
            (0..<count).map { i in
                let id = UInt32.random(in: 5..<UInt32(vocabularySize), using: &rng)
                let continues = i > 0 && Double.random(in: 0..<1, using: &rng) < continuationShare
                return continues ? id | ShardFormat.continuationBit : id
            }
        }
        return [cls] + segment(aLength) + [sep] + segment(bLength) + [sep]
    }

    func mask(_ tokens: [UInt32], aLength: Int, masker: Masker, seed: UInt64, epoch: Int, sample: Int)
        -> (ids: [Int32], positions: [Int32], labels: [Int32], counts: MaskingCounts) {
        var ids = [Int32](repeating: -1, count: tokens.count)
        var positions: [Int32] = [], labels: [Int32] = []
        var scratch = Masker.Scratch()
        let counts = tokens.withUnsafeBufferPointer { t in
            ids.withUnsafeMutableBufferPointer { out in
                masker.mask(inputIDs: out.baseAddress!, positions: &positions, labels: &labels, tokens: t,
                            segmentALength: aLength,
                            random: PretrainingDataset.maskingGenerator(seed: seed, epoch: epoch, sampleIndex: sample),
                            scratch: &scratch)
            }
        }
        return (ids, positions, labels, counts)
    }

    func testMaskStatisticsFollowGoogle() {
        let settings = MaskingSettings(maskedLMProbability: 0.15, maxPredictionsPerSequence: 20)
        let masker = Masker(settings: settings, maskID: maskID, vocabularySize: vocabularySize)
        var rng = TestRandom(seed: 1)
        var total = MaskingCounts()
        var tokenCount = 0
        var replacedByMask = 0, replacedByOther = 0, unchanged = 0
        for sample in 0..<4000 {
            let aLength = Int.random(in: 1...60, using: &rng), bLength = Int.random(in: 1...60, using: &rng)
            let tokens = makeSequence(aLength: aLength, bLength: bLength, rng: &rng)
            let r = mask(tokens, aLength: aLength, masker: masker, seed: 9, epoch: 0, sample: sample)
            let n = tokens.count
            tokenCount += n
            // Google: num_to_predict = min(max_predictions, max(1, round(len * prob))), Python rounding.
            let expected = min(20, max(1, Int((Double(n) * 0.15).rounded(.toNearestOrEven))))
            XCTAssertEqual(r.positions.count, expected)
            XCTAssertEqual(r.positions, r.positions.sorted())
            XCTAssertEqual(Set(r.positions).count, r.positions.count)
            for (position, label) in zip(r.positions, r.labels) {
                let p = Int(position)
                XCTAssertNotEqual(p, 0, "[CLS] is never masked")
                XCTAssertNotEqual(p, aLength + 1, "the first [SEP] is never masked")
                XCTAssertNotEqual(p, n - 1, "the last [SEP] is never masked")
                XCTAssertEqual(label, Int32(bitPattern: tokens[p] & ShardFormat.tokenIDMask))
                if r.ids[p] == maskID { replacedByMask += 1 } else if r.ids[p] == label { unchanged += 1 } else { replacedByOther += 1 }
            }
            let maskedSet = Set(r.positions.map(Int.init))
            for t in 0..<n where !maskedSet.contains(t) {
                XCTAssertEqual(r.ids[t], Int32(bitPattern: tokens[t] & ShardFormat.tokenIDMask))
            }
            total += r.counts
        }
        XCTAssertEqual(total.predicted, replacedByMask + replacedByOther + unchanged)
        // 80 / 10 / 10; a random replacement equals the original with probability 1/V.
        assertShare(replacedByMask, of: total.predicted, near: 0.8, "[MASK]")
        assertShare(replacedByOther, of: total.predicted, near: 0.1, slack: 0.1 / Double(vocabularySize), "random")
        assertShare(unchanged, of: total.predicted, near: 0.1, slack: 0.1 / Double(vocabularySize), "kept")
        assertShare(total.replacedByMask, of: total.predicted, near: 0.8, "[MASK] decisions")
        // Mean length ~64: round(len * 0.15) tracks 15% closely (rounding error averages out).
        XCTAssertEqual(Double(total.predicted) / Double(tokenCount), 0.15, accuracy: 0.005)
    }

    func testMaskingDependsOnlyOnSeedEpochAndSample() {
        let masker = Masker(settings: MaskingSettings(), maskID: maskID, vocabularySize: vocabularySize)
        var rng = TestRandom(seed: 2)
        let tokens = makeSequence(aLength: 50, bLength: 70, rng: &rng)
        let first = mask(tokens, aLength: 50, masker: masker, seed: 5, epoch: 1, sample: 123)
        let again = mask(tokens, aLength: 50, masker: masker, seed: 5, epoch: 1, sample: 123)
        XCTAssertEqual(first.ids, again.ids)
        XCTAssertEqual(first.positions, again.positions)
        XCTAssertNotEqual(first.positions, mask(tokens, aLength: 50, masker: masker, seed: 5, epoch: 2, sample: 123).positions)
        XCTAssertNotEqual(first.positions, mask(tokens, aLength: 50, masker: masker, seed: 5, epoch: 1, sample: 124).positions)
    }

    func testMaxPredictionsCapsLongSequences() {
        let masker = Masker(settings: MaskingSettings(maskedLMProbability: 0.15, maxPredictionsPerSequence: 20),
                            maskID: maskID, vocabularySize: vocabularySize)
        var rng = TestRandom(seed: 3)
        let tokens = makeSequence(aLength: 250, bLength: 255, rng: &rng)
        XCTAssertEqual(mask(tokens, aLength: 250, masker: masker, seed: 1, epoch: 0, sample: 0).positions.count, 20)
        let short = makeSequence(aLength: 1, bLength: 1, rng: &rng)
        XCTAssertEqual(mask(short, aLength: 1, masker: masker, seed: 1, epoch: 0, sample: 0).positions.count, 1)
    }

    func testWholeWordMaskingNeverSplitsAWord() {
        let settings = MaskingSettings(maskedLMProbability: 0.15, maxPredictionsPerSequence: 20, wholeWordMasking: true)
        let masker = Masker(settings: settings, maskID: maskID, vocabularySize: vocabularySize)
        var rng = TestRandom(seed: 4)
        var multiPieceWordsMasked = 0
        for sample in 0..<2000 {
            let aLength = Int.random(in: 1...60, using: &rng), bLength = Int.random(in: 1...60, using: &rng)
            let tokens = makeSequence(aLength: aLength, bLength: bLength, continuationShare: 0.4, rng: &rng)
            let r = mask(tokens, aLength: aLength, masker: masker, seed: 8, epoch: 0, sample: sample)
            let masked = Set(r.positions.map(Int.init))
            XCTAssertLessThanOrEqual(masked.count, settings.predictionCount(sequenceLength: tokens.count))
            // Words: a start token and the continuation tokens right after it, within one segment.
            var t = 1
            while t < tokens.count - 1 {
                if t == aLength + 1 { t += 1; continue }
                var end = t + 1
                while end < tokens.count - 1 && end != aLength + 1 && tokens[end] & ShardFormat.continuationBit != 0 { end += 1 }
                let inWord = (t..<end).filter { masked.contains($0) }.count
                XCTAssertTrue(inWord == 0 || inWord == end - t, "word \(t)..<\(end) partly masked (sample \(sample))")
                if inWord > 1 { multiPieceWordsMasked += 1 }
                t = end
            }
        }
        XCTAssertGreaterThan(multiPieceWordsMasked, 100, "the test exercised multi-piece words")
    }

    func testPredictionCountUsesPythonRounding() {
        // round(0.5) == 0 and round(2.5) == 2 in Python 3.
        let settings = MaskingSettings(maskedLMProbability: 0.5, maxPredictionsPerSequence: 100)
        XCTAssertEqual(settings.predictionCount(sequenceLength: 5), 2)   // 2.5 -> 2
        XCTAssertEqual(settings.predictionCount(sequenceLength: 7), 4)   // 3.5 -> 4
        XCTAssertEqual(settings.predictionCount(sequenceLength: 1), 1)   // 0.5 -> 0 -> at least 1
    }
}
