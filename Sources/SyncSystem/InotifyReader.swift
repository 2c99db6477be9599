import CSyncShims
import Glibc
import Synchronization

/// The dedicated reader thread: blocks in poll(2) on the inotify descriptor and a control pipe,
/// drains the descriptor with a large buffer until EAGAIN, decodes the records and hands them to
/// the inbox without ever waiting on the consumer.
public final class InotifyReader: Sendable {
    /// 256 KiB: room for ~16k small events per read, the kernel's default queue length.
    public static let bufferSize = 256 * 1024

    private struct Control {
        var stopping = false
        var heldBack = false
        /// A fence asked for and not passed yet (0: none).
        var fence: UInt64 = 0
    }

    private let inotify: InotifyDescriptor
    private let inbox: EventInbox
    private let control = Mutex(Control())
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let thread: Mutex<DedicatedThread?> = Mutex(nil)

    public init(inotify: InotifyDescriptor, inbox: EventInbox) throws(SyscallError) {
        self.inotify = inotify
        self.inbox = inbox
        var fds: [Int32] = [-1, -1]
        _ = try Syscall.retrying("pipe2") { csync_pipe_cloexec_nonblock(&fds) }
        wakeRead = fds[0]
        wakeWrite = fds[1]
    }

    deinit {
        Syscall.close(wakeRead)
        Syscall.close(wakeWrite)
    }

    public func start() throws(SyscallError) {
        let started = try DedicatedThread.start(name: "syncd-inotify") { [self] in self.loop() }
        thread.withLock { $0 = started }
    }

    /// Stops the thread and waits for it. Safe to call more than once.
    public func stop() {
        control.withLock { $0.stopping = true }
        wake()
        let running = thread.withLock { current -> DedicatedThread? in
            defer { current = nil }
            return current
        }
        running?.join()
    }

    /// Holds the reader back (it stops reading, so the kernel queue fills and eventually overflows)
    /// or lets it go on. Used by tests and benchmarks to force IN_Q_OVERFLOW on the real kernel.
    /// Asks the reader to read everything the kernel has queued now and hand it over with
    /// `fence` (see `EventInbox.Batch.fence`), even when that is nothing.
    public func requestFence(_ fence: UInt64) {
        control.withLock { $0.fence = max($0.fence, fence) }
        wake()
    }

    package func setHeldBack(_ held: Bool) {
        control.withLock { $0.heldBack = held }
        wake()
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = Glibc.write(wakeWrite, &byte, 1)  // EAGAIN (pipe full) is fine: a wake is already pending.
    }

    private func drainWakePipe() {
        var scratch = [UInt8](repeating: 0, count: 64)
        while Glibc.read(wakeRead, &scratch, scratch.count) > 0 {}
    }

    private func loop() {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.bufferSize, alignment: 8)
        defer { buffer.deallocate() }
        var events: [InotifyEvent] = []
        events.reserveCapacity(4096)
        while true {
            let state = control.withLock { $0 }
            if state.stopping { return }
            var fds = [
                pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
                pollfd(fd: inotify.fd, events: state.heldBack ? 0 : Int16(POLLIN), revents: 0),
            ]
            do {
                _ = try Syscall.retrying("poll") { poll(&fds, nfds_t(fds.count), -1) }
            } catch {
                inbox.fail(error)
                return
            }
            if fds[0].revents != 0 { drainWakePipe() }
            // A fence reads the queue even when poll saw nothing yet (it reads until EAGAIN).
            let fence = state.heldBack ? 0 : control.withLock { control -> UInt64 in
                defer { control.fence = 0 }
                return control.fence
            }
            if state.heldBack || (fds[1].revents == 0 && fence == 0) { continue }
            // Drain until EAGAIN so one wake-up moves everything the kernel has queued.
            var decodeFailed = false
            while true {
                let count: Int
                do {
                    count = try Syscall.read(inotify.fd, into: buffer)
                } catch where error.errno == .tryAgain {
                    break
                } catch {
                    inbox.fail(error)
                    return
                }
                if count <= 0 { break }
                if !InotifyDecoder.decode(UnsafeRawBufferPointer(rebasing: buffer[..<count]), into: &events) {
                    decodeFailed = true
                }
                if events.count >= 16_384 {
                    inbox.push(&events, decodeFailed: decodeFailed)
                    decodeFailed = false
                }
            }
            if !events.isEmpty || decodeFailed || fence != 0 {
                inbox.push(&events, decodeFailed: decodeFailed, fence: fence)
            }
        }
    }
}
