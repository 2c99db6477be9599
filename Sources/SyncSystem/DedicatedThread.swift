import CSyncShims
import Glibc

/// A plain pthread for blocking loops that must never run on Swift's cooperative pool
/// (the inotify reader blocks in poll(2)).
public final class DedicatedThread: @unchecked Sendable {
    // @unchecked: `thread` is written once in `start` before any other thread can see `self`, and
    // read once in `join`, which the owner calls at most once after `start`.
    private var thread = pthread_t()

    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    private init() {}

    /// Starts `body` on a new thread named `name` (visible in /proc/PID/task/*/comm, max 15 bytes).
    public static func start(name: String, _ body: @escaping @Sendable () -> Void) throws(SyscallError) -> DedicatedThread {
        let handle = DedicatedThread()
        let box = Unmanaged.passRetained(Box {
            csync_set_thread_name(name)
            body()
        })
        let result = pthread_create(&handle.thread, nil, { context in
            let box = Unmanaged<Box>.fromOpaque(context!).takeRetainedValue()
            box.body()
            return nil
        }, box.toOpaque())
        if result != 0 {
            box.release()
            throw SyscallError(call: "pthread_create", path: nil, errno: .init(result))
        }
        return handle
    }

    /// Waits for the thread to finish.
    public func join() {
        _ = pthread_join(thread, nil)
    }
}
