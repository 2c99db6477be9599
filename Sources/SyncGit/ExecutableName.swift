import Subprocess
import SystemPackage

extension Executable {
    /// A program as a person names it on a command line: with a `/` it is a path (`./run.sh`,
    /// `/bin/echo`), without one it is looked up on PATH, as a shell does. swift-subprocess's
    /// `.name` refuses names with a `/`.
    public static func command(_ program: String) -> Executable {
        program.contains("/") ? .path(FilePath(program)) : .name(program)
    }
}
