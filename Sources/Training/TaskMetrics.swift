import Foundation

// Evaluation metrics of the fine-tuning tasks, as the libraries users compare against compute them:
// scikit-learn for classification (zero_division=0), scipy for correlations. Pure functions of
// labels and predictions; `scripts/make_metric_fixtures.py` writes the reference values the tests
// compare with.

/// Labels and predictions that cannot be scored together: the message names the metric and what to pass.
public struct TaskMetricsError: Error, LocalizedError, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { description }
}

/// One reported number under the key that Hugging Face's example scripts use (run_glue.py through
/// `evaluate`, run_ner.py), so logs, `evaluate` output and best-checkpoint selection share one name.
/// nil: undefined for these inputs (written as JSON null).
public struct NamedMetric: Equatable, Sendable {
    public var name: String
    public var value: Double?
    public init(_ name: String, _ value: Double?) {
        self.name = name
        self.value = value
    }
}

/// Metrics of one task, as named numbers in a fixed order.
public protocol TaskMetricValues {
    var namedValues: [NamedMetric] { get }
}

/// Counts behind precision, recall and F1 for one class (or summed over classes for a micro average).
public struct MatchCounts: Equatable, Sendable {
    public var truePositives = 0
    /// Predicted positives (true and false).
    public var predicted = 0
    /// Actual positives: the support.
    public var actual = 0

    public init(truePositives: Int = 0, predicted: Int = 0, actual: Int = 0) {
        self.truePositives = truePositives
        self.predicted = predicted
        self.actual = actual
    }

    /// 0 when nothing is predicted (zero_division=0).
    public var precision: Double { predicted == 0 ? 0 : Double(truePositives) / Double(predicted) }
    /// 0 when nothing is actual (zero_division=0).
    public var recall: Double { actual == 0 ? 0 : Double(truePositives) / Double(actual) }
    /// 2 tp / (predicted + actual), sklearn's form of the harmonic mean of precision and recall
    /// (seqeval's 2pr / (p + r) is the same number); 0 when both are 0.
    public var f1: Double {
        predicted + actual == 0 ? 0 : 2 * Double(truePositives) / Double(predicted + actual)
    }

    public static func + (a: MatchCounts, b: MatchCounts) -> MatchCounts {
        MatchCounts(truePositives: a.truePositives + b.truePositives, predicted: a.predicted + b.predicted,
                    actual: a.actual + b.actual)
    }
}

/// The unweighted mean of per-class F1 scores (sklearn and seqeval `average='macro'`).
func macroF1(_ counts: [MatchCounts]) -> Double {
    counts.isEmpty ? 0 : counts.map(\.f1).reduce(0, +) / Double(counts.count)
}

func checkSameCount(_ metric: String, labels: Int, predictions: Int) throws {
    guard labels == predictions else {
        throw TaskMetricsError("\(metric): \(labels) labels but \(predictions) predictions; pass one prediction per label")
    }
    guard labels > 0 else { throw TaskMetricsError("\(metric): no examples to score") }
}

// MARK: - Single-label classification

/// Accuracy, F1 and Matthews correlation of single-label classification (binary or multi-class),
/// with scikit-learn's definitions: the classes are those present in the labels or the predictions
/// (sklearn without `labels=`), so a class that occurs in neither does not lower the macro F1.
public struct ClassificationMetrics: TaskMetricValues, Equatable, Sendable {
    public var accuracy: Double
    /// Mean F1 over the classes, each weighted the same.
    public var macroF1: Double
    /// F1 of the counts summed over classes; equals the accuracy when every class counts.
    public var microF1: Double
    /// Multi-class MCC (Gorodkin's R_K, sklearn's `matthews_corrcoef`); 0 when undefined (one class
    /// predicted or present only), as sklearn returns.
    public var matthewsCorrelation: Double
    /// The classes in increasing order, with their counts (F1 of the positive class of a binary task:
    /// the entry whose `label` is 1).
    public var perClass: [ClassCounts]

    public struct ClassCounts: Equatable, Sendable {
        public var label: Int
        public var counts: MatchCounts
    }

    /// `labels` and `predictions`: class indices, one per example.
    public init(labels: [Int], predictions: [Int]) throws {
        try checkSameCount("classification metrics", labels: labels.count, predictions: predictions.count)
        let classes = Set(labels).union(predictions).sorted()
        let slot = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
        var counts = [MatchCounts](repeating: MatchCounts(), count: classes.count)
        for (label, prediction) in zip(labels, predictions) {
            counts[slot[label]!].actual += 1
            counts[slot[prediction]!].predicted += 1
            if label == prediction { counts[slot[label]!].truePositives += 1 }
        }
        let total = counts.reduce(MatchCounts(), +)
        accuracy = Double(total.truePositives) / Double(labels.count)
        macroF1 = Training.macroF1(counts)
        microF1 = total.f1
        // sklearn: cov(y, p) / sqrt(cov(p, p) cov(y, y)) from the confusion matrix's diagonal and
        // marginals, each covariance scaled by n^2.
        let n = labels.count
        let labelsDotPredictions = counts.reduce(0) { $0 + $1.actual * $1.predicted }
        let covariance = Double(total.truePositives) * Double(n) - Double(labelsDotPredictions)
        let predictionVariance = n * n - counts.reduce(0) { $0 + $1.predicted * $1.predicted }
        let labelVariance = n * n - counts.reduce(0) { $0 + $1.actual * $1.actual }
        let product = Double(predictionVariance) * Double(labelVariance)
        matthewsCorrelation = product == 0 ? 0 : covariance / product.squareRoot()
        perClass = zip(classes, counts).map { ClassCounts(label: $0, counts: $1) }
    }

