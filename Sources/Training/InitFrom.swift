import Data
import Foundation
import Transformer

/// What `init_from` must agree with before its weights are used: the run's model and its data's
/// vocabulary. Loading checks only tensor shapes, which would accept a model of another activation,
/// LayerNorm epsilon or vocabulary of the same size and train it silently as something else.
public enum InitFromCheck {
    /// The config.json keys compared, with the run's and the directory's values. Every key that
    /// changes what the weights compute is here. Dropout probabilities and `initializer_range` are
    /// not: they are settings of the run (a fine-tune commonly changes dropout; the initialiser only
    /// touches tensors the directory lacks), not properties of the weights.
    static func differences(run: BertConfig, directory: BertConfig) -> [(key: String, run: String, directory: String)] {
        let keys: [(String, (BertConfig) -> String)] = [
            ("vocab_size", { "\($0.vocabSize)" }),
            ("hidden_size", { "\($0.hiddenSize)" }),
            ("num_hidden_layers", { "\($0.hiddenLayerCount)" }),
            ("num_attention_heads", { "\($0.attentionHeadCount)" }),
            ("intermediate_size", { "\($0.intermediateSize)" }),
            ("hidden_act", { "\"\($0.hiddenActivation.rawValue)\"" }),
            ("max_position_embeddings", { "\($0.maxPositionEmbeddings)" }),
            ("type_vocab_size", { "\($0.typeVocabSize)" }),
            ("layer_norm_eps", { "\($0.layerNormEpsilon)" }),
            ("pad_token_id", { "\($0.padTokenID)" }),
            ("num_nsp_labels", { "\($0.nspClassCount)" }),
        ]
        return keys.compactMap { key, value in
            value(run) == value(directory) ? nil : (key, value(run), value(directory))
        }
    }

    /// Fails with the first difference: a config key (both values), the tokenizer's casing, or the first
    /// token that differs (index, both tokens). `dataVocabulary` holds the tokens of the data's
    /// vocabulary file, nil when that file could not be read.
    public static func check(directory: String, model: BertConfig, dataVocabulary: [String]?, dataLowercase: Bool) throws {
        let configPath = (directory as NSString).appendingPathComponent(PretrainedDirectory.configFile)
        let own = try PretrainedDirectory.config(in: directory)
        if let difference = differences(run: model, directory: own).first {
            throw TrainingError(
                "init_from: \(configPath) has \(difference.key) \(difference.directory) but the run's model has "
                    + "\(difference.run) (model.\(difference.key)); set the run's model to the checkpoint's config, "
                    + "or start without init_from")
        }
        let tokenizer = try PretrainedTokenizer.load(directory: directory).tokenizer
        if tokenizer.lowercase != dataLowercase {
            throw TrainingError(
                "init_from: \(directory)'s tokenizer is \(tokenizer.lowercase ? "uncased" : "cased") but the data "
                    + "was prepared \(dataLowercase ? "uncased" : "cased"); prepare the data with the model's casing")
        }
        let theirs = tokenizer.vocabulary.tokens
        guard let ours = dataVocabulary else {
            throw TrainingError("init_from: the data's vocabulary file cannot be read, so \(directory)'s vocabulary "
                + "cannot be compared with it; restore the data directory's vocabulary file")
        }
        // Scalar by scalar, as the tokenizer compares tokens.
        let common = 0..<min(theirs.count, ours.count)
        if let index = common.first(where: { Array(theirs[$0].unicodeScalars) != Array(ours[$0].unicodeScalars) }) {
            throw TrainingError(
                "init_from: the vocabulary of \(directory) differs from the data's at id \(index): \"\(theirs[index])\" "
                    + "against \"\(ours[index])\"; prepare the data with the model's vocabulary")
        }
        if theirs.count != ours.count {
            throw TrainingError(
                "init_from: the vocabulary of \(directory) has \(theirs.count) tokens, the data's \(ours.count); "
                    + "prepare the data with the model's vocabulary")
        }
    }
}
