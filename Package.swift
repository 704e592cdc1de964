// swift-tools-version:6.0
import PackageDescription

// Element-wise kernels are written with explicit SIMD types; in release builds they are compiled for
// the CPU that builds them (AVX-512 on the Xeons this project runs on). The binary is built on the
// machines it runs on, from source.
let kernelFlags: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", "native"], .when(configuration: .release)),
]

let package = Package(
    name: "SwiftBERT",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "swiftbert", targets: ["swiftbert"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
    ],
    targets: [
        // Open MPI's compile and link flags, from pkg-config; no headers are exported to Swift.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        .target(name: "CMPIShim", dependencies: ["CMPI"]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(name: "Kernels", dependencies: ["COpenBLAS"], swiftSettings: kernelFlags),
        .target(name: "Distributed", dependencies: ["CMPIShim"], swiftSettings: kernelFlags),
        .target(
            name: "Data",
            dependencies: ["Kernels", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: kernelFlags),
        .target(name: "Transformer", dependencies: ["Kernels"], swiftSettings: kernelFlags),
        .target(
            name: "Training",
            dependencies: ["Kernels", "Data", "Transformer", "Distributed",
                           .product(name: "Crypto", package: "swift-crypto")],
            // Without -fno-math-errno, Float.squareRoot() is a libm call that may set errno, which
            // keeps sqrt (also in SIMD16 code) scalar on Linux; with it, one vsqrtps per 16 floats.
            swiftSettings: kernelFlags + [.unsafeFlags(["-Xcc", "-fno-math-errno"])]),
        .executableTarget(
            name: "swiftbert",
            dependencies: ["Training", "Data", "Transformer", "Distributed", "Kernels",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: kernelFlags),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels"]),
        .testTarget(name: "DistributedTests", dependencies: ["Distributed"]),
        .testTarget(name: "DataTests", dependencies: ["Data"], exclude: ["Fixtures"]),
        .testTarget(name: "TransformerTests", dependencies: ["Transformer", "Kernels", "Data"], exclude: ["Fixtures"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training"], exclude: ["Fixtures"]),
        .testTarget(name: "IntegrationTests", dependencies: ["Data"], exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v5]
)