    public var namedValues: [NamedMetric] {
        [NamedMetric("accuracy", accuracy), NamedMetric("f1_macro", macroF1), NamedMetric("f1_micro", microF1),
         NamedMetric("matthews_correlation", matthewsCorrelation)]
    }
}

// MARK: - Multi-label classification

/// Multi-label classification scored as sklearn scores indicator matrices: subset accuracy (every
/// label of an example right), micro F1 over all (example, label) cells, macro F1 over every label
/// column (a label neither present nor predicted anywhere counts as F1 0, zero_division=0).
public struct MultiLabelMetrics: TaskMetricValues, Equatable, Sendable {
    public var subsetAccuracy: Double
    public var microF1: Double
    public var macroF1: Double

    /// `labels` and `predictions`: [examples][labels] multi-hot rows of one width.
    public init(labels: [[Bool]], predictions: [[Bool]]) throws {
        let metric = "multi-label metrics"
        try checkSameCount(metric, labels: labels.count, predictions: predictions.count)
        let width = labels[0].count
        guard width > 0 else { throw TaskMetricsError("\(metric): examples have no labels; pass one flag per label") }
        var counts = [MatchCounts](repeating: MatchCounts(), count: width)
        var exact = 0
        for (row, (truth, predicted)) in zip(labels, predictions).enumerated() {
            guard truth.count == width, predicted.count == width else {
                throw TaskMetricsError("\(metric): example \(row) has \(truth.count) labels and \(predicted.count) "
                                       + "predictions, example 0 has \(width); pass rows of one width")
            }
            if truth == predicted { exact += 1 }
            for column in 0..<width {
                if truth[column] { counts[column].actual += 1 }
                if predicted[column] { counts[column].predicted += 1 }
                if truth[column] && predicted[column] { counts[column].truePositives += 1 }
            }
        }
        subsetAccuracy = Double(exact) / Double(labels.count)
        microF1 = counts.reduce(MatchCounts(), +).f1
        macroF1 = Training.macroF1(counts)
    }

    public var namedValues: [NamedMetric] {
        [NamedMetric("subset_accuracy", subsetAccuracy), NamedMetric("f1_micro", microF1),
         NamedMetric("f1_macro", macroF1)]
    }

    /// Multi-hot predictions from logits: sigmoid(logit) > 0.5, that is logit > 0, the threshold of
    /// transformers' run_classification.py for multi-label problems.
    public static func predictions(logits: [[Float]]) -> [[Bool]] {
        logits.map { row in row.map { $0 > 0 } }
    }
}

// MARK: - Regression

/// Regression scored as GLUE's STS-B is: Pearson and Spearman correlation (scipy.stats) and the
/// mean squared error (sklearn). A correlation is nil where scipy gives NaN or refuses: fewer than
/// 2 examples, or labels or predictions all equal (no variance to correlate).
public struct RegressionMetrics: TaskMetricValues, Equatable, Sendable {
    public var pearson: Double?
    /// Pearson correlation of the ranks, tied values sharing their average rank.
    public var spearman: Double?
    public var meanSquaredError: Double

    public init(labels: [Double], predictions: [Double]) throws {
        try checkSameCount("regression metrics", labels: labels.count, predictions: predictions.count)
        guard labels.allSatisfy(\.isFinite), predictions.allSatisfy(\.isFinite) else {
            throw TaskMetricsError("regression metrics: labels and predictions must be finite numbers")
        }
        pearson = Self.pearson(labels, predictions)
        spearman = Self.pearson(Self.averageRanks(labels), Self.averageRanks(predictions))
        meanSquaredError = zip(labels, predictions).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
            / Double(labels.count)
    }

    public var namedValues: [NamedMetric] {
        [NamedMetric("pearson", pearson), NamedMetric("spearmanr", spearman), NamedMetric("mse", meanSquaredError)]
    }

    /// Pearson's r from the centred values, clipped to [-1, 1] as scipy clips rounding; nil for
    /// fewer than 2 values or a constant input (tested exactly: the mean of equal values need not
    /// round back to them).
    public static func pearson(_ x: [Double], _ y: [Double]) -> Double? {
        guard x.count == y.count, x.count >= 2, x.contains(where: { $0 != x[0] }),
              y.contains(where: { $0 != y[0] }) else { return nil }
        let n = Double(x.count)
        let meanX = x.reduce(0, +) / n, meanY = y.reduce(0, +) / n
        var xy = 0.0, xx = 0.0, yy = 0.0
        for (a, b) in zip(x, y) {
            xy += (a - meanX) * (b - meanY)
            xx += (a - meanX) * (a - meanX)
            yy += (b - meanY) * (b - meanY)
        }
        return min(1, max(-1, xy / (xx.squareRoot() * yy.squareRoot())))
    }

    /// Ranks from 1, ties given the mean of the ranks they span (scipy.stats.rankdata, 'average').
    public static func averageRanks(_ values: [Double]) -> [Double] {
        let order = values.indices.sorted { values[$0] < values[$1] }
        var ranks = [Double](repeating: 0, count: values.count)
        var first = 0
        while first < order.count {
            var last = first
            while last + 1 < order.count && values[order[last + 1]] == values[order[first]] { last += 1 }
            // Positions first...last hold ranks first+1...last+1; their mean:
            let rank = Double(first + last + 2) / 2
            for position in first...last { ranks[order[position]] = rank }
            first = last + 1
        }
        return ranks
    }
}
