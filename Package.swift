// swift-tools-version: 6.2
import PackageDescription

// Every local target: Swift 6 language mode (package default), strict concurrency, warnings are errors.
let strict: [SwiftSetting] = [
    .treatAllWarnings(as: .error),
    .enableUpcomingFeature("ExistentialAny"),
]

// swift-log's Logger: every target that logs takes one (issue 16).
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")

let package = Package(
    name: "syncd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "syncd", targets: ["syncd"]),
        .executable(name: "syncctl", targets: ["syncctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // C names Glibc does not export to Swift (pipe2 and friends).
        .target(name: "CSyncShims"),
        // Pure values: errors, byte paths, change records, JSON lines. No syscalls.
        .target(name: "SyncCore", swiftSettings: strict),
        // The one syscall layer: EINTR retry, errno kept, close-on-exec everywhere; inotify reader thread;
        // the log handler (stderr, journald priorities, repeat limiter).
        .target(
            name: "SyncSystem",
            dependencies: ["SyncCore", "CSyncShims", logging],
            swiftSettings: strict
        ),
        // Every git child process goes through GitRunner.
        .target(
            name: "SyncGit",
            dependencies: ["SyncCore", "SyncSystem", .product(name: "Subprocess", package: "swift-subprocess")],
            swiftSettings: strict
        ),
        // Recursive watching: watch table, crawler, event processing, change queue.
        .target(
            name: "SyncWatcher",
            dependencies: ["SyncCore", "SyncSystem", "SyncGit", logging],
            swiftSettings: strict
        ),
        // syncd run: batcher, committer, journal, state file, settings.
        .target(
            name: "SyncEngine",
            dependencies: [
                "SyncCore", "SyncSystem", "SyncGit", "SyncWatcher",
                .product(name: "Subprocess", package: "swift-subprocess"), logging,
            ],
            swiftSettings: strict
        ),
        // Thin executables.
        .executableTarget(
            name: "syncd",
            dependencies: ["SyncEngine", "SyncWatcher", .product(name: "ArgumentParser", package: "swift-argument-parser"), logging],
            // More than one source file (the demo): main.swift would be top-level code, which @main forbids.
            swiftSettings: strict + [.unsafeFlags(["-parse-as-library"])]
        ),
        .executableTarget(
            name: "syncctl",
            dependencies: [
                "SyncEngine", "SyncGit", "SyncSystem", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Subprocess", package: "swift-subprocess"), logging,
            ],
            // More than one source file: main.swift would be top-level code, which @main forbids.
            swiftSettings: strict + [.unsafeFlags(["-parse-as-library"])]
        ),
        .executableTarget(
            name: "syncd-bench",
            dependencies: ["SyncWatcher", "SyncEngine", "SyncTestKit", logging],
            swiftSettings: strict
        ),
        // Test support shared by unit tests, integration tests and benchmarks.
        .target(
            name: "SyncTestKit",
            dependencies: [
                "SyncCore", "SyncSystem", "SyncGit", "SyncWatcher", "SyncEngine",
                .product(name: "Subprocess", package: "swift-subprocess"), logging,
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "SyncCoreTests", dependencies: ["SyncCore"], swiftSettings: strict),
        .testTarget(
            name: "SyncWatcherTests",
            dependencies: ["SyncWatcher", "SyncTestKit", logging],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SyncEngineTests",
            dependencies: ["SyncEngine", "SyncTestKit", logging],
            swiftSettings: strict
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["SyncTestKit", "SyncCore", "SyncSystem", "SyncGit", "SyncEngine"],
            path: "Integration/IntegrationTests",
            swiftSettings: strict
        ),
    ]
)
