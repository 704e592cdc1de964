import Data
import Foundation
import Training
import Transformer

extension Predict {
    /// transformers' token-classification pipeline with aggregation_strategy "simple": each text
    /// tokenized with offsets (truncated to the sequence), a softmax per token, adjacent tokens of
    /// one entity type merged into groups, "O" left out; [{"entity_group", "score", "word", "start",
    /// "end"}] per input.
    func predictTokenClassification(
        _ model: BertForTokenClassification, tokenizer: BertTokenizer, inputs: [PredictInput], length: Int
    ) throws -> [JSONValue] {
        let vocabulary = tokenizer.vocabulary
        let texts = try inputs.map { input -> String in
            guard let text = input.fields["text"] else { throw InputError("\(input.origin): no \"text\" field") }
            return text
        }
        let tokenized = texts.map { text -> TokenizedText in
            var tokens = tokenizer.encodeWithOffsets(text)
            let kept = min(tokens.ids.count, length - 2)
            tokens.ids.removeSubrange(kept...)
            tokens.offsets.removeSubrange(kept...)
            tokens.words.removeSubrange(kept...)
            return tokens
        }
        let sequences = tokenized.map { tokens in
            let ids = [vocabulary.classifierID] + tokens.ids + [vocabulary.separatorID]
            return EncodedSequence(inputIDs: ids, tokenTypeIDs: [Int32](repeating: 0, count: ids.count))
        }
        let logits = runBatches(sequences, padID: vocabulary.padID) { model.step($0, labels: nil, options: .inference).logits }
        let K = model.config.headOutputCount
        let names = model.config.labels.count == K ? model.config.labels : (0..<K).map { "LABEL_\($0)" }
        return try zip(texts, zip(tokenized, logits)).map { text, item -> JSONValue in
            let (tokens, row) = item
            // Row position 0 is [CLS]: the text's token i is position i + 1.
            let scored = tokens.ids.indices.map { i in
                ScoredToken(
                    index: i + 1, token: vocabulary.tokens[Int(tokens.ids[i])], isUnknown: tokens.ids[i] == vocabulary.unknownID,
                    start: tokens.offsets[i].lowerBound, end: tokens.offsets[i].upperBound,
                    scores: TokenEntityGrouping.softmax(Array(row[((i + 1) * K)..<((i + 2) * K)])))
            }
            let groups = try TokenEntityGrouping.entityGroups(scored, text: text, labelNames: names)
            return .array(groups.map { group -> JSONValue in
                .object([("entity_group", .string(group.entityGroup)), ("score", .double(Double(group.score))),
                         ("word", .string(group.word)), ("start", .integer(group.start)), ("end", .integer(group.end))])
            })
        }
    }
}
