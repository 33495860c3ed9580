// swift-tools-version:6.1
import PackageDescription

// Every Swift target is built in the Swift 6 language mode with warnings as errors.
let strict: [SwiftSetting] = [
    .unsafeFlags(["-warnings-as-errors"]),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "scep-fcgi",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "scep-fcgi", targets: ["scep-fcgi"]),
        .executable(name: "scep-client", targets: ["scep-client"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
    ],
    targets: [
        // C libraries, each a module map plus one shim header (macros and variadics only).
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CFastCGI", pkgConfig: "fcgi", providers: [.apt(["libfcgi-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CPostgreSQL", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // Header only: atomic adds on a shared file mapping (the cross-process metrics counters).
        .systemLibrary(name: "CSharedCounters"),
        // Header only: syncfs(2), which Swift's Glibc module does not declare (the file store's journal checkpoint).
        .systemLibrary(name: "CFileSync"),
        .systemLibrary(name: "CEventPoll"),
        // OpenSSL's (deprecated) ENGINE API, for the pkcs11 engine only: see its shim.h.
        .systemLibrary(name: "CEnginePKCS11", providers: [.apt(["libengine-pkcs11-openssl"])]),

        // The one lock type (pthread: visible to ThreadSanitizer).
        .target(name: "SCEPLocking", swiftSettings: strict),

        // The only importers of each C module.
        .target(name: "SCEPCrypto", dependencies: ["COpenSSL", "CEnginePKCS11", "SCEPLocking"], swiftSettings: strict),
        .target(name: "FastCGI", dependencies: ["CFastCGI", "CEventPoll", "SCEPLocking"], swiftSettings: strict),
        .target(name: "CurlHTTP", dependencies: ["CCurl", "SCEPLocking"], swiftSettings: strict),
        .target(name: "PostgreSQL", dependencies: ["CPostgreSQL", "SCEPLocking"], swiftSettings: strict),

        // Durable file writes shared by the file store and the CA directory (temp + fsync + link/rename).
        .target(name: "DurableFiles", dependencies: ["CFileSync", "SCEPLocking"], swiftSettings: strict),

        // The certificate store protocol (what a CA asks of its records) and its one error type.
        .target(name: "SCEPStore", dependencies: ["SCEPCrypto"], swiftSettings: strict),
        // The embedded default: the CA directory's files (index.txt, issued/, transactions/).
        .target(name: "FileStore", dependencies: ["SCEPStore", "SCEPCrypto", "DurableFiles", "SCEPLocking"], swiftSettings: strict),

        // The store for many hosts: PostgreSQL through libpq (store.backend = postgresql).
        .target(name: "PostgreSQLStore", dependencies: ["SCEPStore", "SCEPCrypto", "PostgreSQL", "SCEPLocking"], swiftSettings: strict),
        // What every store must do, as cases each store's tests run (and workers for the multi-process ones).
        .target(name: "StoreConformance", dependencies: ["SCEPStore", "SCEPCrypto", "SCEPLocking"], swiftSettings: strict),
        // The suite as a program: `store-conformance run --file DIR`, and the worker processes.
        .executableTarget(
            name: "store-conformance", dependencies: ["StoreConformance", "FileStore", "PostgreSQLStore", "SCEPStore", "SCEPCrypto"],
            swiftSettings: strict),

        // RFC 8894 wire model: query decoding, pkiMessage decoding, CertRep encoding, client builder.
        .target(name: "SCEP", dependencies: ["SCEPCrypto"], swiftSettings: strict),
        // Transport-neutral server core: responder, CA store, issuance, challenge, audit, configuration.
        .target(
            name: "SCEPServer", dependencies: ["SCEP", "SCEPCrypto", "SCEPStore", "DurableFiles", "CSharedCounters", "SCEPLocking"],
            swiftSettings: strict),

        // Microsoft Intune challenge validation: a ChallengeValidator over libcurl.
        .target(name: "IntuneChallenge", dependencies: ["SCEPServer", "SCEP", "SCEPCrypto", "SCEPStore", "CurlHTTP", "SCEPLocking"], swiftSettings: strict),

        // Composition root.
        .executableTarget(
            name: "scep-fcgi",
            dependencies: [
                "SCEPServer", "SCEP", "SCEPCrypto", "SCEPStore", "FileStore", "PostgreSQLStore", "DurableFiles", "FastCGI", "CurlHTTP",
                "IntuneChallenge",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),

        // Test and benchmark client: builds PKCSReqs with chosen algorithms, opens CertReps.
        .executableTarget(
            name: "scep-client",
            dependencies: ["SCEP", "SCEPCrypto", "CurlHTTP", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),

        // What the fuzz targets run, shared with the regression tests (FuzzRegressionTests).
        .target(name: "SCEPFuzzHarness", dependencies: ["SCEPServer", "SCEP", "SCEPCrypto", "SCEPStore"], swiftSettings: strict),

        .testTarget(name: "SCEPCryptoTests", dependencies: ["SCEPCrypto"], swiftSettings: strict),
        .testTarget(
            name: "FuzzRegressionTests", dependencies: ["SCEPFuzzHarness"], resources: [.copy("corpus")], swiftSettings: strict),
        .testTarget(
            name: "SCEPTests",
            dependencies: ["SCEP", "SCEPCrypto"],
            resources: [.copy("Vectors")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SCEPServerTests", dependencies: ["SCEPServer", "SCEP", "SCEPCrypto", "SCEPStore", "FileStore", "DurableFiles"], swiftSettings: strict),
        .testTarget(
            name: "FileStoreTests", dependencies: ["FileStore", "StoreConformance", "SCEPStore", "SCEPCrypto", "DurableFiles"], swiftSettings: strict),
        .testTarget(
            name: "PostgreSQLStoreTests", dependencies: ["PostgreSQLStore", "PostgreSQL", "StoreConformance", "SCEPStore"], swiftSettings: strict),
        .testTarget(name: "CurlHTTPTests", dependencies: ["CurlHTTP"], swiftSettings: strict),
        .testTarget(name: "FastCGITests", dependencies: ["FastCGI"], swiftSettings: strict),
        .testTarget(
            name: "IntuneChallengeTests",
            dependencies: ["IntuneChallenge", "SCEPServer", "SCEP", "SCEPCrypto", "SCEPStore", "CurlHTTP", "SCEPLocking"],
            swiftSettings: strict
        ),
    ]
)

// libFuzzer builds only (scripts/fuzz.sh): SCEP_FUZZ=1 swift build --product scep-fuzz -Xswiftc -sanitize=fuzzer,address.
// Not part of a normal build: without the fuzzer runtime the executable has no main.
if Context.environment["SCEP_FUZZ"] == "1" {
    package.products.append(.executable(name: "scep-fuzz", targets: ["scep-fuzz"]))
    package.targets += [
        .systemLibrary(name: "CFuzzer", path: "Fuzz/CFuzzer"),
        .executableTarget(
            name: "scep-fuzz", dependencies: ["SCEPFuzzHarness", "CFuzzer"], path: "Fuzz/Sources/scep-fuzz",
            linkerSettings: [.unsafeFlags(["-sanitize=fuzzer,address", "-use-ld=lld"])]),
    ]
}
