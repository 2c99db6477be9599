import Glibc
import SyncCore
import SyncSystem

/// syncd as root on a workspace that belongs to someone else would leave root-owned objects,
/// index and refs behind (the owner's next `git add` then fails with "insufficient permission"),
/// so it refuses before git runs or anything is created.
public enum OwnershipCheck {
    /// Throws `.wrongOwner` when syncd runs as root (`euid`) and the workspace containing `path`
    /// (its working tree, git directory or common directory) belongs to another user.
    public static func refuseRootOnForeignWorkspace(_ path: String, euid: uid_t = geteuid()) throws {
        guard euid == 0, let owner = WorkspaceOwner.find(path), !owner.isOwned(by: 0) else { return }
        throw SyncError(.wrongOwner, message(owner))
    }

    /// One line: whose workspace it is, why syncd stops, and the command to use instead.
    public static func message(_ owner: WorkspaceOwner) -> String {
        let foreign = owner.owners.first { $0 != 0 } ?? owner.uid
        let who = WorkspaceOwner.describe(foreign)
        let top = owner.workTreeDisplay
        let name = WorkspaceOwner.userName(foreign) ?? String(foreign)
        return "\(top) belongs to \(who), but syncd runs as root: its commits would leave root-owned files in that repository. "
            + "Run it as \(name): `syncctl enable \(top)` (the systemd service, with User=\(name)) or `runuser -u \(name) -- syncd run \(top)`"
    }
}
