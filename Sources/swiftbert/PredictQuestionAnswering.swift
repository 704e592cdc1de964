import ArgumentParser
import Data
import Foundation
import Transformer

/// The question-answering pipeline's settings of `predict`.
struct QuestionAnsweringOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Question answering: context tokens shared by consecutive windows of a long context (default: min(window / 2, 128); the window is --max-length, default min(384, max_position_embeddings)).", valueName: "n"))
    var docStride: Int?

    @Option(help: ArgumentHelp("Question answering: the longest answer, in tokens.", valueName: "n"))
    var maxAnswerLength = 15

    @Flag(help: "Question answering: the answer may be \"\" (no answer), as the pipeline's handle_impossible_answer.")
    var handleImpossibleAnswer = false

    func validate() throws {
        if let docStride, docStride < 1 { throw ValidationError("--doc-stride must be at least 1, got \(docStride)") }
        if maxAnswerLength < 1 { throw ValidationError("--max-answer-length must be at least 1, got \(maxAnswerLength)") }
    }
}

extension Predict {
    /// transformers' question-answering pipeline: each {"question", "context"} split into windows,
    /// decoded over them by `SquadPipelineDecoder`; one {"score", "start", "end", "answer"} per input,
    /// a list of --top-k of them when --top-k is above 1.
    func predictQuestionAnswering(
        _ model: BertForQuestionAnswering, tokenizer: BertTokenizer, inputs: [PredictInput], length: Int
    ) throws -> [JSONValue] {
        guard topK >= 1 else { throw InputError("--top-k must be at least 1 for question answering, got \(topK)") }
        let options = questionAnswering
        // The pipeline's defaults: max_seq_len min(model_max_length, 384), doc_stride min(max_seq_len / 2, 128).
        let window = min(maxLength ?? 384, length)
        let builder = SquadFeatureBuilder(
            tokenizer: tokenizer, maxLength: window, docStride: options.docStride ?? min(window / 2, 128))
        var windows: [[SquadFeature]] = []
        var examples: [SquadExample] = []
        for input in inputs {
            var fields: [String] = []
            for name in ["question", "context"] {
                guard let value = input.fields[name] else {
                    throw InputError("\(input.origin): no \"\(name)\" field; question answering takes JSON lines "
                                     + "{\"question\": ..., \"context\": ...} (--format jsonl)")
                }
                fields.append(value)
            }
            let example = SquadExample(id: input.origin, question: fields[0], context: fields[1], answers: [])
            var features: [SquadFeature] = []
            do {
                try builder.appendFeatures(
                    of: example, index: examples.count, context: tokenizer.encodeWithOffsets(example.context), to: &features)
            } catch let error as SquadError {
                throw InputError("\(input.origin): \(error.message)")
            }
            examples.append(example)
            windows.append(features)
        }
        let sequences = windows.flatMap { $0.map { EncodedSequence(inputIDs: $0.inputIDs, tokenTypeIDs: $0.tokenTypeIDs) } }
        var logits = ArraySlice(runBatches(sequences, padID: tokenizer.vocabulary.padID) {
            model.step($0, startPositions: nil, endPositions: nil, options: .inference).logits
        })
        let decoder = SquadPipelineDecoder(
            topK: topK, maxAnswerLength: options.maxAnswerLength, handlesImpossibleAnswer: options.handleImpossibleAnswer)
        return zip(examples, windows).map { example, features -> JSONValue in
            // Rows are (T, 2) over the batch's padded length; the decoder takes each window's own tokens.
            let rows = logits.prefix(features.count)
            logits = logits.dropFirst(features.count)
            let starts = zip(rows, features).map { row, feature in (0..<feature.inputIDs.count).map { row[2 * $0] } }
            let ends = zip(rows, features).map { row, feature in (0..<feature.inputIDs.count).map { row[2 * $0 + 1] } }
            let answers = decoder.answers(example: example, features: features, startLogits: starts, endLogits: ends)
                .map { answer -> JSONValue in
                    .object([("score", .double(answer.score)), ("start", .integer(answer.start)),
                             ("end", .integer(answer.end)), ("answer", .string(answer.answer))])
                }
            return topK == 1 && answers.count == 1 ? answers[0] : .array(answers)
        }
    }
}
