/// Text from outside (git's and ssh's output, a reason someone typed into a control file) made safe
/// to print: one line, control characters and escape sequences escaped, bounded in length. A log
/// line, status and the journal then stay one line each and cannot move a terminal's cursor.
public enum OneLine {
    public static func make(_ text: String, limit: Int = 4096) -> String {
        var result = ""
        var count = 0
        for scalar in text.trimmed.unicodeScalars {
            if count >= limit {
                result += "…"
                break
            }
            count += 1
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += " "
            default:
                // C0 and C1 controls, DEL: ESC among them, so no ANSI sequence reaches a terminal.
                if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
                    result += "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result
    }
}
