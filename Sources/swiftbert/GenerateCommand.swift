import ArgumentParser
import Data
import Foundation
import Kernels
import Transformer

/// `swiftbert generate`: continues prompts with a GPT-2 model, as transformers' `generate` does.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue prompts with a GPT-2 model (as transformers' generate).",
        discussion: """
            --model is a Hugging Face GPT-2 directory (config.json, model.safetensors, and tokenizer.json or \
            vocab.json + merges.txt), or a peft LoRA adapter directory (a causal_lm LoRA run's checkpoint, or \
            peft's save_pretrained), whose update is merged into its base model (--base, else the adapter's \
            base_model_name_or_path); the adapter's tokenizer is used when it has one, else the base's. Without --temperature the most likely token is taken each step \
            (greedy, as generate with do_sample=False); with it, tokens are sampled after --top-k and \
            --top-p filtering, reproducibly from --seed. Generation stops at the end-of-text token, at a \
            --stop string, or after --max-new-tokens. Several prompts run as one batch, left-padded as \
            transformers pads them. On a terminal the text of a single prompt is printed as it is \
            generated; --json prints one object per prompt: {"prompt", "generated_text", "tokens"}.
            """)

    @Option(help: "The GPT-2 model directory, or a LoRA adapter directory.")
    var model: String

    @Option(help: ArgumentHelp("The base model of the adapter --model names (default: its adapter_config.json's base_model_name_or_path).", valueName: "dir"))
    var base: String?

    @Option(help: "Tokens to generate at most per prompt.")
    var maxNewTokens: Int = 50

    @Option(help: "Sampling temperature; omit (or 0) for greedy decoding.")
    var temperature: Float?

    @Option(name: .customLong("top-k"), help: "Sample from the k most likely tokens only.")
    var topK: Int?

    @Option(name: .customLong("top-p"), help: "Sample from the smallest set of tokens whose probability reaches p.")
    var topP: Float?

    @Option(help: "Seed of the sampling.")
    var seed: UInt64 = 0

    @Option(help: "Stop a prompt's text at this string (repeatable); the string is not printed.")
    var stop: [String] = []

    @Option(help: ArgumentHelp("Threads (default: the cores this process may use).", valueName: "n"))
    var threads: Int?

    @Flag(help: "Print one JSON object per prompt.")
    var json = false

    @Flag(help: ArgumentHelp(
        "Print to standard error how long the step of each new token took.",
        discussion: "One JSON object after the text: {\"prompt_seconds\": the prompts' pass and the first token, "
            + "\"step_seconds\": [each further token's step]}, for throughput and its growth with length."))
    var timings = false

    @Argument(help: "The prompts.")
    var prompts: [String] = []

    func validate() throws {
        if prompts.isEmpty { throw ValidationError("give at least one prompt") }
        if prompts.contains(where: \.isEmpty) { throw ValidationError("a prompt is empty; GPT-2 needs at least one token to go on from") }
        guard maxNewTokens > 0 else { throw ValidationError("--max-new-tokens must be positive, got \(maxNewTokens)") }
        if let temperature, temperature < 0 { throw ValidationError("--temperature must be >= 0, got \(temperature)") }
        if let topK, topK < 1 { throw ValidationError("--top-k must be at least 1, got \(topK)") }
        if let topP, !(topP > 0 && topP <= 1) { throw ValidationError("--top-p must be in (0, 1], got \(topP)") }
        if let threads, threads < 1 { throw ValidationError("--threads must be positive, got \(threads)") }
        if (topK != nil || topP != nil) && (temperature ?? 0) == 0 {
            throw ValidationError("--top-k and --top-p filter sampling; set --temperature (e.g. 1.0) to sample")
        }
    }

    func run() throws {
        let threads = self.threads ?? CPUFeatures.allowedCoreCount
        BLASRuntime.setThreadCount(threads)
        Parallel.workerCount = threads
        let network: GPT2Model, tokenizer: ByteLevelBPE
        do {
            let loaded = try GPT2Model.load(model: model, base: base)
            network = loaded.model
            let ownTokenizer = (try? ByteLevelBPE.files(inDirectory: model)) != nil
            tokenizer = try ByteLevelBPE.load(directory: ownTokenizer ? model : loaded.base)
        } catch {
            throw InputError("\(error)")
        }
        let encoded = prompts.map { tokenizer.encode($0) }
        let longest = encoded.map(\.count).max() ?? 0
        guard longest < network.config.positionCount else {
            throw InputError("a prompt is \(longest) tokens; the model takes \(network.config.positionCount) positions (n_positions) in all")
        }
        var settings = GenerationSettings(maxNewTokens: maxNewTokens)
        settings.temperature = temperature
        settings.topK = topK
        settings.topP = topP
        settings.seed = seed
        let endOfText = tokenizer.id(ofSpelled: "<|endoftext|>") ?? Int32(network.config.eosTokenID)
        settings.endOfText = endOfText
        // One prompt on a terminal: its text as it comes (bytes of a character split over tokens wait).
        let streaming = !json && prompts.count == 1 && isatty(STDOUT_FILENO) != 0 && stop.isEmpty
        var pending: [UInt8] = []
        if streaming { FileHandle.standardOutput.write(Data(prompts[0].utf8)) }
        var clock = DispatchTime.now().uptimeNanoseconds, stepSeconds: [Double] = []
        let generated = network.generate(prompts: encoded, settings: settings) { _, tokens in
            if timings {
                let now = DispatchTime.now().uptimeNanoseconds
                stepSeconds.append(Double(now - clock) / 1e9)
                clock = now
            }
            guard streaming, tokens[0] != endOfText else { return }
            pending += tokenizer.bytes(of: [tokens[0]])
            if String(validatingUTF8: pending.map { CChar(bitPattern: $0) } + [0]) != nil {
                FileHandle.standardOutput.write(Data(pending))
                pending.removeAll()
            }
        }
        defer {
            if timings, let first = stepSeconds.first {
                let report: JSONValue = .object([
                    ("prompt_seconds", .double(first)), ("step_seconds", .array(stepSeconds.dropFirst().map { .double($0) })),
                ])
                FileHandle.standardError.write(Data((report.compactText() + "\n").utf8))
            }
        }
        if streaming {
            FileHandle.standardOutput.write(Data(pending) + Data("\n".utf8))
            return
        }
        for (prompt, tokens) in zip(prompts, generated) {
            var text = tokenizer.decode(tokens.filter { $0 != endOfText })
            if let cut = stop.compactMap({ text.range(of: $0)?.lowerBound }).min() { text = String(text[..<cut]) }
            if json {
                let object: JSONValue = .object([
                    ("prompt", .string(prompt)), ("generated_text", .string(prompt + text)),
                    ("tokens", .array(tokens.map { .integer($0) })),
                ])
                print(object.compactText())
            } else {
                print(prompt + text)
            }
        }
    }
}
