import Foundation
import Kernels
import Transformer
import XCTest

/// The fine-tuning heads against Hugging Face transformers on CPU: weights, inputs, logits, losses and
/// the gradient of every parameter, written by scripts/make_head_fixtures.py (see its docstring) with
/// every dropout probability 0.
final class HeadParityTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/heads")

    /// As in ParityTests: max |ours - reference| <= 1e-5 max |reference| over a whole tensor. A tensor
    /// whose exact gradient is 0 (see `zeroGradientSibling`) holds rounding noise on both sides: both
    /// its reference and ours must be below 1e-5 max |reference| of a sibling tensor instead.
    let tolerance: Float = 1e-5

    func testSequenceClassificationSingleLabel() throws { try checkParity("seqcls_single") }
    func testSequenceClassificationMultiLabel() throws { try checkParity("seqcls_multi") }
    func testSequenceClassificationRegression() throws { try checkParity("seqcls_regr") }
    func testTokenClassification() throws { try checkParity("tokcls") }
    func testQuestionAnswering() throws { try checkParity("qa") }
    func testMultipleChoice() throws { try checkParity("mc") }

    static let cases = ["seqcls_single", "seqcls_multi", "seqcls_regr", "tokcls", "qa", "mc"]

    /// With dropout on (0.1 everywhere, the classifier's included), two micro-batches with the global
    /// normalizer give the whole batch's loss, logits and gradients: masks follow the sample, not its
    /// place in a micro-batch.
    func testMicroBatchesAddUpWithDropout() throws {
        for name in Self.cases {
            var c = try loadCase(name)
            c.config.hiddenDropoutProbability = 0.1
            c.config.attentionDropoutProbability = 0.1
            c.config.classifierDropout = 0.1
            let model = try loadModel(c)
            let half = c.units / 2
            var runs: [(lossSum: Double, logits: [Float], gradients: [Float])] = []
            for parts in [[0..<c.units], [0..<half, half..<c.units]] {
                model.zeroGradients()
                var lossSum = 0.0
                var logits: [Float] = []
                for units in parts {
                    let options = PassOptions(training: true, computeGradients: true, dropoutSeed: 5, dropoutStep: 3)
                    let output = try step(model, c, units: units, options: options)
                    lossSum += output.lossSum
                    logits += output.logits
                }
                runs.append((lossSum, logits, Array(model.gradients)))
            }
            let (whole, halves) = (runs[0], runs[1])
            let reference = Double(try c.file.floats("expect.loss_sum")[0])
            XCTAssertGreaterThan(abs(whole.lossSum - reference), 1e-3 * abs(reference), "\(name): dropout changed nothing")
            XCTAssertEqual(halves.lossSum, whole.lossSum, accuracy: Double(tolerance) * abs(whole.lossSum), name)
            check(halves.logits, against: whole.logits, "\(name) logits with dropout, two micro-batches")
            for entry in model.table.entries where zeroGradientSibling(entry.name, config: c.config) == nil {
                check(
                    Array(halves.gradients[entry.range]), against: Array(whole.gradients[entry.range]),
                    "\(name) \(entry.name) with dropout, two micro-batches")
            }
        }
    }

    // MARK: - Cases

    /// The targets of one head, with what a "unit" of the batch is: a sequence, or an example of
    /// `choices` sequences for multiple choice.
    enum Targets {
        case sequences(SequenceTargets)
        case tokens([Int32])
        case spans(start: [Int32], end: [Int32])
        case choices(Int, labels: [Int32])

        var sequencesPerUnit: Int {
            if case let .choices(count, _) = self { return count }
            return 1
        }

        /// The targets of units `units` (`perUnit` sequences each, `length` tokens each).
        func slice(_ units: Range<Int>, outputs K: Int, length T: Int) -> Targets {
            func rows<E>(_ values: [E], _ width: Int) -> [E] {
                Array(values[(units.lowerBound * width)..<(units.upperBound * width)])
            }
            switch self {
            case let .sequences(.classes(labels)): return .sequences(.classes(rows(labels, 1)))
            case let .sequences(.multiHot(targets)): return .sequences(.multiHot(rows(targets, K)))
            case let .sequences(.values(values)): return .sequences(.values(rows(values, 1)))
            case let .tokens(labels): return .tokens(rows(labels, T))
            case let .spans(start, end): return .spans(start: rows(start, 1), end: rows(end, 1))
            case let .choices(count, labels): return .choices(count, labels: rows(labels, 1))
            }
        }
    }

    struct FixtureError: Error { let message: String }

    struct Case {
        let name: String
        let file: SafetensorsFile
        var config: BertConfig
        let inputs: EncoderInputs
        let targets: Targets
        let normalizer: Float
        /// Examples for multiple choice, else sequences.
        var units: Int { inputs.sequenceCount / targets.sequencesPerUnit }
    }

    func loadCase(_ name: String) throws -> Case {
        let file = try SafetensorsFile(contentsOfFile: Self.fixtures.appendingPathComponent(name + ".safetensors").path)
        let configJSON = try XCTUnwrap(file.metadata["config"], "\(name) has no config metadata")
        let config = try JSONDecoder().decode(BertConfig.self, from: Data(configJSON.utf8))
        let shape = try XCTUnwrap(file.info("input.input_ids")?.shape)
        let T = shape.last!, sequences = shape.dropLast().reduce(1, *)
        func ints(_ key: String) throws -> [Int32] { try file.int64s(key).map { Int32($0) } }
        let targets: Targets
        switch config.head {
        case .sequenceClassification:
            switch config.resolvedProblemType {
            case .singleLabel: targets = .sequences(.classes(try ints("input.labels")))
            case .multiLabel: targets = .sequences(.multiHot(try file.floats("input.labels")))
            case .regression: targets = .sequences(.values(try file.floats("input.labels")))
            }
        case .tokenClassification: targets = .tokens(try ints("input.labels"))
        case .questionAnswering: targets = .spans(start: try ints("input.start_positions"), end: try ints("input.end_positions"))
        case .multipleChoice: targets = .choices(shape[1], labels: try ints("input.labels"))
        case .preTraining: throw FixtureError(message: "\(name): the config's architectures name no fine-tuning head")
        }
        let inputs = EncoderInputs(
            inputIDs: try ints("input.input_ids"), tokenTypeIDs: try ints("input.token_type_ids"),
            attentionMask: try ints("input.attention_mask"), sequenceCount: sequences, sequenceLength: T,
            sampleIndices: Array(0..<sequences))
        let normalizer = try XCTUnwrap(file.metadata["normalizer"], "\(name) has no normalizer metadata")
        let count = try XCTUnwrap(normalizer.split(separator: "=").last.flatMap { Int($0) }, "\(name): normalizer \(normalizer)")
        return Case(name: name, file: file, config: config, inputs: inputs, targets: targets, normalizer: Float(count))
    }

    /// What each loss divides by, counted from the inputs as the trainer counts it.
    func itemCount(_ c: Case) -> Int {
        switch c.targets {
        case let .sequences(.classes(labels)): return labels.count
        case let .sequences(.multiHot(targets)): return targets.count
        case let .sequences(.values(values)): return values.count
        case let .tokens(labels): return labels.filter { $0 != -100 }.count
        case let .spans(start, end): return start.count + end.count
        case let .choices(_, labels): return labels.count
        }
    }

    static func makeModel(_ config: BertConfig, sequences B: Int, length T: Int) -> BertModel {
        switch config.head {
        case .sequenceClassification: return BertForSequenceClassification(config: config, maxSequenceCount: B, sequenceLength: T)
        case .tokenClassification: return BertForTokenClassification(config: config, maxSequenceCount: B, sequenceLength: T)
        case .questionAnswering: return BertForQuestionAnswering(config: config, maxSequenceCount: B, sequenceLength: T)
        case .multipleChoice: return BertForMultipleChoice(config: config, maxSequenceCount: B, sequenceLength: T)
        case .preTraining: return BertForPreTraining(config: config, maxSequenceCount: B, sequenceLength: T)
        }
    }

    /// The case's model with the fixture's parameters; the table must be exactly the file's param.* tensors.
    func loadModel(_ c: Case) throws -> BertModel {
        let model = Self.makeModel(c.config, sequences: c.inputs.sequenceCount, length: c.inputs.sequenceLength)
        let fileParameters = Set(c.file.tensorNames.filter { $0.hasPrefix("param.") }.map { String($0.dropFirst(6)) })
        XCTAssertEqual(Set(model.table.entries.map(\.name)), fileParameters, "\(c.name): parameter names differ from HF's")
        for entry in model.table.entries {
            XCTAssertEqual(c.file.info("param." + entry.name)?.shape, entry.shape, "\(c.name) \(entry.name)")
            let destination = UnsafeMutableBufferPointer(rebasing: model.parameters[entry.range])
            try c.file.copyFloats("param." + entry.name, into: destination)
        }
        return model
    }

    /// Runs the head's `step` on units `units` of the case.
    func step(_ model: BertModel, _ c: Case, units: Range<Int>, options: PassOptions) throws -> HeadOutput {
        let perUnit = c.targets.sequencesPerUnit, T = c.inputs.sequenceLength
        let rows = (units.lowerBound * perUnit)..<(units.upperBound * perUnit)
        func tokens(_ values: [Int32]) -> [Int32] { Array(values[(rows.lowerBound * T)..<(rows.upperBound * T)]) }
        let inputs = EncoderInputs(
            inputIDs: tokens(c.inputs.inputIDs), tokenTypeIDs: tokens(c.inputs.tokenTypeIDs),
            attentionMask: tokens(c.inputs.attentionMask), sequenceCount: rows.count, sequenceLength: T,
            sampleIndices: Array(c.inputs.sampleIndices[rows]))
        let targets = c.targets.slice(units, outputs: c.config.headOutputCount, length: T)
        switch targets {
        case let .sequences(targets):
            return try XCTUnwrap(model as? BertForSequenceClassification)
                .step(inputs, targets: targets, normalizer: c.normalizer, options: options)
        case let .tokens(labels):
            return try XCTUnwrap(model as? BertForTokenClassification)
                .step(inputs, labels: labels, normalizer: c.normalizer, options: options)
        case let .spans(start, end):
            return try XCTUnwrap(model as? BertForQuestionAnswering)
                .step(inputs, startPositions: start, endPositions: end, normalizer: c.normalizer, options: options)
        case let .choices(count, labels):
            return try XCTUnwrap(model as? BertForMultipleChoice)
                .step(inputs, choices: count, labels: labels, normalizer: c.normalizer, options: options)
        }
    }

    // MARK: - Checks

    /// Against the reference: one micro-batch and two halves with the global normalizer (gradients
    /// and loss sums add up); single-threaded and on two workers; the last layer at the [CLS] rows
    /// only (pooled heads) and at every row; dropout off and dropout "on" at probability 0.
    func checkParity(_ name: String) throws {
        let c = try loadCase(name)
        XCTAssertEqual(Float(itemCount(c)), c.normalizer, "\(name): the fixture's normalizer is not the trainer's count")
        let model = try loadModel(c)
        let saved = Parallel.workerCount
        defer { Parallel.workerCount = saved }
        let half = c.units / 2
        XCTAssertGreaterThan(half, 0)
        for workers in [1, 2] {
            Parallel.workerCount = workers
            for lossRowsOnly in [true, false] {
                model.computesLastLayerAtLossRowsOnly = lossRowsOnly
                for training in [false, true] {
                    for parts in [[0..<c.units], [0..<half, half..<c.units]] {
                        let label = "\(name) (\(workers) worker(s), last layer at \(lossRowsOnly ? "loss rows" : "every row"), "
                            + "training \(training), \(parts.count) micro-batch(es))"
                        model.zeroGradients()
                        var ready: [Range<Int>] = []
                        var lossSum = 0.0
                        var logits: [Float] = []
                        for units in parts {
                            let options = PassOptions(
                                training: training, computeGradients: true, onGradientsReady: { ready.append($0) })
                            let output = try step(model, c, units: units, options: options)
                            lossSum += output.lossSum
                            logits += output.logits
                        }
                        try checkOutputs(c, model: model, lossSum: lossSum, logits: logits, label)
                        let table = model.table
                        let order = [table.headRange] + table.layerRanges.reversed() + [table.embeddingRange]
                        let expected = Array(Array(repeating: order, count: parts.count).joined())
                        XCTAssertEqual(ready, expected, "\(label) ready ranges")
                        XCTAssertEqual(order.map(\.count).reduce(0, +), table.totalCount, label)
                    }
                }
            }
        }
    }

    func checkOutputs(_ c: Case, model: BertModel, lossSum: Double, logits: [Float], _ label: String) throws {
        let expectedSum = try c.file.floats("expect.loss_sum")[0]
        let expectedLoss = try c.file.floats("expect.loss")[0]
        XCTAssertEqual(Float(lossSum), expectedSum, accuracy: tolerance * abs(expectedSum), "\(label) loss sum")
        XCTAssertEqual(Float(lossSum) / c.normalizer, expectedLoss, accuracy: tolerance * abs(expectedLoss), "\(label) loss")
        if case .spans = c.targets {
            // (B, T, 2) interleaved start and end.
            let start = stride(from: 0, to: logits.count, by: 2).map { logits[$0] }
            let end = stride(from: 1, to: logits.count, by: 2).map { logits[$0] }
            try compare(start, c.file, "expect.start_logits", label)
            try compare(end, c.file, "expect.end_logits", label)
        } else {
            try compare(logits, c.file, "expect.logits", label)
        }
        for entry in model.table.entries {
            let ours = Array(model.gradients[entry.range])
            guard let sibling = zeroGradientSibling(entry.name, config: c.config) else {
                try compare(ours, c.file, "grad." + entry.name, label)
                continue
            }
            let scale = try c.file.floats("grad." + sibling).map { abs($0) }.max() ?? 0
            let reference = try c.file.floats("grad." + entry.name).map { abs($0) }.max() ?? 0
            XCTAssertGreaterThan(scale, 0, "\(label) grad.\(sibling)")
            XCTAssertLessThanOrEqual(reference, tolerance * scale, "\(label) grad.\(entry.name) is not ~0 in the reference")
            XCTAssertLessThanOrEqual(ours.map { abs($0) }.max() ?? 0, tolerance * scale, "\(label) \(entry.name)")
        }
    }

    /// Tensors whose exact gradient is 0, with the tensor whose gradient scale bounds their noise.
    /// Each shifts every logit of a softmax alike, which the softmax ignores: a key bias the scores of
    /// an attention row (value bias); multiple choice's classifier bias every choice (classifier
    /// weight); question answering's bias every position's start (end) logit, and so does the last
    /// LayerNorm's bias, through the same qa_outputs row for every position (LayerNorm weight).
    func zeroGradientSibling(_ name: String, config: BertConfig) -> String? {
        if name.hasSuffix("attention.self.key.bias") { return name.replacingOccurrences(of: "key.bias", with: "value.bias") }
        switch (config.head, name) {
        case (.multipleChoice, "classifier.bias"): return "classifier.weight"
        case (.questionAnswering, "qa_outputs.bias"): return "qa_outputs.weight"
        case (.questionAnswering, "bert.encoder.layer.\(config.hiddenLayerCount - 1).output.LayerNorm.bias"):
            return "bert.encoder.layer.\(config.hiddenLayerCount - 1).output.LayerNorm.weight"
        default: return nil
        }
    }

    func compare(_ actual: [Float], _ file: SafetensorsFile, _ key: String, _ label: String) throws {
        check(actual, against: try file.floats(key), "\(label) \(key)")
    }

    func check(_ actual: [Float], against expected: [Float], _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        assertParity(actual, against: expected, tolerance: tolerance, label, file: file, line: line)
    }
}
