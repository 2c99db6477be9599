import Foundation
import SyncTestKit
import Testing

/// The systemd units, checked offline by systemd-analyze (systemd is installed even where it is
/// not PID 1).
@Suite("systemd units")
struct SystemdTests {
    static let unit = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("systemd/syncd@.service").path

    /// The template with ExecStart pointing at the built binary, verified as one instance.
    func verify(_ text: String) async throws -> ProcessHarness {
        let directory = try TemporaryDirectory(prefix: "syncd-unit")
        let path = directory.sub("syncd@.service")
        try text.replacingOccurrences(of: "/usr/local/bin/syncd", with: ProcessHarness.product("syncd"))
            .write(toFile: path, atomically: true, encoding: .utf8)
        let check = ProcessHarness("/usr/bin/env", [
            "systemd-analyze", "verify", "--man=no", "--recursive-errors=yes", "\(path):syncd@srv-notes.service",
        ])
        _ = try await check.exit()
        directory.remove()
        return check
    }

    @Test("syncd@.service passes systemd-analyze verify --recursive-errors=yes; a broken copy does not")
    func unitVerifies() async throws {
        let text = try String(contentsOfFile: Self.unit, encoding: .utf8)
        let good = try await verify(text)
        #expect(good.finished == .exited(0), "\(good.stderr)")
        for line in ["Type=notify", "WatchdogSec=", "Restart=on-failure", "KillMode=mixed", "TimeoutStopSec=", "ExecStart=/usr/local/bin/syncd run %f", "ReadWritePaths=%f", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "ExecReload=/bin/kill -HUP $MAINPID", "TimeoutAbortSec=", "RestartPreventExitStatus=75 78"] {
            #expect(text.contains(line), "the unit lacks \(line)")
        }
        // The check is real: an unknown key fails it.
        let broken = try await verify(text.replacingOccurrences(of: "KillMode=mixed", with: "KillMode=mixed\nKillModus=mixed"))
        #expect(broken.finished == .exited(1))
    }
}
