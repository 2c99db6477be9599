import ArgumentParser
import Glibc
import Subprocess
import SyncCore
import SyncEngine
import SyncGit
import SyncSystem

/// `syncctl enable` and `syncctl disable`: a workspace under systemd, run as its owner.
///
/// As root they manage the system unit `syncd@ESCAPED.service` with a drop-in
/// (`/etc/systemd/system/syncd@ESCAPED.service.d/owner.conf`) that sets `User=`/`Group=` to the
/// workspace's owner, so nothing in the repository ever becomes root's. As a user they manage the
/// user manager's unit (`systemctl --user`) for the user's own workspace.
struct Enable: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run syncd for a workspace as a systemd service, as the workspace's owner, and wait until it is ready.",
        discussion: """
            As root: writes /etc/systemd/system/syncd@ESCAPED.service.d/owner.conf (User= and Group= of the \
            workspace's owner, ReadWritePaths= for what syncd writes outside the working tree), reloads systemd, \
            enables the unit and (re)starts it. As a user: the same with the user manager (systemctl --user) for \
            a workspace of your own. Exits 0 once syncd is ready (its initial commit done), 1 when it failed \
            (the reason from the journal is shown), 4 when it is not ready within --timeout.
            """)
    @Argument(help: "The workspace (any directory inside its working tree; default: the current directory).")
    var path: String = "."
    @Option(help: "How long to wait for syncd to be ready.")
    var timeout = "90s"

    func validate() throws { _ = try parseTimeout(timeout) }

    func run() async throws {
        let limit = try parseTimeout(timeout)
        let (service, owner) = try await ServiceTarget.forEnable(path)
        let workspace = service.workspace
        let config = GitRunner(workTree: owner.workTree)
        // Read-only git calls in a repository that may belong to another user (safe.directory is
        // honoured on the command line); they read configuration only.
        func setting(_ arguments: [GitArgument]) async -> [String] {
            guard let result = try? await config.run(["-c", "safe.directory=*"] + arguments, readOnly: true, acceptedExitCodes: [0, 1]),
                result.exitCode == 0
            else { return [] }
            return String(decoding: result.standardOutput, as: UTF8.self).split(separator: "\n").map(String.init)
        }
        let remoteURLs = await setting(["config", "--get-regexp", #"^remote\..*\.(url|pushurl)$"#]).compactMap { line in
            line.firstIndex(of: " ").map { String(line[line.index(after: $0)...]) }
        }
        let writable = ServiceUnit.writablePaths(
            workTree: workspace, gitDir: owner.gitDirDisplay,
            commonDir: String(decoding: owner.commonDir, as: UTF8.self),
            lockDir: await setting(["config", "--get", "syncd.lockDir"]).first,
            metricsFile: await setting(["config", "--get", "syncd.metricsFile"]).first,
            remoteURLs: remoteURLs)

        let load = await service.systemctl(["show", "-P", "LoadState", service.unit])
        guard load.code == 0 else {
            throw Failure("cannot reach \(service.managerName): `\(service.command(["show", service.unit]))` says \(load.errorLine)"
                + (service.system ? "" : "; it runs while you are logged in, or always after `loginctl enable-linger \(service.me)`; "
                    + "or run `sudo syncctl enable \(workspace)` for a system service that runs as you"))
        }
        guard load.output.trimmed == "loaded" else {
            throw Failure("the unit \(ServiceUnit.template) is not installed for \(service.managerName) (LoadState \(load.output.trimmed)): "
                + "install it with scripts/install.sh" + (service.system ? " as root" : " as \(service.me)"))
        }
        let user = owner.userName ?? String(owner.uid)
        let text = ServiceUnit.ownerDropIn(
            workspace: workspace, user: service.system ? user : nil, group: service.system ? (owner.groupName ?? String(owner.gid)) : nil,
            writablePaths: writable)
        if service.system || !writable.isEmpty {
            do {
                try service.writeDropIn(text)
            } catch {
                throw Failure("cannot write \(service.dropInPath): \(error)")
            }
        } else {
            service.removeDropIn()
        }
        for step in [["daemon-reload"], ["enable", "--quiet", service.unit]] {
            let result = await service.systemctl(step)
            guard result.code == 0 else { throw Failure("`\(service.command(step))` failed: \(result.errorLine)") }
        }
        // A running instance restarts so the drop-in applies; a stopped one starts.
        let since = WallClock.rfc3339()
        let restart = await service.systemctl(["restart", "--no-block", service.unit])
        guard restart.code == 0 else { throw Failure("`\(service.command(["restart", service.unit]))` failed: \(restart.errorLine)") }
        let started = ContinuousClock.now
        while true {
            let state = await service.state()
            // While the restart job runs, the state is still the old instance's (running, or failed).
            if state["Job"] == nil {
                if state["ActiveState"] == "active", state["SubState"] == "running" {
                    let who = service.system ? "as \(user)" : "in your user manager"
                    say("\(service.unit) runs \(who) for \(workspace) (pid \(state["MainPID"] ?? "?")): \(state["StatusText"] ?? "")")
                    say("  drop-in: \(Syscall.display(service.dropIn))" + ((service.system || !writable.isEmpty) ? "" : " (none needed)"))
                    if !service.system, !Syscall.exists(Array("/var/lib/systemd/linger/\(service.me)".utf8)) {
                        say("  to keep it running without a login session: loginctl enable-linger \(service.me)")
                    }
                    return
                }
                let restarting = state["ActiveState"] == "activating" && state["SubState"] == "auto-restart"
                if state["ActiveState"] == "failed" || state["ActiveState"] == "inactive" || restarting {
                    let why = await service.lastErrors(since: since)
                    throw Failure("\(service.unit) did not start (\(state["ActiveState"] ?? "?")/\(state["SubState"] ?? "?"), \(state["Result"] ?? "?")"
                        + (state["ExecMainStatus"].map { $0 == "0" ? "" : ", exit status \($0)" } ?? "") + ")"
                        + (why.isEmpty ? "" : ": \(why)")
                        + ". Fix it, then `\(service.command(["restart", service.unit]))`; details: `journalctl \(service.system ? "" : "--user ")-u \(service.unit)`")
                }
            }
            if ContinuousClock.now - started > limit {
                throw Failure("\(service.unit) is not ready after \(timeout) (\(state["ActiveState"] ?? "?")/\(state["SubState"] ?? "?")): see `\(service.command(["status", service.unit]))`",
                    code: ExitStatus.notConfirmed)
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

struct Disable: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop syncd's service for a workspace (what is pending is committed first), disable it and remove its drop-in.")
    @Argument(help: "The workspace (any directory inside its working tree; default: the current directory).")
    var path: String = "."
    @Option(help: "How long to wait for syncd to stop (it commits what is pending and tries a final push first).")
    var timeout = "4m"

    func validate() throws { _ = try parseTimeout(timeout) }

    func run() async throws {
        let limit = try parseTimeout(timeout)
        let service = try await ServiceTarget.forDisable(path)
        let disable = await service.systemctl(["disable", "--quiet", service.unit])
        guard disable.code == 0 else { throw Failure("`\(service.command(["disable", service.unit]))` failed: \(disable.errorLine)") }
        let stop = await service.systemctl(["stop", "--no-block", service.unit])
        guard stop.code == 0 else { throw Failure("`\(service.command(["stop", service.unit]))` failed: \(stop.errorLine)") }
        let started = ContinuousClock.now
        var state = await service.state()
        while state["Job"] != nil || !(state["ActiveState"] == "inactive" || state["ActiveState"] == "failed") {
            if ContinuousClock.now - started > limit {
                throw Failure("\(service.unit) is still \(state["ActiveState"] ?? "?") after \(timeout): it is disabled; see `\(service.command(["status", service.unit]))`",
                    code: ExitStatus.notConfirmed)
            }
            try await Task.sleep(for: .milliseconds(100))
            state = await service.state()
        }
        let hadDropIn = Syscall.exists(service.dropIn)
        service.removeDropIn()
        _ = await service.systemctl(["daemon-reload"])
        let ended = state["ActiveState"] == "failed" ? " (it had failed: `journalctl \(service.system ? "" : "--user ")-u \(service.unit)`)" : ""
        say("\(service.unit) stopped and disabled\(ended)" + (hadDropIn ? "; removed \(Syscall.display(service.dropIn))" : ""))
    }
}

/// The unit of a workspace and the manager (system or user) that runs it.
struct ServiceTarget {
    /// The top of the working tree: the instance name is made from it.
    let workspace: String
    let unit: String
    /// The system manager (syncctl runs as root) or the user's.
    let system: Bool
    let me: String
    let dropInDirectory: [UInt8]

    var dropIn: [UInt8] { dropInDirectory + Array("/\(ServiceUnit.dropInName)".utf8) }
    var dropInPath: String { Syscall.display(dropIn) }
    var managerName: String { system ? "the system manager" : "your user manager (systemctl --user)" }

    /// The workspace containing `path` and who owns it; fails (exit 1) when it cannot run there as
    /// its owner: not a working tree, parts owned by different users, someone else's as a user.
    static func forEnable(_ path: String) async throws -> (ServiceTarget, WorkspaceOwner) {
        guard let owner = WorkspaceOwner.find(path) else {
            throw Failure("\(path) is not inside a git working tree (no .git found in it or above it): pass the workspace's path")
        }
        let uid = geteuid()
        let workspace = owner.workTreeDisplay
        guard owner.owners.count == 1 else {
            throw Failure("\(workspace) has parts owned by different users ("
                + owner.owners.map(WorkspaceOwner.describe).joined(separator: ", ")
                + "): syncd must run as the one user who owns its working tree and git directory; fix it with `chown -R USER: \(workspace)`")
        }
        if uid != 0, owner.uid != uid {
            throw Failure("\(workspace) belongs to \(owner.ownerDescription), not to you (\(WorkspaceOwner.describe(uid))): "
                + "run `sudo syncctl enable \(workspace)` to run syncd there as \(owner.userName ?? "its owner")")
        }
        return (try await make(workspace), owner)
    }

    /// The unit of the workspace containing `path`, or of `path` itself when it is no working
    /// tree any more (a workspace removed before its service).
    static func forDisable(_ path: String) async throws -> ServiceTarget {
        if let owner = WorkspaceOwner.find(path) { return try await make(owner.workTreeDisplay) }
        var absolute = path
        if !path.hasPrefix("/"), let cwd = getcwd(nil, 0) {
            absolute = String(cString: cwd) + "/" + path
            free(cwd)
        }
        return try await make(absolute)
    }

    static func make(_ workspace: String) async throws -> ServiceTarget {
        let uid = geteuid()
        let me = WorkspaceOwner.userName(uid) ?? String(uid)
        let escaped = await Self.run(["systemd-escape", "--path", "--template=\(ServiceUnit.template)", workspace])
        let unit = escaped.output.trimmed
        guard escaped.code == 0, !unit.isEmpty else {
            throw Failure("cannot name the unit of \(workspace) (`systemd-escape` failed: \(escaped.errorLine)): is systemd installed?")
        }
        let base: String
        if uid == 0 {
            base = "/etc/systemd/system"
        } else {
            let config = getenv("XDG_CONFIG_HOME").map { String(cString: $0) } ?? ""
            let home = getenv("HOME").map { String(cString: $0) } ?? ""
            base = (config.hasPrefix("/") ? config : home + "/.config") + "/systemd/user"
        }
        return ServiceTarget(workspace: workspace, unit: unit, system: uid == 0, me: me, dropInDirectory: Array("\(base)/\(unit).d".utf8))
    }

    func command(_ arguments: [String]) -> String {
        (["systemctl"] + (system ? [] : ["--user"]) + arguments).joined(separator: " ")
    }

    func systemctl(_ arguments: [String]) async -> CommandResult {
        await Self.run(["systemctl"] + (system ? [] : ["--user"]) + arguments)
    }

    /// The unit's state properties (`Job` only while a job is queued or running).
    func state() async -> [String: String] {
        let result = await systemctl([
            "show", unit, "-p", "ActiveState", "-p", "SubState", "-p", "Result", "-p", "MainPID", "-p", "ExecMainStatus",
            "-p", "StatusText", "-p", "Job",
        ])
        var properties: [String: String] = [:]
        for line in result.output.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            let value = String(line[line.index(after: equals)...])
            if !value.isEmpty { properties[String(line[..<equals])] = value }
        }
        return properties
    }

    /// The error lines syncd logged since `since` (journald keeps the `<3>` priority it wrote).
    func lastErrors(since: String) async -> String {
        // What syncd itself logged (_SYSTEMD_UNIT), not systemd's lines about the unit.
        let journal = await Self.run(
            ["journalctl"] + (system ? ["_SYSTEMD_UNIT=\(unit)"] : ["--user", "_SYSTEMD_USER_UNIT=\(unit)"])
                + ["-p", "err", "--since", Self.journalTime(since), "-o", "cat", "--no-pager", "-n", "3"])
        return journal.output.split(separator: "\n").map(String.init).joined(separator: " / ")
    }

    /// "2026-12-03T09:38:45Z" → "2026-12-03 09:38:45 UTC" (what journalctl --since accepts).
    static func journalTime(_ rfc3339: String) -> String {
        guard let seconds = WallClock.seconds(rfc3339: rfc3339) else { return "-1min" }
        return "@\(Int(seconds) - 1)"
    }

    func writeDropIn(_ text: String) throws {
        try Syscall.makeDirectory(dropInDirectory)
        try AtomicFile.write(dropIn, Array(text.utf8), mode: 0o644)
    }

    func removeDropIn() {
        try? Syscall.unlink(dropIn)
        _ = Syscall.withCStringResult(dropInDirectory) { rmdir($0) }
    }

    struct CommandResult {
        var code: Int32
        var output: String
        var error: String
        var errorLine: String {
            let text = error.trimmed.isEmpty ? output.trimmed : error.trimmed
            return text.split(separator: "\n").first.map(String.init) ?? "exit status \(code)"
        }
    }

    static func run(_ arguments: [String]) async -> CommandResult {
        do {
            let result = try await Subprocess.run(
                .command(arguments[0]), arguments: Arguments(Array(arguments.dropFirst())),
                output: .string(limit: 256 * 1024), error: .string(limit: 64 * 1024))
            let code: Int32
            switch result.terminationStatus {
            case .exited(let value): code = value
            case .signaled(let signal): code = 128 + signal
            }
            return CommandResult(code: code, output: result.standardOutput, error: result.standardError)
        } catch {
            return CommandResult(code: 127, output: "", error: "cannot run \(arguments[0]): \(error)")
        }
    }
}
